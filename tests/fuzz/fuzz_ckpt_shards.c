// fuzz_ckpt_shards.c — libFuzzer target for the sharded checkpoint reader (trainer/checkpoint_sharded.h): the
// index.json and the per-rank safetensors files it points at are untrusted input. Property: any bytes give rc 0
// or a clean -1 with a one-line message, never a crash, a sanitizer report or a leak.
//
// A valid two-rank checkpoint is written once (tensor-parallel slices and ZeRO-style ranges, one tensor declared
// with nothing covered). Each input's first byte picks the file it replaces (index.json or one rank's shard),
// the rest is that file's new content; the directory is restored before every input. With MODRWKV_FUZZ_SEEDS=DIR
// the valid files are written there as seeds (prefixed with their selector byte) before fuzzing starts.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/common.h"
#include "sharding/comm.h"
#include "trainer/checkpoint_sharded.h"
#include "trainer/tensorset.h"

static char g_dir[64];
static const char* const FILES[] = {"index.json", "rank-00000.safetensors", "rank-00001.safetensors"};
enum { N_FILES = 3 };
static char* g_valid[N_FILES];     // the valid contents
static size_t g_len[N_FILES];

static void path_of(char* buf, size_t size, int f) { snprintf(buf, size, "%s/%s", g_dir, FILES[f]); }

static void write_bytes(const char* path, const void* data, size_t len) {
    FILE* fp = fopen(path, "wb");
    if (!fp) abort();
    if (len && fwrite(data, 1, len, fp) != len) abort();
    fclose(fp);
}

// Two "ranks": rank 0's pieces are written as rank 0, rank 1's are renamed from a second commit.
static void write_fixture(void) {
    float w[24], b[4] = {1, 2, 3, 4};
    for (int i = 0; i < 24; i++) w[i] = (float)i * 0.25f - 2.0f;
    int64_t slice[2] = {3, 4}, whole[2] = {3, 8}, bias[1] = {4};
    Comm* self = comm_self_create();
    Error e;
    for (int part = 1; part >= 0; part--) {  // part 1 first: its file is then renamed to rank 1's name
        CkptWriter* wr = ckpt_writer_create();
        ckpt_writer_add(wr, "W", 2, slice, 1, part, 2, 0, 5, w + part * 12);
        ckpt_writer_add(wr, "W", 2, slice, 1, part, 2, 5, 7, w + part * 12 + 5);
        if (part == 0) ckpt_writer_add(wr, "b", 1, bias, -1, 0, 1, 0, 4, b);
        ckpt_writer_declare(wr, "W", 2, whole, 24);
        ckpt_writer_declare(wr, "b", 1, bias, 4);
        ckpt_writer_declare(wr, "m", 2, whole, 0);
        if (ckpt_writer_commit(wr, self, g_dir, "{\"step\":\"1\"}", &e) != 0) abort();
        ckpt_writer_free(wr);
        if (part == 1) {
            char a[128], c[128];
            path_of(a, sizeof a, 1);
            path_of(c, sizeof c, 2);
            if (rename(a, c) != 0) abort();
        }
    }
    comm_free(self);
    // the index of the last commit lists rank 0 only: list both files
    char path[128];
    path_of(path, sizeof path, 0);
    size_t n = 0;
    char* text = read_file(path, &n, NULL);
    if (!text) abort();
    const char* key = "\"rank-00000.safetensors\"";
    char* at = strstr(text, key);
    if (!at) abort();
    size_t pre = (size_t)(at - text) + strlen(key);
    const char* extra = ", \"rank-00001.safetensors\"";
    char* fixed = xmalloc(n + strlen(extra) + 1);
    memcpy(fixed, text, pre);
    strcpy(fixed + pre, extra);
    strcat(fixed, text + pre);
    write_bytes(path, fixed, strlen(fixed));
    free(fixed);
    free(text);
    for (int f = 0; f < N_FILES; f++) {
        path_of(path, sizeof path, f);
        g_valid[f] = read_file(path, &g_len[f], NULL);
        if (!g_valid[f]) abort();
    }
}

static void write_seeds(const char* dir) {
    char path[512];
    for (int f = 0; f < N_FILES; f++) {
        char* seed = xmalloc(g_len[f] + 1);
        seed[0] = (char)f;
        memcpy(seed + 1, g_valid[f], g_len[f]);
        snprintf(path, sizeof path, "%s/seed-%d", dir, f);
        write_bytes(path, seed, g_len[f] + 1);
        free(seed);
    }
}

static void remove_fixture(void) { sharded_checkpoint_remove(g_dir); }

int LLVMFuzzerInitialize(int* argc, char*** argv) {
    snprintf(g_dir, sizeof g_dir, "/tmp/modrwkv-fuzz-shards.XXXXXX");
    if (!mkdtemp(g_dir)) abort();
    atexit(remove_fixture);
    write_fixture();
    // the fixture itself must read back (else the target would only exercise error paths)
    TensorSet ts;
    Error e;
    if (sharded_checkpoint_read(g_dir, &ts, &e) != 0) {
        fprintf(stderr, "fuzz_ckpt_shards: the fixture does not read back: %s\n", e.msg);
        abort();
    }
    tensorset_free(&ts);
    const char* seeds = getenv("MODRWKV_FUZZ_SEEDS");
    if (seeds) write_seeds(seeds);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    char path[128];
    for (int f = 0; f < N_FILES; f++) {
        path_of(path, sizeof path, f);
        write_bytes(path, g_valid[f], g_len[f]);
    }
    path_of(path, sizeof path, data[0] % N_FILES);
    write_bytes(path, data + 1, size - 1);
    TensorSet ts;
    Error e;
    e.msg[0] = 0;
    if (sharded_checkpoint_read(g_dir, &ts, &e) == 0) tensorset_free(&ts);
    else if (!e.msg[0] || strchr(e.msg, '\n')) abort();  // a rejection must say why, on one line
    return 0;
}
