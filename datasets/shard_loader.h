// shard_loader.h — the streaming loader over a shard dataset (datasets/shard.h): rank-sharded, shuffled, prefetched
// and decoded on a background thread, exactly resumable; and the adapter that feeds the text trainer (loader.h).
//
// Contract:
// * Assignment (every sample seen exactly once per epoch across ranks, no overlap, balanced). For epoch e the
//   shards are put in a seeded order (Fisher-Yates with a generator seeded by (seed, e), the same on every
//   rank), their samples are concatenated into one global sequence of N samples, and rank r of D takes the
//   contiguous slice [floor(r*N/D), floor((r+1)*N/D)). With shards >= ranks a rank reads whole shards except
//   at most two partial ones at its slice ends; with fewer shards than ranks the ranks split shards by sample
//   ranges. Slice sizes differ by at most one sample and do not depend on e: a rank's epoch has a constant
//   length E_r (shard_loader_epoch_samples), so "samples consumed" and (epoch, index) convert exactly.
//   N < D is an error.
// * Order inside a rank's epoch: the slice is read in sequence through a shuffle buffer of K samples
//   (reservoir: fill K, then each output is a uniformly chosen buffered sample whose slot is refilled with
//   the next sample read; at the end of the slice the buffer drains). The generator is seeded by
//   (seed, e, rank). K <= 1 keeps the slice order. An epoch ends completely before the next begins, but a
//   batch may hold the last samples of epoch e and the first of e + 1 (each BatchSample names its epoch).
// * Resume: the position is {epoch, samples of that epoch taken by this rank}. set_position re-seeds the
//   epoch's generator and replays the buffer's choices on sample indices only (no data is read: O(index)
//   generator draws), then reads the K buffered samples and continues; batches after set_position(p) are
//   identical to those of an uninterrupted loader after the batch that ended at p. The position of a batch
//   counts every sample taken, skipped bad samples included.
// * Rows: a sample fills a row from column 0; targets[t] = tokens[t+1] if loss_mask[t+1] else -1, and -1
//   at a sample's last token and on padding (token 0). With `pack`, samples are concatenated into a row
//   while they fit (a sample that does not fit starts the next row; an RNN carries state across them, as
//   in RWKV pretraining, and no target crosses a sample boundary). Batch width T = ctx_len when fixed_len,
//   else the longest row rounded up to a multiple of 16, at most ctx_len. A sample longer than ctx_len is
//   a bad sample, or with `truncate` is cut at ctx_len, or before the first media item that would not fit
//   whole (one cut to 0 tokens stays bad).
// * Work: only the prefetch thread reads shards (the only HDF5 user; a process-wide lock also serialises
//   loaders running in one process), decodes and preprocesses media and builds batches; shard_loader_next
//   only takes a finished batch from the queue.
// * Memory: at most K buffered samples + `prefetch` batches (queued or being built) + one carried sample
//   (pack only) are held, whatever the dataset size: live samples <= K + prefetch*B + 1 without pack
//   (shard_loader_stats counts them; batches the caller holds are the caller's). A shard reader holds its
//   shard's offsets (O(samples of one shard)).
// * Bad samples (unreadable shard or sample, placeholders that do not match media, an undecodable image,
//   no tokens, a token outside the vocabulary, too long): an error "<shard file>: sample '<key>': ..."
//   stops the loader (next returns -1, now and after), or with skip_bad a warning per sample on `log`
//   ("warning: ... (skipped, bad sample N)") and a summary at close. A rank epoch without one good sample
//   is an error in either case.
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "datasets/loader.h"
#include "datasets/shard.h"
#include "kernels/common.h"

typedef struct ShardLoaderOptions {
    const char* dir;          // dataset directory (manifest.json + shards)
    int dp_rank, dp_size;     // this rank and the number of data-parallel ranks
    uint64_t seed;
    int shuffle_buffer;       // K: samples buffered for shuffling (<= 1: no shuffling; at most 2^20)
    int batch_size;           // B: rows per batch
    int ctx_len;              // most tokens in a row (choose a multiple of 16)
    int fixed_len;            // 1: T = ctx_len always; 0: T = longest row rounded up to 16
    int pack;                 // 1: several samples per row (see above)
    int truncate;             // 1: cut samples longer than ctx_len; 0: they are bad samples
    int text_only;            // 1: a sample with media is an error (the text trainer's data)
    int image_size;           // S > 0: images become (3, S, S) float; 0: images are left as stored
    const char* image_mode;   // "resize" or "pad" (image.h)
    float image_mean[3], image_std[3];
    int prefetch;             // batches prepared ahead (>= 1)
    int skip_bad;             // 1: warn and skip bad samples; 0: stop at the first
    FILE* log;                // warnings and the skip summary (NULL: stderr)
} ShardLoaderOptions;

