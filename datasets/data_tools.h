// data_tools.h — the library functions behind `modrwkv data ...` (datasets/data_cli.c parses the options).
// Each returns 0, or -1 with e filled (one line naming the file / sample key and what to do).
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "kernels/common.h"

// ---- converters (datasets/convert_*.c): all write shards with shard_writer_* (datasets/shard.h)
typedef struct ConvertOptions {
    const char* out_dir;
    const char* split;          // "train" by default
    int64_t shard_samples;      // --shard-size N (samples) ...
    int64_t shard_bytes;        // ... or --shard-size 512MB (bytes); 0/0 = one shard
    int compression;            // gzip level (default 4)
    const char* tokenizer;      // "world" (default), "bytes" or a vocab path
    int image_tokens;           // placeholder tokens per image (default 576, or the projector's count)
    int audio_tokens_per_s;     // placeholder tokens per second of audio (default 50, Whisper's frame rate / 2)
    int rank, world;            // parallel conversion over processes
    int skip_bad;               // 1: count and report bad samples instead of stopping at the first
} ConvertOptions;

int convert_llava_json(const char* json_path, const char* image_dir, const ConvertOptions* o, Error* e);
int convert_webdataset(const char* tar_pattern, const ConvertOptions* o, Error* e);   // brace patterns {000000..000009}
int convert_audio_folder(const char* root, const ConvertOptions* o, Error* e);         // LibriSpeech layout
int convert_jsonl_text(const char* path, const char* key, const ConvertOptions* o, Error* e);
int convert_binidx(const char* prefix, const ConvertOptions* o, Error* e);

// ---- inspection and verification (datasets/data_inspect.c)
int data_inspect(const char* path, FILE* out, Error* e);   // a dataset dir or one shard file
int data_verify(const char* dir, FILE* out, Error* e);     // checksums, offsets, placeholders == media

// ---- demo data (datasets/demo_data.c): image QA from the handwritten digits, spoken digits from
// espeak-ng, and a text corpus; train / val / test splits with no overlap.
int data_demo_build(const char* out_dir, const char* digits_csv_gz, int image_size, uint64_t seed, Error* e);

// ---- throughput (datasets/bench_data.c)
int data_bench(const char* dir, int image_size, int seconds, FILE* out, Error* e);
