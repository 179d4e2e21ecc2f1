// shard.h — WebDataset-like training shards stored as HDF5: the in-memory sample, the shard writer and
// the random-access shard reader. The on-disk layout is specified in datasets/FORMAT.md (format
// version 1, an attribute of every file) and follows reference/bone-data-slurm.md B.6.
//
// Contract:
// - A dataset is a directory `<dir>/<split>-%06d.h5` + `<dir>/manifest.json`. Every sample has a unique
//   `__key__`, token ids (uint32 in memory), a per-token loss mask (1 = trained: assistant turns only)
//   and zero or more media items; each media item occupies `n_placeholder` consecutive placeholder tokens
//   starting at `placeholder_pos` (placeholder ids: SHARD_PLACEHOLDER_* below, unused World-vocab ids).
// - Ragged data is stored as flat arrays + int64 offsets[N+1]; no variable-length HDF5 types. Datasets are
//   chunked and compressed (gzip level or lzf-free "none"; configurable), except encoded media bytes.
// - Writers write `<file>.tmp` and rename it when the shard is complete; the manifest is written last
//   (atomically), so a crash never leaves a dataset that looks complete.
// - Every failure returns -1 with an Error naming the file (and the sample key where there is one).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"

enum { SHARD_FORMAT_VERSION = 1 };

// Placeholder token ids (World vocabulary ids 65530..65535 are unused padding).
enum {
    SHARD_PLACEHOLDER_IMAGE = 65530,
    SHARD_PLACEHOLDER_AUDIO = 65531,
    SHARD_PLACEHOLDER_TIMESERIES = 65532,
};

typedef enum {
    MEDIA_IMAGE_ENCODED = 1,  // JPEG or PNG file bytes, decoded by the loader
    MEDIA_IMAGE_PIXELS = 2,   // uint8 [height, width, channels] (channels 1 or 3), row-major
    MEDIA_AUDIO_PCM = 3,      // int16 mono PCM at 16 kHz
    MEDIA_TIMESERIES = 4,     // float32 [length, channels]
    MEDIA_FEATURES = 5,       // cached encoder output: [n_tokens, dim], float32 or float16 (bits as uint16)
} MediaKind;

typedef struct MediaItem {
    MediaKind kind;
    int32_t placeholder_pos;   // first placeholder token of this item in the sample's tokens
    int32_t n_placeholder;     // number of consecutive placeholder tokens it occupies
    // payload (the fields of its kind); the sample owns the memory
    uint8_t* bytes;            // ENCODED: file bytes (n_bytes)
    size_t n_bytes;
    uint8_t* pixels;           // PIXELS: (height, width, channels)
    int32_t height, width, channels;
    int16_t* pcm;              // AUDIO: (n_samples) at 16 kHz
    size_t n_samples;
    float* series;             // TIMESERIES: (length, channels) — `channels` above is reused
    int32_t length;
    void* feat;                // FEATURES: (n_feat_tokens, dim) of feat_dtype_bytes 4 (f32) or 2 (f16)
    int32_t n_feat_tokens, dim, feat_dtype_bytes;
} MediaItem;

typedef struct Sample {
    char* key;                 // unique __key__ (NUL-terminated, <= 255 bytes, no NUL inside)
    uint32_t* tokens;          // (n_tokens)
    uint8_t* loss_mask;        // (n_tokens) 1 = trained
    size_t n_tokens;
    MediaItem* media;          // (n_media), ordered by placeholder_pos
    int n_media;
} Sample;

void sample_free(Sample* s);   // frees everything the sample owns and zeroes it
// Checks placeholders == media: every item's placeholder range holds exactly its kind's placeholder id,
// no placeholder token lies outside an item, ranges are in order and inside the tokens, payload sizes
// match their shapes. Returns 0 or -1 with "<what>: sample '<key>': <what is wrong>".
int sample_validate(const Sample* s, const char* what, Error* e);

// ---------------------------------------------------------------------------------------------------- writing
typedef struct ShardWriterOptions {
    const char* dir;           // output directory (created if missing)
    const char* split;         // "train", "val", "test" ...
    int64_t max_samples;       // roll to a new shard after this many samples (0 = no limit)
    int64_t max_bytes;         // ... or after about this many payload bytes (0 = no limit)
    int compression;           // gzip level 0..9 for tokens/masks/offsets/pcm/series/features (0 = none)
    const char* tokenizer;     // tokenizer id recorded in the files and the manifest ("world", "bytes", ...)
    int vocab_size;            // recorded; token ids must be < vocab_size
    const char* source;        // free text provenance ("llava-json /data/x.json")
    int rank, world;           // parallel conversion: rank r writes shards r, r+world, ... (world 1 = alone)
} ShardWriterOptions;

typedef struct ShardWriter ShardWriter;
ShardWriter* shard_writer_open(const ShardWriterOptions* o, Error* e);
int shard_writer_add(ShardWriter* w, const Sample* s, Error* e);   // validates, then appends
// Completes the last shard and writes this rank's part manifest (world > 1: `manifest.rank-%05d.json`) or the
// final `manifest.json` (world == 1). Frees w in any case.
int shard_writer_close(ShardWriter* w, Error* e);
// Merges the part manifests of `world` ranks into `<dir>/manifest.json` (removing the parts).
int shard_manifest_merge(const char* dir, int world, Error* e);

// ---------------------------------------------------------------------------------------------------- reading
typedef struct ShardInfo {
    char* file;                // path relative to the dataset dir
    int64_t n_samples, n_tokens, n_media;
    char* sha256;              // hex digest of the file
} ShardInfo;

typedef struct Manifest {
    int format_version;
    char* split;
    char* tokenizer;
    int vocab_size;
    char* modalities;          // comma-separated kinds present: "text,image" ...
    ShardInfo* shards;
    int n_shards;
    int64_t n_samples, n_tokens;
} Manifest;

int manifest_read(const char* dir, Manifest* m, Error* e);   // <dir>/manifest.json; checks every listed file exists
void manifest_free(Manifest* m);

typedef struct ShardReader ShardReader;
ShardReader* shard_reader_open(const char* path, Error* e);  // reads the index arrays (offsets) into memory
int64_t shard_reader_count(const ShardReader* r);
// Reads sample i (0-based) into s (caller frees with sample_free). Errors name the file and the key.
int shard_reader_get(ShardReader* r, int64_t i, Sample* s, Error* e);
const char* shard_reader_path(const ShardReader* r);
void shard_reader_close(ShardReader* r);
