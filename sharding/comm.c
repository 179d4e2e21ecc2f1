// comm.c — the implementation-independent half of comm.h: dispatch through the CommOps table, chunk
// arithmetic, the deterministic combine step, and the choice of the world communicator.
#include "sharding/comm.h"

#include <math.h>
#include <stdlib.h>

static int launched_by_mpi(void) {
    const char* vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

Comm* comm_world_create(int* argc, char*** argv, Error* e) {
#ifdef MODRWKV_HAVE_MPI
    if (launched_by_mpi()) return comm_mpi_world_create(argc, argv, e);
#else
    if (launched_by_mpi() && getenv("OMPI_COMM_WORLD_SIZE") && atoi(getenv("OMPI_COMM_WORLD_SIZE")) > 1) {
        errorf(e, "started by an MPI launcher with %s ranks, but this modrwkv was built without MPI: install "
                  "Open MPI (libopenmpi-dev) and rebuild, or run a single process",
               getenv("OMPI_COMM_WORLD_SIZE"));
        return NULL;
    }
#endif
    return comm_self_create();
}

void comm_free(Comm* c) {
    if (c) c->ops->free(c);
}

int comm_rank(const Comm* c) { return c->rank; }
int comm_size(const Comm* c) { return c->size; }
int comm_local_rank(const Comm* c) { return c->local_rank; }
int comm_local_size(const Comm* c) { return c->local_size; }
int comm_world_rank(const Comm* c, int r) { return c->world_ranks[r]; }
const char* comm_backend_name(const Comm* c) { return c->name; }

void comm_set_timeout(Comm* c, double seconds) {
    if (seconds > 0) c->timeout_s = seconds;
}
double comm_timeout(const Comm* c) { return c->timeout_s; }

size_t comm_chunk(size_t n, int size) { return (n + (size_t)size - 1) / (size_t)size; }

size_t comm_chunk_len(size_t n, int size, int r) {
    size_t chunk = comm_chunk(n, size), begin = chunk * (size_t)r;
    if (begin >= n) return 0;
    return n - begin < chunk ? n - begin : chunk;
}

void comm_all_reduce(Comm* c, float* x, size_t n, CommOp op) { c->ops->all_reduce(c, x, n, op); }
void comm_reduce_scatter(Comm* c, float* out, const float* in, size_t n, CommOp op) {
    c->ops->reduce_scatter(c, out, in, n, op);
}
void comm_all_gather(Comm* c, float* out, const float* in, size_t n) { c->ops->all_gather(c, out, in, n); }
void comm_gather(Comm* c, float* out, const float* in, size_t n, int root) { c->ops->gather(c, out, in, n, root); }
void comm_broadcast(Comm* c, void* buf, size_t bytes, int root) { c->ops->broadcast(c, buf, bytes, root); }
void comm_barrier(Comm* c) { c->ops->barrier(c); }
double comm_all_reduce_double(Comm* c, double x, CommOp op) { return c->ops->all_reduce_double(c, x, op); }

Comm* comm_split(Comm* c, int color, int key, Error* e) {
    if (color < 0) {
        errorf(e, "comm_split: color %d is negative on rank %d: every rank must name a group (color >= 0)", color,
               c->world_ranks[c->rank]);
        return NULL;
    }
    return c->ops->split(c, color, key, e);
}

void comm_abort(Comm* c, const char* message) {
    c->ops->abort(c, message);
    abort();  // not reached: implementations terminate the job
}

void comm_accumulate(float* acc, const float* x, size_t n, CommOp op) {
    if (op == COMM_MAX) {
        for (size_t i = 0; i < n; i++)
            if (isnan(x[i]) || x[i] > acc[i]) acc[i] = isnan(acc[i]) ? acc[i] : x[i];
        return;
    }
    for (size_t i = 0; i < n; i++) acc[i] += x[i];
}

void comm_finish_avg(float* x, size_t n, int size) {
    float inv = 1.0f / (float)size;
    for (size_t i = 0; i < n; i++) x[i] *= inv;
}

Comm* comm_alloc(const char* name, const CommOps* ops, int rank, int size) {
    Comm* c = xcalloc(1, sizeof *c);
    c->name = name;
    c->ops = ops;
    c->rank = rank;
    c->size = size;
    c->local_rank = 0;
    c->local_size = 1;
    c->timeout_s = COMM_DEFAULT_TIMEOUT_S;
    c->world_ranks = xmalloc((size_t)size * sizeof(int));
    for (int r = 0; r < size; r++) c->world_ranks[r] = r;
    return c;
}

void comm_release(Comm* c) {
    if (!c) return;
    free(c->world_ranks);
    free(c);
}
