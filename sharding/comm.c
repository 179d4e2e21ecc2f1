// comm.c — the implementation-independent half of comm.h: dispatch through the CommOps table (counting
// calls and seconds per collective kind, comm_stats.h), chunk arithmetic, the deterministic combine step,
// and the choice of the world communicator.
#include "sharding/comm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int launched_by_mpi(void) {
    const char* vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

// The world writes the MODRWKV_COMM_STATS summary when it is freed (comm_stats.h).
static Comm* as_world(Comm* c) {
    if (c) c->stats_is_world = 1;
    return c;
}

Comm* comm_world_create(int* argc, char*** argv, Error* e) {
#ifdef MODRWKV_HAVE_MPI
    if (launched_by_mpi()) return as_world(comm_mpi_world_create(argc, argv, e));
#else
    if (launched_by_mpi() && getenv("OMPI_COMM_WORLD_SIZE") && atoi(getenv("OMPI_COMM_WORLD_SIZE")) > 1) {
        errorf(e, "started by an MPI launcher with %s ranks, but this modrwkv was built without MPI: install "
                  "Open MPI (libopenmpi-dev) and rebuild, or run a single process",
               getenv("OMPI_COMM_WORLD_SIZE"));
        return NULL;
    }
#endif
    return as_world(comm_self_create());
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

// ---------------------------------------------------------------------------- dispatch and accounting
// Counts the call and makes `kind` the collective that comm_count_bytes charges; returns the start time.
static double begin(Comm* c, CommKind kind) {
    c->stats.kind[kind].calls++;
    c->stats_kind = kind;
    return now_seconds();
}

static void end(Comm* c, CommKind kind, double t0) { c->stats.kind[kind].seconds += now_seconds() - t0; }

void comm_count_bytes(Comm* c, size_t sent, size_t received) {
    c->stats.kind[c->stats_kind].bytes_sent += sent;
    c->stats.kind[c->stats_kind].bytes_received += received;
}

void comm_stats_get(const Comm* c, CommStats* out) { *out = c->stats; }
void comm_stats_reset(Comm* c) { memset(&c->stats, 0, sizeof c->stats); }

void comm_all_reduce(Comm* c, float* x, size_t n, CommOp op) {
    double t0 = begin(c, COMM_KIND_ALL_REDUCE);
    c->ops->all_reduce(c, x, n, op);
    end(c, COMM_KIND_ALL_REDUCE, t0);
}

void comm_reduce_scatter(Comm* c, float* out, const float* in, size_t n, CommOp op) {
    double t0 = begin(c, COMM_KIND_REDUCE_SCATTER);
    c->ops->reduce_scatter(c, out, in, n, op);
    end(c, COMM_KIND_REDUCE_SCATTER, t0);
}

void comm_all_gather(Comm* c, float* out, const float* in, size_t n) {
    double t0 = begin(c, COMM_KIND_ALL_GATHER);
    c->ops->all_gather(c, out, in, n);
    end(c, COMM_KIND_ALL_GATHER, t0);
}

void comm_gather(Comm* c, float* out, const float* in, size_t n, int root) {
    double t0 = begin(c, COMM_KIND_GATHER);
    c->ops->gather(c, out, in, n, root);
    end(c, COMM_KIND_GATHER, t0);
}

void comm_broadcast(Comm* c, void* buf, size_t bytes, int root) {
    double t0 = begin(c, COMM_KIND_BROADCAST);
    c->ops->broadcast(c, buf, bytes, root);
    end(c, COMM_KIND_BROADCAST, t0);
}

void comm_barrier(Comm* c) {
    double t0 = begin(c, COMM_KIND_BARRIER);
    c->ops->barrier(c);
    end(c, COMM_KIND_BARRIER, t0);
}

double comm_all_reduce_double(Comm* c, double x, CommOp op) {
    double t0 = begin(c, COMM_KIND_ALL_REDUCE_DOUBLE);
    double r = c->ops->all_reduce_double(c, x, op);
    end(c, COMM_KIND_ALL_REDUCE_DOUBLE, t0);
    return r;
}

Comm* comm_split(Comm* c, int color, int key, Error* e) {
    if (color < 0) {
        errorf(e, "comm_split: color %d is negative on rank %d: every rank must name a group (color >= 0)", color,
               c->world_ranks[c->rank]);
        return NULL;
    }
    double t0 = begin(c, COMM_KIND_SPLIT);
    Comm* s = c->ops->split(c, color, key, e);
    end(c, COMM_KIND_SPLIT, t0);
    return s;
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
    comm_stats_track(c);
    return c;
}

void comm_release(Comm* c) {
    if (!c) return;
    comm_stats_untrack(c);
    free(c->world_ranks);
    free(c);
}
