// comm_self.c — the communicator of a world of one rank (no MPI): every collective is a copy or nothing.
//
// Contract: as comm.h with size 1: all_reduce leaves x as it is (SUM/MAX of one value is the value, AVG
// multiplies by 1.0f), reduce_scatter/all_gather/gather copy n values, broadcast and barrier return at
// once, split returns a new world of one rank. Nothing crosses a wire: its counts (comm_stats.h) have calls
// and seconds, and zero bytes.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sharding/comm.h"

static void self_all_reduce(Comm* c, float* x, size_t n, CommOp op) {}

static void self_reduce_scatter(Comm* c, float* out, const float* in, size_t n, CommOp op) {
    if (n) memcpy(out, in, n * sizeof(float));
}

static void self_all_gather(Comm* c, float* out, const float* in, size_t n) {
    if (n) memcpy(out, in, n * sizeof(float));
}

static void self_gather(Comm* c, float* out, const float* in, size_t n, int root) {
    if (n) memcpy(out, in, n * sizeof(float));
}

static void self_broadcast(Comm* c, void* buf, size_t bytes, int root) {}
static void self_barrier(Comm* c) {}
static double self_all_reduce_double(Comm* c, double x, CommOp op) { return x; }

static Comm* self_split(Comm* c, int color, int key, Error* e) {
    Comm* s = comm_self_create();
    s->timeout_s = c->timeout_s;
    return s;
}

static void self_abort(Comm* c, const char* message) {
    fflush(stdout);
    fprintf(stderr, "modrwkv: error: rank 0: %s\n", message);
    exit(1);
}

static void self_free(Comm* c) { comm_release(c); }

static const CommOps SELF_OPS = {
    .all_reduce = self_all_reduce,
    .reduce_scatter = self_reduce_scatter,
    .all_gather = self_all_gather,
    .gather = self_gather,
    .broadcast = self_broadcast,
    .barrier = self_barrier,
    .all_reduce_double = self_all_reduce_double,
    .split = self_split,
    .abort = self_abort,
    .free = self_free,
};

Comm* comm_self_create(void) { return comm_alloc("self", &SELF_OPS, 0, 1); }
