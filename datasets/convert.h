// convert.h — what the converters (datasets/convert_*.c) share: one conversion run (options, tokenizer, shard
// writer, which samples this rank owns, unique keys, --skip-bad accounting) and the builders of media items
// and conversation turns from LLaVA-style JSON. (A file of its own beside the converters of the issue: the
// converters would otherwise repeat this plumbing four times.)
//
// Contract of a run:
// - Every rank walks the whole input in the same deterministic order and numbers its samples 0, 1, 2, ...;
//   rank r of W converts sample i when i % W == r (convert_owns) and writes its own shards (shard_writer_*
//   names them); nothing else differs between ranks, so the W outputs are disjoint and together complete.
// - Keys: convert_unique_key is called by every rank for every sample, in order; a key seen before gets the
//   suffix "~<sample index>" (deterministic, the same on every rank). Input keys are 1..223 bytes (room for
//   the suffix within the format's 255).
// - A bad sample (missing or undecodable media, malformed record) is passed to convert_bad: with --skip-bad it
//   prints "modrwkv: warning: <message> (skipped)" on stderr and is counted, otherwise the run stops with that
//   message. Only the owning rank reports a sample.
// - convert_end completes the run: on success it closes the writer (shards + manifest / part manifest) and
//   prints one summary line on stdout; on failure, and when the input held no sample or every sample was bad,
//   no manifest is left behind (the dataset never looks complete).
#pragma once
#include <jansson.h>
#include <stdint.h>

#include "datasets/chat_template.h"
#include "datasets/data_tools.h"
#include "datasets/shard.h"
#include "datasets/tokenizer.h"
#include "kernels/common.h"

// A set of strings (keys), for uniqueness and contiguity checks.
typedef struct StrSet StrSet;
StrSet* strset_new(void);
int strset_insert(StrSet* k, const char* key);   // copies key; 0 when it was new, 1 when already present
int strset_contains(const StrSet* k, const char* key);
void strset_free(StrSet* k);

typedef struct ConvertRun {
    const ConvertOptions* o;
    const char* kind;        // "llava-json", "webdataset", ...
    const char* source;      // the input, for messages
    Tokenizer* tok;
    ShardWriter* w;
    StrSet* keys;
    int64_t n_input;         // samples numbered so far (all ranks' samples)
    int64_t n_written;       // written by this rank
    int64_t n_bad;           // skipped by this rank (--skip-bad)
} ConvertRun;

// Checks the options, loads the tokenizer, removes this rank's stale (part) manifest, opens the writer.
int convert_begin(ConvertRun* r, const ConvertOptions* o, const char* kind, const char* source, Error* e);
// Numbers the next sample of the input; returns its index.
int64_t convert_next_index(ConvertRun* r);
int convert_owns(const ConvertRun* r, int64_t index);
// A unique key for sample `index` (malloc'ed), or NULL with e set when the key is empty or too long.
char* convert_unique_key(ConvertRun* r, const char* key, int64_t index, const char* what, Error* e);
// Writes the sample and frees it (in any case).
int convert_write(ConvertRun* r, Sample* s, Error* e);
// A bad sample: returns 0 (warned and counted) with --skip-bad, else copies bad into e and returns -1.
int convert_bad(ConvertRun* r, const Error* bad, Error* e);
// Ends the run (rc: the run's status so far). Returns 0 or -1 with e set.
int convert_end(ConvertRun* r, int rc, Error* e);

// ---- helpers

// Reads a regular file (refusing directories and devices with a clear message). *len set; caller frees.
uint8_t* convert_read_file(const char* path, size_t* len, Error* e);
// Checks that the bytes decode as an image (image_decode) and makes an encoded-image item of them; takes
// ownership of bytes in any case. `what` names the file and the sample.
int convert_image_item(uint8_t* bytes, size_t n, int image_tokens, const char* what, MediaItem* m, Error* e);
// An audio item of 16 kHz PCM (takes ownership): ceil(seconds * tokens_per_s) placeholders, at least 1.
void convert_audio_item(int16_t* pcm, size_t n_samples, int tokens_per_s, MediaItem* m);
// Expands a WebDataset brace pattern ("a-{000000..000009}.tar", "{a,b}-{0..3}.tar": ranges zero-padded to the
// wider end when either has a leading zero; lists; several braces -> every combination, leftmost slowest; a
// brace with neither ".." nor "," stays as it is; nested braces are an error). *paths malloc'ed (each too).
int convert_brace_expand(const char* pattern, char*** paths, size_t* n, Error* e);
// LLaVA conversations [{"from": "human"|"user"|"gpt"|"assistant", "value": str}, ...] -> turns pointing
// into the JSON strings (valid while conv lives); *turns malloc'ed.
int convert_turns_from_json(const json_t* conv, ChatTurn** turns, int* n_turns, const char* what, Error* e);
