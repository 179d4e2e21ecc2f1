// fuzz_shard_reader.c — libFuzzer target for the HDF5 shard reader (datasets/shard_reader.c).
//
// Each input is written to a temporary file, opened with shard_reader_open and every sample read with
// shard_reader_get. Property: no crash, no sanitizer report, no leak of this project's memory, and every
// failure is a one-line, non-empty message naming the file. Seeds: valid shards of every modality from
// make_shard_seeds (see CMakeLists.txt here for the command lines).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/shard.h"

// HDF5 1.10 loses blocks of its internal free-list allocator (H5FL) on some error paths for corrupt object
// headers; only those are ignored (the slow unwinder is needed to see the allocator's name).
const char* __lsan_default_suppressions(void);
const char* __lsan_default_suppressions(void) { return "leak:H5FL_reg_malloc\nleak:H5FL_blk_malloc\n"; }
const char* __asan_default_options(void);
const char* __asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

enum { MAX_SAMPLES_READ = 4096 };

static void check_message(const Error* e, const char* path) {
    if (e->msg[0] == 0 || strchr(e->msg, '\n') || !strstr(e->msg, path)) {
        fprintf(stderr, "fuzz_shard_reader: bad error message: '%s'\n", e->msg);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_shard_reader-%d.h5", (int)getpid());
    FILE* f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
    Error e = {{0}};
    ShardReader* r = shard_reader_open(path, &e);
    if (!r) check_message(&e, path);
    for (int64_t i = 0; r && i < shard_reader_count(r) && i < MAX_SAMPLES_READ; i++) {
        Sample s;
        e.msg[0] = 0;
        if (shard_reader_get(r, i, &s, &e) == 0) sample_free(&s);
        else check_message(&e, path);
    }
    shard_reader_close(r);
    unlink(path);
    return 0;
}
