// shard_internal.h — declarations shared by the shard files (shard.c, shard_writer.c, shard_reader.c,
// manifest.c, data_inspect.c) that are not part of the public API in shard.h: format limits, media kind
// names and payload sizes, the manifest writer, SHA-256 of a file and the reader's file attributes.
//
// Contract: the limits below are part of the format (datasets/FORMAT.md "Limits"); writers never exceed
// them and readers reject files that do, so that a corrupt or hostile file cannot make a reader
// allocate unbounded memory.
#pragma once
#include <stdint.h>

#include "datasets/shard.h"

enum {
    SHARD_MAX_KEY_BYTES = 255,               // bytes of one __key__
    SHARD_MAX_SAMPLE_TOKENS = 1 << 24,       // tokens of one sample
    SHARD_MAX_FILE_SAMPLES = 1 << 22,        // samples in one shard file
    SHARD_MAX_FILE_ITEMS = 1 << 22,          // media items in one shard file
    SHARD_MAX_VOCAB = 1 << 24,               // vocab_size
    N_MEDIA_KINDS = MEDIA_FEATURES + 1,      // kinds are 1..MEDIA_FEATURES; arrays indexed by kind
};
#define SHARD_MAX_ITEM_BYTES ((int64_t)1 << 28)   // payload bytes of one media item
#define SHARD_FORMAT_NAME "modrwkv-shards"

// "image", "pixels", "audio", "timeseries", "features" (the manifest's modality names), or NULL.
const char* media_kind_name(int kind);
// Payload size in bytes implied by the item's kind and shape (ENCODED: n_bytes); -1 when a dimension
// is not positive, channels / dtype bytes are not allowed values, or the size exceeds SHARD_MAX_ITEM_BYTES.
int64_t media_payload_bytes(const MediaItem* m);
// The item's payload pointer (bytes, pixels, pcm, series or feat by kind); NULL for an unknown kind.
const void* media_payload(const MediaItem* m);
// 1 when id is one of the SHARD_PLACEHOLDER_* ids.
int is_placeholder_id(uint32_t id);

// 0 when a and b hold the same key, tokens, loss mask and media (kinds, placeholder ranges, shapes and
// payload bytes; n_bytes is compared for encoded images only); otherwise 1 with the first difference in why.
int sample_compare(const Sample* a, const Sample* b, char* why, size_t why_len);

// sample_validate with the sample's index in its file named in messages when index >= 0:
// "<what>: sample '<key>' (#<index>): <what is wrong>".
int sample_validate_at(const Sample* s, const char* what, int64_t index, Error* e);

// ---- manifests (manifest.c)
// Writes m as JSON to path atomically (manifest.json, or a rank's part manifest).
int manifest_write(const char* path, const Manifest* m, Error* e);
// Reads the manifest JSON at `path` whose shard files live in `dir`. allow_empty: a part manifest of a
// rank that wrote no shard is valid (a dataset's manifest.json must list at least one shard).
int manifest_read_file(const char* path, const char* dir, int allow_empty, Manifest* m, Error* e);
// Lowercase hex SHA-256 of a file's bytes (read in 1 MiB blocks) into hex[65].
int sha256_file_hex(const char* path, char hex[65], Error* e);
// Bit 0 = text (always), bit k = media kind k: the comma-separated modality list "text,image,...".
char* modalities_string(unsigned kinds_mask);
// Parses a comma-separated list back into a mask; -1 on an unknown name.
int modalities_mask(const char* list, unsigned* mask);

// ---- what a shard file says about itself (shard_reader.c), for `data inspect` and `data verify`
typedef struct ShardFileInfo {
    int format_version;
    const char* split;
    const char* tokenizer;
    int vocab_size;
    int token_bytes;                      // 2 (uint16) or 4 (uint32) on disk
    int64_t n_samples, n_tokens, n_media;
    int64_t n_items_of_kind[N_MEDIA_KINDS];
    const char* created_by;               // NULL when the file does not say
    const char* source;                   // NULL when the file does not say
} ShardFileInfo;
const ShardFileInfo* shard_reader_info(const ShardReader* r);
