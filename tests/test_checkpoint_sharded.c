// test_checkpoint_sharded.c — specification of sharded checkpoints (trainer/checkpoint_sharded.h): pieces of
// tensor-parallel slices and ZeRO-style flat ranges, written by any rank, read back as whole tensors with the
// metadata; an incomplete or corrupt directory is an error naming the file or tensor, never a crash.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sharding/comm.h"
#include "tests/testutil.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_sharded.h"

enum { ROWS = 3, COLS = 8 };

// W (3, 8) split along dim 1 into 2 slices (3, 4); slice 1 written in two flat ranges (as ZeRO-1 cuts
// moments); b (5) whole; m (3, 8) declared with nothing covered (a frozen tensor's moments: zeros).
static void write_example(CkptWriter* w, const float* W, const float* b) {
    float slice[2][ROWS * COLS / 2];
    for (int part = 0; part < 2; part++)
        for (int r = 0; r < ROWS; r++)
            for (int c = 0; c < COLS / 2; c++) slice[part][r * COLS / 2 + c] = W[r * COLS + part * COLS / 2 + c];
    int64_t sshape[2] = {ROWS, COLS / 2}, wshape[2] = {ROWS, COLS}, bshape[1] = {5};
    ckpt_writer_add(w, "W", 2, sshape, 1, 0, 2, 0, 12, slice[0]);
    ckpt_writer_add(w, "W", 2, sshape, 1, 1, 2, 0, 5, slice[1]);
    ckpt_writer_add(w, "W", 2, sshape, 1, 1, 2, 5, 7, slice[1] + 5);
    ckpt_writer_add(w, "b", 1, bshape, -1, 0, 1, 0, 5, b);
    ckpt_writer_declare(w, "W", 2, wshape, ROWS * COLS);
    ckpt_writer_declare(w, "b", 1, bshape, 5);
    ckpt_writer_declare(w, "m", 2, wshape, 0);
}

static int test_round_trip(Comm* self, const char* dir) {
    float W[ROWS * COLS], b[5], zeros[ROWS * COLS] = {0};
    for (int i = 0; i < ROWS * COLS; i++) W[i] = 0.5f * (float)i - 3.0f;
    for (int i = 0; i < 5; i++) b[i] = (float)(i * i);
    CkptWriter* w = ckpt_writer_create();
    write_example(w, W, b);
    Error e = {{0}};
    int fails = check_true("commit writes the shards and the index", ckpt_writer_commit(w, self, dir, "{\"step\":\"7\"}", &e) == 0, e.msg);
    ckpt_writer_free(w);
    fails += check_true("the directory is recognised as a sharded checkpoint", is_sharded_checkpoint(dir), dir);
    TensorSet ts;
    if (tensor_file_read(dir, &ts, &e) != 0) return fails + check_true("tensor_file_read reads it", 0, e.msg);
    const NamedTensor *tw = tensorset_find(&ts, "W"), *tb = tensorset_find(&ts, "b"), *tm = tensorset_find(&ts, "m");
    fails += check_true("whole tensors W, b, m come back with their shapes", tw && tb && tm && tw->shape[0] == ROWS &&
                        tw->shape[1] == COLS && tb->shape[0] == 5, "names or shapes");
    if (tw && tb && tm) {
        fails += check_bitwise("W assembled from its tp slices and flat ranges", tw->data, W, sizeof W);
        fails += check_bitwise("b (replicated) read back", tb->data, b, sizeof b);
        fails += check_bitwise("m (nothing covered) reads as zeros", tm->data, zeros, sizeof zeros);
    }
    fails += check_true("the metadata is the index's", ts.metadata && strcmp(ts.metadata, "{\"step\":\"7\"}") == 0,
                        ts.metadata ? ts.metadata : "(none)");
    tensorset_free(&ts);
    return fails;
}

// expect_read_error: reading dir fails with a message containing want.
static int expect_read_error(const char* name, const char* dir, const char* want) {
    TensorSet ts;
    Error e = {{0}};
    int rc = sharded_checkpoint_read(dir, &ts, &e);
    char detail[1400];
    snprintf(detail, sizeof detail, "rc %d, message '%s', expected it to contain '%s'", rc, e.msg, want);
    printf("  %s: %s\n", name, e.msg);
    return check_true(name, rc != 0 && strstr(e.msg, want) != NULL, detail);
}

static void write_text(const char* path, const char* text) {
    FILE* f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int test_bad_directories(Comm* self, const char* dir) {
    char path[700], index[700];
    snprintf(index, sizeof index, "%s/index.json", dir);
    int fails = 0;
    // a declared tensor that the pieces do not fully cover
    CkptWriter* w = ckpt_writer_create();
    int64_t shape[1] = {4};
    float v[4] = {1, 2, 3, 4};
    ckpt_writer_add(w, "x", 1, shape, -1, 0, 1, 0, 2, v);
    ckpt_writer_declare(w, "x", 1, shape, 4);
    Error e = {{0}};
    ckpt_writer_commit(w, self, dir, "{}", &e);
    ckpt_writer_free(w);
    fails += expect_read_error("uncovered values are an error naming the tensor", dir, "tensor 'x': the shards supply 2 of its 4");
    snprintf(path, sizeof path, "%s/rank-00000.safetensors", dir);
    FILE* f = fopen(path, "r+b");  // a truncated shard
    if (f) {
        if (ftruncate(fileno(f), 20) != 0) perror("ftruncate");
        fclose(f);
    }
    fails += expect_read_error("a truncated shard is an error naming it", dir, "rank-00000.safetensors");
    unlink(path);
    fails += expect_read_error("a missing shard is an error naming it", dir, "rank-00000.safetensors");
    write_text(index, "{\"format\": \"something else\"}");
    fails += expect_read_error("an index of another format", dir, "not a modrwkv sharded checkpoint index");
    write_text(index, "{\"format\": \"modrwkv-sharded-checkpoint\", \"files\": [], \"tensors\": [{\"name\": 3}], \"metadata\": \"{}\"}");
    fails += expect_read_error("a malformed tensor entry", dir, "malformed");
    write_text(index, "{\"format\": \"modrwkv-sha");
    fails += expect_read_error("a truncated index", dir, "index.json");
    unlink(index);
    fails += check_true("without index.json the directory is not a checkpoint (an interrupted save)",
                        !is_sharded_checkpoint(dir), dir);
    sharded_checkpoint_remove(dir);
    fails += check_true("sharded_checkpoint_remove deletes the directory", access(dir, F_OK) != 0, dir);
    return fails;
}

int main(void) {
    char dir[] = "/tmp/modrwkv-test-shards.XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char a[100], b[100];
    snprintf(a, sizeof a, "%s/good.shards", dir);
    snprintf(b, sizeof b, "%s/bad.shards", dir);
    Comm* self = comm_self_create();
    int fails = test_round_trip(self, a);
    fails += test_bad_directories(self, b);
    sharded_checkpoint_remove(a);
    rmdir(dir);
    comm_free(self);
    return test_summary("test_checkpoint_sharded", fails);
}
