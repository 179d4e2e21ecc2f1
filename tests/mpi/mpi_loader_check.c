// mpi_loader_check.c — the shard loader under real MPI ranks (run with `mpirun -np N`, N = 1..4): rank 0 writes
// two datasets (61 image-text samples in 7 shards; 13 text samples in 1 shard, fewer shards than ranks), every
// rank reads epochs 0 and 1 with its own loader, the keys are gathered to rank 0 (MPI_Gatherv), which checks that
// each epoch's union is the dataset exactly once; then every rank checks that a loader resumed from the position
// after k batches yields exactly the batches of the uninterrupted run. Prints PASS/FAIL (rank 0) and exits
// non-zero on any failure. Usage: mpi_loader_check <work dir> (cleared first; removed after a passing run).
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "datasets/image.h"
#include "datasets/shard_loader.h"
#include "tests/testutil.h"

enum { IMAGE_TOKENS = 3, MAX_KEYS = 4096 };

typedef struct Spec {
    const char* name;
    int n_samples, per_shard, images;
} Spec;

static const Spec SPECS[2] = {{"multi", 61, 9, 1}, {"single", 13, 0, 0}};

// Sample i: a short text, every fourth with an image (a 4x4 PNG with pixel values from i) after token 1.
static void write_dataset(const char* root, const Spec* d) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", root, d->name);
    ShardWriterOptions o = {.dir = dir, .split = "train", .max_samples = d->per_shard, .compression = 1,
                            .tokenizer = "bytes", .vocab_size = 256, .source = "mpi_loader_check", .world = 1};
    Error e = {{0}};
    ShardWriter* w = shard_writer_open(&o, &e);
    if (!w) fatal("%s", e.msg);
    for (int i = 0; i < d->n_samples; i++) {
        uint32_t tokens[64];
        uint8_t mask[64];
        size_t n = 4 + (size_t)(i * 5) % 23;
        for (size_t k = 0; k < n; k++) {
            tokens[k] = 1 + (uint32_t)(i * 17 + (int)k * 3) % 250;
            mask[k] = k > 1;
        }
        uint8_t pixels[16], *png = NULL;
        size_t n_png = 0;
        int image = d->images && i % 4 == 0;
        if (image) {
            for (int p = 0; p < 16; p++) pixels[p] = (uint8_t)(i * 11 + p * 15);
            if (image_encode_png(pixels, 4, 4, 1, &png, &n_png, &e) != 0) fatal("%s", e.msg);
            for (int k = 0; k < IMAGE_TOKENS; k++) {
                tokens[1 + k] = SHARD_PLACEHOLDER_IMAGE;
                mask[1 + k] = 0;
            }
        }
        MediaItem m = {.kind = MEDIA_IMAGE_ENCODED, .placeholder_pos = 1, .n_placeholder = IMAGE_TOKENS, .bytes = png,
                       .n_bytes = n_png};
        char key[16];
        snprintf(key, sizeof key, "k%04d", i);
        Sample s = {.key = key, .tokens = tokens, .loss_mask = mask, .n_tokens = n, .media = &m, .n_media = image};
        if (shard_writer_add(w, &s, &e) != 0) fatal("%s", e.msg);
        free(png);
    }
    if (shard_writer_close(w, &e) != 0) fatal("%s", e.msg);
}

static ShardLoaderOptions options(const char* root, const Spec* d, int rank, int size, char* dir, size_t n) {
    snprintf(dir, n, "%s/%s", root, d->name);
    ShardLoaderOptions o;
    shard_loader_options_default(&o);
    o.dir = dir;
    o.dp_rank = rank;
    o.dp_size = size;
    o.seed = 7;
    o.shuffle_buffer = 6;
    o.batch_size = 2;
    o.ctx_len = 64;
    o.prefetch = 2;
    o.image_size = d->images ? 8 : 0;
    return o;
}

// Keys (numbers) of this rank's epochs 0 and 1: epoch e's go to keys[e * MAX_KEYS ...], counts to n[e].
static void read_two_epochs(const ShardLoaderOptions* o, int* keys, int* n) {
    Error e = {{0}};
    ShardLoader* L = shard_loader_open(o, &e);
    if (!L) fatal("%s", e.msg);
    n[0] = n[1] = 0;
    for (int done = 0, guard = 0; !done && guard < 100000; guard++) {
        ShardBatch* b = NULL;
        if (shard_loader_next(L, &b, &e) != 0) fatal("%s", e.msg);
        for (int i = 0; i < b->n_samples; i++) {
            uint64_t ep = b->samples[i].epoch;
            if (ep < 2 && n[ep] < MAX_KEYS) keys[ep * MAX_KEYS + n[ep]++] = atoi(b->samples[i].key + 1);
        }
        done = b->end.epoch >= 2;
        shard_batch_free(b);
    }
    shard_loader_close(L);
}

// Rank 0: the gathered keys of one epoch are 0..n_samples-1, each exactly once.
static int check_union(const int* all, int total, int n_samples) {
    int* count = calloc((size_t)n_samples, sizeof *count);
    int ok = total == n_samples;
    for (int i = 0; i < total; i++) ok &= all[i] >= 0 && all[i] < n_samples && ++count[all[i]] == 1;
    free(count);
    return ok;
}

