// comm.h — one communicator API for every collective modrwkv needs (DESIGN.md, "Parallelism").
//
// Contract:
// - A Comm is a group of `size` ranks numbered 0..size-1. Every rank of the group must call the same
//   collectives in the same order with the same sizes (n, bytes, root); buffers are host memory
//   (device memory for the NCCL communicator).
// - Implementations: MPI (comm_mpi.c, when built with MPI) and a world of one rank (comm_self.c).
//   NCCL (comm_nccl.c, when built with CUDA and NCCL) is a third implementation of the same table whose
//   buffers are DEVICE memory; its sums are NCCL's, not rank-ordered (see comm_nccl.h).
// - Determinism (MPI and self): reductions are NOT left to the MPI library. Every element of a SUM is computed as the
//   left-to-right fp32 sum over ranks in rank order, ((x_0 + x_1) + x_2) + ..., by the rank that owns
//   the element's chunk, and then copied to the others. So a reduced value is bit-identical on every
//   rank and for any MPI algorithm, message size, bucket/window size or ZeRO setting, and it equals the
//   serial sum a single process computes in rank order. AVG is that sum times (1.0f / size) in fp32.
//   MAX propagates NaN. (Different world sizes sum different terms, so they are not bit-comparable.)
// - Chunks and padding: a collective over n floats splits them into `size` chunks of
//   chunk = comm_chunk(n, size) = ceil(n / size) floats; rank r's chunk is [r*chunk, r*chunk + len_r)
//   with len_r = comm_chunk_len(n, size, r) (the last chunks can be shorter, even empty when n < size).
//   Callers never pad their buffers: reduce_scatter writes chunk floats (len_r values then zeros) and
//   all_gather/gather read only len_r values from each rank.
// - Timeouts: a collective that has not completed after comm_timeout seconds (default 300, see
//   comm_set_timeout) prints one line naming this rank, the collective and the rank(s) that did not
//   arrive, and aborts the whole job with a non-zero status (a peer rank died or hangs).
// - Accounting: every communicator counts calls, wire bytes and seconds per collective kind
//   (comm_stats.h; comm_stats_get below; MODRWKV_COMM_STATS=path writes a per-rank JSON summary).
// - Programming errors (different sizes on different ranks, an MPI failure) abort the whole job with a
//   message naming the rank; only user-input problems (comm_world_create, comm_split) return -1/NULL.
#pragma once
#include <stddef.h>

#include "kernels/common.h"
#include "sharding/comm_stats.h"

typedef struct Comm Comm;

typedef enum CommOp {
    COMM_SUM = 0,  // rank-order fp32 (double for scalars) sum
    COMM_AVG = 1,  // the sum times 1/size
    COMM_MAX = 2,  // maximum, NaN wins
} CommOp;

enum { COMM_DEFAULT_TIMEOUT_S = 300 };

// The world communicator. With MPI compiled in and the process started by an MPI launcher (mpirun,
// mpiexec, srun --mpi=pmix: OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK is set), initialises MPI and
// returns MPI_COMM_WORLD's ranks; otherwise returns a world of one rank. Call it once, early in main;
// comm_free(world) finalises MPI. Returns NULL with e filled when MPI cannot start.
Comm* comm_world_create(int* argc, char*** argv, Error* e);
// A world of one rank that never touches MPI.
Comm* comm_self_create(void);
#ifdef MODRWKV_HAVE_MPI
// MPI_COMM_WORLD (MPI_Init_thread with MPI_THREAD_FUNNELED unless MPI is already initialised).
Comm* comm_mpi_world_create(int* argc, char*** argv, Error* e);
#endif
// Frees a communicator. Free the splits first: freeing the world finalises MPI if it started it.
void comm_free(Comm* c);

int comm_rank(const Comm* c);
int comm_size(const Comm* c);
// Rank of this process among the ranks of its node (shared memory domain) and their number; for a
// split communicator, those of the world it was split from.
int comm_local_rank(const Comm* c);
int comm_local_size(const Comm* c);
// World rank of member r (used in messages, so that every rank names peers the same way).
int comm_world_rank(const Comm* c, int r);
// "mpi", "self" or "nccl".
const char* comm_backend_name(const Comm* c);