// Defaults: shuffle_buffer 1024, batch_size 1, ctx_len 2048, prefetch 4, image_mode "resize", mean/std 0.5
// (SigLIP), everything else 0 / NULL; dp_size 1.
void shard_loader_options_default(ShardLoaderOptions* o);

typedef struct ShardPosition {
    uint64_t epoch;
    uint64_t index;           // samples of this epoch taken by this rank (< shard_loader_epoch_samples)
} ShardPosition;

// One media item of a batch, payload decoded on the prefetch thread.
typedef struct BatchMedia {
    MediaKind kind;           // the stored kind
    int row;                  // batch row
    int32_t placeholder_pos;  // first placeholder column in the row
    int32_t n_placeholder;
    // IMAGE_* with image_size > 0: (3, S, S) preprocessed; AUDIO: (n) in [-1, 1); TIMESERIES: (length,
    // channels); FEATURES: (n_tokens, dim) as float. NULL for images left as stored.
    float* data;
    int ndim;
    int64_t shape[3];
    // images left as stored (image_size 0): ENCODED file bytes, or PIXELS (height, width, channels) uint8
    // (shape then gives height, width, channels)
    uint8_t* bytes;
    size_t n_bytes;
} BatchMedia;

typedef struct BatchSample {
    char* key;
    int row, start, length;   // columns [start, start + length) of row
    uint64_t epoch, index;    // where it came in this rank's order
    int truncated;            // 1 if cut to fit ctx_len
} BatchSample;

typedef struct ShardBatch {
    int B, T;
    int32_t* tokens;          // (B, T), padding 0
    int32_t* targets;         // (B, T), -1 = masked
    BatchSample* samples;     // (n_samples) in row order
    int n_samples;
    BatchMedia* media;        // (n_media) in row order
    int n_media;
    ShardPosition end;        // the loader's position after this batch
} ShardBatch;

void shard_batch_free(ShardBatch* b);   // frees b and everything it holds

typedef struct ShardLoaderStats {
    int64_t live_samples;     // samples held now by the loader (buffer + queued batches + carry)
    int64_t peak_live_samples;
    int64_t samples_read;     // read from shards (resume fast-forward reads none)
    int64_t bad_samples;      // skipped (skip_bad)
    int64_t bytes_read;       // payload bytes read: tokens (4 B), masks and media
    double prefetch_cpu_s;    // CPU seconds used by the running prefetch thread (0 when none runs)
} ShardLoaderStats;

typedef struct ShardLoader ShardLoader;

// Reads the manifest and checks the options; the prefetch thread starts at the first shard_loader_next.
ShardLoader* shard_loader_open(const ShardLoaderOptions* o, Error* e);
// Hands over the next batch (the caller frees it with shard_batch_free). Blocks until it is ready.
int shard_loader_next(ShardLoader* L, ShardBatch** out, Error* e);
ShardPosition shard_loader_get_position(const ShardLoader* L);   // after the last batch handed over
// Restarts from p (stopping the prefetch thread and dropping what it prepared). An index at or beyond the
// epoch length is an error.
int shard_loader_set_position(ShardLoader* L, ShardPosition p, Error* e);
uint64_t shard_loader_epoch_samples(const ShardLoader* L);       // E_r
const Manifest* shard_loader_manifest(const ShardLoader* L);
ShardLoaderStats shard_loader_stats(const ShardLoader* L);   // call from the thread that calls next
const char* shard_loader_describe(const ShardLoader* L);
void shard_loader_close(ShardLoader* L);   // stops the thread; with skip_bad prints the summary

// This rank's slice of epoch `epoch` as pieces of shards in reading order: piece i is samples
// [first, first + count) of shard `shard` (manifest order). Returns the number of pieces (*pieces malloc'ed).
typedef struct ShardPiece {
    int shard;
    int64_t first, count;
} ShardPiece;
int shard_assign(const int64_t* shard_samples, int n_shards, uint64_t seed, uint64_t epoch, int dp_rank, int dp_size,
                 ShardPiece** pieces);

// The text trainer's loader (loader.h) over a text-only shard dataset: o->batch_size and o->ctx_len must
// equal the B and T of the batches passed to next_batch; rows are always ctx_len wide (fixed_len), media
// are an error (text_only), and with o->pack short samples share rows. Position = samples consumed by this
// rank since epoch 0 = epoch * E_r + index.
DataLoader* shard_loader_text_adapter(const ShardLoaderOptions* o, Error* e);