static int check_epochs(const char* root, const Spec* d, int rank, int size) {
    char dir[4096];
    ShardLoaderOptions o = options(root, d, rank, size, dir, sizeof dir);
    int* keys = malloc(2 * MAX_KEYS * sizeof *keys);
    int n[2];
    read_two_epochs(&o, keys, n);
    int fails = 0;
    for (int ep = 0; ep < 2; ep++) {
        int* counts = malloc((size_t)size * sizeof *counts);
        int* displs = malloc((size_t)size * sizeof *displs);
        int* all = malloc((size_t)d->n_samples * 2 * sizeof *all + 4);
        MPI_Gather(&n[ep], 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
        int total = 0;
        if (rank == 0)
            for (int r = 0; r < size; r++) displs[r] = total, total += counts[r];
        if (rank == 0 && total > 2 * d->n_samples)
            fatal("rank 0: %d keys gathered for %d samples", total, d->n_samples);
        MPI_Gatherv(keys + ep * MAX_KEYS, n[ep], MPI_INT, all, counts, displs, MPI_INT, 0, MPI_COMM_WORLD);
        if (rank == 0) {
            char label[160], detail[64];
            snprintf(label, sizeof label, "np %d, %s (%d samples), epoch %d: the union of the ranks' keys is the "
                     "dataset exactly once", size, d->name, d->n_samples, ep);
            snprintf(detail, sizeof detail, "%d keys gathered", total);
            fails += check_true(label, check_union(all, total, d->n_samples), detail);
        }
        free(counts);
        free(displs);
        free(all);
    }
    free(keys);
    return fails;
}

// A digest of everything a batch carries (tokens, targets, keys, media payloads, end position).
static uint32_t batch_digest(const ShardBatch* b) {
    uLong h = crc32(0L, Z_NULL, 0);
    size_t n = (size_t)b->B * (size_t)b->T * sizeof(int32_t);
    h = crc32(h, (const Bytef*)b->tokens, (uInt)n);
    h = crc32(h, (const Bytef*)b->targets, (uInt)n);
    for (int i = 0; i < b->n_samples; i++)
        h = crc32(h, (const Bytef*)b->samples[i].key, (uInt)strlen(b->samples[i].key));
    for (int i = 0; i < b->n_media; i++) {
        const BatchMedia* m = &b->media[i];
        size_t count = m->data ? (size_t)(m->shape[0] * m->shape[1] * m->shape[2]) : 0;
        if (m->data) h = crc32(h, (const Bytef*)m->data, (uInt)(count * sizeof(float)));
        h = crc32(h, (const Bytef*)&m->placeholder_pos, sizeof m->placeholder_pos);
    }
    uint64_t end[2] = {b->end.epoch, b->end.index};
    return (uint32_t)crc32(h, (const Bytef*)end, sizeof end);
}

// This rank: batches k..n-1 after set_position(end of batch k-1) equal the uninterrupted run's.
static int resume_ok(const char* root, const Spec* d, int rank, int size) {
    enum { N = 40 };
    char dir[4096];
    ShardLoaderOptions o = options(root, d, rank, size, dir, sizeof dir);
    Error e = {{0}};
    ShardLoader* L = shard_loader_open(&o, &e);
    if (!L) fatal("%s", e.msg);
    uint32_t ref[N];
    ShardPosition end[N];
    for (int i = 0; i < N; i++) {
        ShardBatch* b = NULL;
        if (shard_loader_next(L, &b, &e) != 0) fatal("%s", e.msg);
        ref[i] = batch_digest(b);
        end[i] = b->end;
        shard_batch_free(b);
    }
    shard_loader_close(L);
    int ok = 1;
    const int ks[3] = {1, 5, 29};
    for (int j = 0; j < 3; j++) {
        ShardLoader* R = shard_loader_open(&o, &e);
        if (!R || shard_loader_set_position(R, end[ks[j] - 1], &e) != 0) fatal("%s", e.msg);
        for (int i = ks[j]; i < N; i++) {
            ShardBatch* b = NULL;
            if (shard_loader_next(R, &b, &e) != 0) fatal("%s", e.msg);
            ok &= batch_digest(b) == ref[i];
            shard_batch_free(b);
        }
        shard_loader_close(R);
    }
    return ok;
}

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc != 2) fatal("usage: mpi_loader_check <work dir>");
    const char* root = argv[1];
    if (rank == 0) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0) fatal("cannot clear %s", root);
        for (int i = 0; i < 2; i++) write_dataset(root, &SPECS[i]);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    int fails = 0;
    for (int i = 0; i < 2; i++) {
        fails += check_epochs(root, &SPECS[i], rank, size);
        int ok = resume_ok(root, &SPECS[i], rank, size), all_ok = 0;
        MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        if (rank == 0) {
            char label[160];
            snprintf(label, sizeof label, "np %d, %s: on every rank, resume after 1, 5, 29 batches == the "
                     "uninterrupted run (40 batches, across epochs)", size, SPECS[i].name);
            fails += check_true(label, all_ok, "");
        }
    }
    MPI_Bcast(&fails, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rank == 0) printf("mpi_loader_check np=%d: %s\n", size, fails ? "FAIL" : "PASS");
    MPI_Barrier(MPI_COMM_WORLD);   // every rank has closed its loaders
    if (rank == 0 && fails == 0) {   // keep the data of a failed run for inspection
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0) printf("note: could not remove %s\n", root);
    }
    MPI_Finalize();
    return fails ? 1 : 0;
}