// Seconds a collective may wait for its peers before the job is aborted (> 0). Splits inherit it.
void comm_set_timeout(Comm* c, double seconds);
double comm_timeout(const Comm* c);

// chunk = ceil(n / size); len_r = number of the n values in rank r's chunk (0 <= len_r <= chunk).
size_t comm_chunk(size_t n, int size);
size_t comm_chunk_len(size_t n, int size, int r);

// x (n) = op over ranks of x, in place.
void comm_all_reduce(Comm* c, float* x, size_t n, CommOp op);
// out (chunk) = op over ranks of in[r*chunk .. r*chunk + len_r) for this rank r, then zeros up to chunk.
// in (n) is every rank's full contribution. out must not alias in.
void comm_reduce_scatter(Comm* c, float* out, const float* in, size_t n, CommOp op);
// out (n) = the chunks of all ranks in rank order; in holds this rank's len_r values. out must not alias in.
void comm_all_gather(Comm* c, float* out, const float* in, size_t n);
// As all_gather, but only rank `root` receives (out may be NULL on the others).
void comm_gather(Comm* c, float* out, const float* in, size_t n, int root);
// buf (bytes) of rank `root` is copied to every rank.
void comm_broadcast(Comm* c, void* buf, size_t bytes, int root);
// Returns when every rank has entered the barrier.
void comm_barrier(Comm* c);
// op over ranks of one double (SUM in rank order, AVG, MAX); the same value on every rank.
double comm_all_reduce_double(Comm* c, double x, CommOp op);

// Splits c into disjoint groups: ranks with the same color (>= 0) form one group, ordered by key then
// by their rank in c (MPI_Comm_split semantics). Collective over c. Returns NULL with e filled on a
// negative color.
Comm* comm_split(Comm* c, int color, int key, Error* e);

// This rank's counts since creation or the last reset (comm_stats.h), and their reset to zero.
void comm_stats_get(const Comm* c, CommStats* out);
void comm_stats_reset(Comm* c);

// Prints "modrwkv: error: rank R: <message>" and terminates every rank of the job with a non-zero
// status (the way out when one rank meets an error the others cannot know about).
void comm_abort(Comm* c, const char* message) __attribute__((noreturn));

// ---------------------------------------------------------------------------- for implementations
typedef struct CommOps {
    void (*all_reduce)(Comm* c, float* x, size_t n, CommOp op);
    void (*reduce_scatter)(Comm* c, float* out, const float* in, size_t n, CommOp op);
    void (*all_gather)(Comm* c, float* out, const float* in, size_t n);
    void (*gather)(Comm* c, float* out, const float* in, size_t n, int root);
    void (*broadcast)(Comm* c, void* buf, size_t bytes, int root);
    void (*barrier)(Comm* c);
    double (*all_reduce_double)(Comm* c, double x, CommOp op);
    Comm* (*split)(Comm* c, int color, int key, Error* e);
    void (*abort)(Comm* c, const char* message);
    void (*free)(Comm* c);
} CommOps;

struct Comm {
    const char* name;         // "mpi", "self" or "nccl"
    const CommOps* ops;
    int rank, size;
    int local_rank, local_size;
    double timeout_s;
    int* world_ranks;         // (size) world rank of each member
    void* impl;               // implementation state
    CommStats stats;          // counts of this rank (comm_stats.h)
    CommKind stats_kind;      // the collective being dispatched (bytes are counted against it)
    int stats_is_world;       // 1: comm_world_create's result (writes the MODRWKV_COMM_STATS summary)
};

// Combines contributions the deterministic way: acc (n) = acc op x, applied in rank order by callers
// (COMM_AVG accumulates like COMM_SUM; comm_finish_avg scales at the end).
void comm_accumulate(float* acc, const float* x, size_t n, CommOp op);
void comm_finish_avg(float* x, size_t n, int size);
// Adds wire bytes to the collective being dispatched on c (implementations call it where they move data;
// an implementation must not call the public collectives of c from inside its own operations).
void comm_count_bytes(Comm* c, size_t sent, size_t received);
// A small Comm with rank/size/world_ranks allocated (world_ranks[r] = r); the caller sets ops/impl.
Comm* comm_alloc(const char* name, const CommOps* ops, int rank, int size);
void comm_release(Comm* c);
