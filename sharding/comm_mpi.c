// comm_mpi.c — the MPI communicator: every collective of comm.h built from non-blocking point-to-point
// messages on a private duplicate of the MPI communicator, completed by polling with a deadline.
//
// Contract (comm.h), and how it is met:
// - Deterministic reductions: reduce_scatter sends chunk q of every rank's input to rank q, which keeps
//   all size contributions and combines them in rank order (comm_accumulate); all_reduce is that
//   reduce_scatter followed by an all_gather of the owned chunks. The MPI library only moves bytes, so the
//   result does not depend on its algorithms. Traffic per rank: (size-1)/size * n floats sent by a
//   reduce_scatter or all_gather, twice that by an all_reduce (the same as a ring); temporary memory:
//   size * chunk floats, kept between calls (callers bound n: sharding/data_parallel.c uses buckets).
// - Accounting (comm_stats.h): every posted message counts its bytes, so rank r's counts are, for n floats
//   (4 bytes each) and len_q = comm_chunk_len(n, size, q): reduce_scatter sends n - len_r and receives
//   (size-1) len_r; all_gather the reverse; all_reduce both (sent = received = n + (size-2) len_r);
//   gather: len_r sent by every rank but the root, which receives n - len_root; broadcast: the root sends
//   (size-1) bytes, the others receive bytes; all_reduce_double 8 (size-1) each way; barrier nothing.
// - broadcast is linear (the root sends size-1 copies) and barrier / scalar all-reduce exchange one small
//   message between every pair: meant for small data (ids, flags, norms, losses).
// - Timeouts: every collective waits with MPI_Testsome until its deadline; then the receives that never
//   completed name the ranks that did not arrive (or, when only sends are left, the ranks that never
//   received), and the job is aborted with MPI_Abort(MPI_COMM_WORLD, 1) after a one-line message.
// - Messages over 1 GiB are split; each collective uses its own tag (a per-communicator sequence number),
//   so ranks that call collectives in different orders hang and are named instead of exchanging wrong
//   data. Only the thread that created the communicator may use it (MPI_THREAD_FUNNELED).
#include <mpi.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sharding/comm.h"
#include "sharding/mpi_check.h"

enum { MAX_MESSAGE_BYTES = 1 << 30, SPIN_POLLS = 64, MAX_TAG = 1 << 20 };
static const double YIELD_S = 0.005;

typedef struct Pending {   // the requests of one collective
    MPI_Request* req;      // (cap)
    int* peer;             // (cap) rank in the communicator
    char* is_recv;         // (cap)
    int* done;             // (cap) MPI_Testsome's indices
    int n, cap;
} Pending;

typedef struct MpiComm {
    MPI_Comm comm;         // private duplicate (world) or split result
    int owns_mpi;          // this world called MPI_Init: finalise on free
    unsigned seq;          // collectives issued, for tags
    int tag_limit;
    float* stage;          // (stage_cap) contributions received by reduce_scatter
    size_t stage_cap;
    float* own;            // (own_cap) the owned chunk inside all_reduce
    size_t own_cap;
    Pending p;
} MpiComm;

static MpiComm* impl(Comm* c) { return (MpiComm*)c->impl; }

static int next_tag(MpiComm* m) { return 1 + (int)(m->seq++ % (unsigned)(m->tag_limit - 1)); }

static float* grow(float** buf, size_t* cap, size_t n) {
    if (n > *cap) {
        free(*buf);
        *buf = xmalloc(n * sizeof(float));
        *cap = n;
    }
    return *buf;
}

// ---------------------------------------------------------------------------- requests and waiting
static void pending_add(Pending* p, MPI_Request r, int peer, int is_recv) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        p->req = xrealloc(p->req, (size_t)p->cap * sizeof *p->req);
        p->peer = xrealloc(p->peer, (size_t)p->cap * sizeof *p->peer);
        p->is_recv = xrealloc(p->is_recv, (size_t)p->cap);
        p->done = xrealloc(p->done, (size_t)p->cap * sizeof *p->done);
    }
    p->req[p->n] = r;
    p->peer[p->n] = peer;
    p->is_recv[p->n] = (char)is_recv;
    p->n++;
}

// Posts one message of `bytes` (at least one message, even empty; over 1 GiB in pieces) and counts its
// bytes against the running collective (comm_stats.h).
static void post(Comm* c, void* buf, size_t bytes, int peer, int tag, int is_recv) {
    MpiComm* m = impl(c);
    comm_count_bytes(c, is_recv ? 0 : bytes, is_recv ? bytes : 0);
    size_t off = 0;
    do {
        size_t len = bytes - off < MAX_MESSAGE_BYTES ? bytes - off : MAX_MESSAGE_BYTES;
        MPI_Request r;
        if (is_recv)
            mpi_check(MPI_Irecv((char*)buf + off, (int)len, MPI_BYTE, peer, tag, m->comm, &r));
        else
            mpi_check(MPI_Isend((char*)buf + off, (int)len, MPI_BYTE, peer, tag, m->comm, &r));
        pending_add(&m->p, r, peer, is_recv);
        off += len;
    } while (off < bytes);
}

static void post_send(Comm* c, const void* buf, size_t bytes, int peer, int tag) {
    post(c, (void*)buf, bytes, peer, tag, 0);
}
static void post_recv(Comm* c, void* buf, size_t bytes, int peer, int tag) { post(c, buf, bytes, peer, tag, 1); }

// Appends ", R" for every distinct world rank of a pending request of the wanted kind; returns how many.
static int list_peers(Comm* c, const Pending* p, int want_recv, char* out, size_t cap) {
    int count = 0;
    out[0] = '\0';
    for (int i = 0; i < p->n; i++) {
        if (p->req[i] == MPI_REQUEST_NULL || p->is_recv[i] != want_recv) continue;
        int seen = 0;
        for (int j = 0; j < i; j++)
            if (p->req[j] != MPI_REQUEST_NULL && p->is_recv[j] == want_recv && p->peer[j] == p->peer[i]) seen = 1;
        if (seen) continue;
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%d", count ? ", " : "", c->world_ranks[p->peer[i]]);
        count++;
    }
    return count;
}

static void timed_out(Comm* c, const char* what) {
    Pending* p = &impl(c)->p;
    char peers[1024];
    int count = list_peers(c, p, 1, peers, sizeof peers);
    if (count == 0) count = list_peers(c, p, 0, peers, sizeof peers);
    fflush(stdout);
    fprintf(stderr,
            "modrwkv: error: rank %d: collective %s timed out after %g s waiting for rank%s %s (a peer rank died "
            "or hangs); the last complete checkpoint is intact, resume with --resume auto\n",
            c->world_ranks[c->rank], what, c->timeout_s, count > 1 ? "s" : "", peers);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

// How a wait lets other processes run without stalling its own transfers: for the first YIELD_S seconds
// without a completed request it only yields the core (a large message moves in fragments, and each one
// needs this rank's polls: sleeping there made a 14 MB all-reduce between 2 ranks 4x slower); after that
// (a peer still computing, or dead) it sleeps a little longer each time, up to 1 ms.
static void back_off(double idle_s, int idle_polls) {
    if (idle_polls < SPIN_POLLS) return;
    if (idle_s < YIELD_S) {
        sched_yield();
        return;
    }
    long us = 20L * (idle_polls - SPIN_POLLS + 1);
    struct timespec ts = {0, (us < 1000 ? us : 1000) * 1000L};
    nanosleep(&ts, NULL);
}

// Completes every pending request of the current collective, or aborts the job at the deadline.
static void wait_all(Comm* c, const char* what) {
    Pending* p = &impl(c)->p;
    double start = now_seconds(), deadline = start + c->timeout_s, progress = start;
    int remaining = p->n, idle = 0;
    while (remaining > 0) {
        int completed = 0;
        mpi_check(MPI_Testsome(p->n, p->req, &completed, p->done, MPI_STATUSES_IGNORE));
        if (completed == MPI_UNDEFINED) break;
        double now = now_seconds();
        if (completed > 0) {
            remaining -= completed;
            idle = 0;
            progress = now;
            continue;
        }
        if (now > deadline) timed_out(c, what);
        back_off(now - progress, ++idle);
    }
    p->n = 0;
}

// ---------------------------------------------------------------------------- collectives
static size_t bytes_of(size_t n) { return n * sizeof(float); }

// Slot of peer q's contribution in the stage (this rank's own contribution has no slot).
static size_t slot(int q, int r) { return (size_t)(q < r ? q : q - 1); }

static void reduce_scatter_named(Comm* c, float* out, const float* in, size_t n, CommOp op, const char* what) {
    MpiComm* m = impl(c);
    int P = c->size, r = c->rank, tag = next_tag(m);
    size_t chunk = comm_chunk(n, P), len = comm_chunk_len(n, P, r);
    float* stage = grow(&m->stage, &m->stage_cap, (size_t)(P - 1) * chunk + 1);
    for (int q = 0; q < P; q++)
        if (q != r) post_recv(c, stage + slot(q, r) * chunk, bytes_of(len), q, tag);
    for (int i = 1; i < P; i++) {
        int q = (r + i) % P;
        post_send(c, in + (size_t)q * chunk, bytes_of(comm_chunk_len(n, P, q)), q, tag);
    }
    wait_all(c, what);
    for (int q = 0; q < P; q++) {
        const float* x = q == r ? in + (size_t)r * chunk : stage + slot(q, r) * chunk;
        if (q == 0 && len) memcpy(out, x, bytes_of(len));
        if (q > 0) comm_accumulate(out, x, len, op);
    }
    if (op == COMM_AVG) comm_finish_avg(out, len, P);
    if (chunk > len) memset(out + len, 0, bytes_of(chunk - len));
}

static void all_gather_named(Comm* c, float* out, const float* in, size_t n, const char* what) {
    int P = c->size, r = c->rank, tag = next_tag(impl(c));
    size_t chunk = comm_chunk(n, P), len = comm_chunk_len(n, P, r);
    for (int q = 0; q < P; q++)
        if (q != r) post_recv(c, out + (size_t)q * chunk, bytes_of(comm_chunk_len(n, P, q)), q, tag);
    for (int i = 1; i < P; i++) post_send(c, in, bytes_of(len), (r + i) % P, tag);
    if (len) memmove(out + (size_t)r * chunk, in, bytes_of(len));
    wait_all(c, what);
}

static void mpi_reduce_scatter(Comm* c, float* out, const float* in, size_t n, CommOp op) {
    reduce_scatter_named(c, out, in, n, op, "reduce_scatter");
}

static void mpi_all_gather(Comm* c, float* out, const float* in, size_t n) {
    all_gather_named(c, out, in, n, "all_gather");
}

static void mpi_all_reduce(Comm* c, float* x, size_t n, CommOp op) {
    MpiComm* m = impl(c);
    if (c->size == 1) return;  // x op nothing = x, bit for bit (AVG: x * 1.0f); saves two copies of x
    float* own = grow(&m->own, &m->own_cap, comm_chunk(n, c->size) + 1);
    reduce_scatter_named(c, own, x, n, op, "all_reduce");
    all_gather_named(c, x, own, n, "all_reduce");
}

static void mpi_gather(Comm* c, float* out, const float* in, size_t n, int root) {
    int P = c->size, r = c->rank, tag = next_tag(impl(c));
    size_t chunk = comm_chunk(n, P), len = comm_chunk_len(n, P, r);
    if (r == root) {
        for (int q = 0; q < P; q++)
            if (q != r) post_recv(c, out + (size_t)q * chunk, bytes_of(comm_chunk_len(n, P, q)), q, tag);
        if (len) memmove(out + (size_t)r * chunk, in, bytes_of(len));
    } else {
        post_send(c, in, bytes_of(len), root, tag);
    }
    wait_all(c, "gather");
}

static void mpi_broadcast(Comm* c, void* buf, size_t bytes, int root) {
    int P = c->size, r = c->rank, tag = next_tag(impl(c));
    if (r == root) {
        for (int i = 1; i < P; i++) post_send(c, buf, bytes, (r + i) % P, tag);
    } else {
        post_recv(c, buf, bytes, root, tag);
    }
    wait_all(c, "broadcast");
}

static void mpi_barrier(Comm* c) {
    int P = c->size, r = c->rank, tag = next_tag(impl(c));
    for (int i = 1; i < P; i++) post_recv(c, NULL, 0, (r + i) % P, tag);
    for (int i = 1; i < P; i++) post_send(c, NULL, 0, (r + i) % P, tag);
    wait_all(c, "barrier");
}

static double mpi_all_reduce_double(Comm* c, double x, CommOp op) {
    int P = c->size, r = c->rank, tag = next_tag(impl(c));
    double* vals = xmalloc((size_t)P * sizeof(double));
    vals[r] = x;
    for (int q = 0; q < P; q++)
        if (q != r) post_recv(c, &vals[q], sizeof(double), q, tag);
    for (int i = 1; i < P; i++) post_send(c, &vals[r], sizeof(double), (r + i) % P, tag);
    wait_all(c, "all_reduce_double");
    double acc = vals[0];
    for (int q = 1; q < P; q++) {
        if (op == COMM_MAX) acc = (acc != acc || vals[q] <= acc) ? acc : vals[q];
        else acc += vals[q];
    }
    free(vals);
    return op == COMM_AVG ? acc / P : acc;
}

// ---------------------------------------------------------------------------- lifetime
static const CommOps MPI_OPS;

static Comm* wrap(MPI_Comm comm, int owns_mpi, int local_rank, int local_size) {
    int rank, size;
    mpi_check(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
    mpi_check(MPI_Comm_rank(comm, &rank));
    mpi_check(MPI_Comm_size(comm, &size));
    Comm* c = comm_alloc("mpi", &MPI_OPS, rank, size);
    MpiComm* m = xcalloc(1, sizeof *m);
    m->comm = comm;
    m->owns_mpi = owns_mpi;
    int* ub = NULL;
    int flag = 0;
    mpi_check(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &flag));
    m->tag_limit = flag && *ub < MAX_TAG ? *ub : MAX_TAG;
    c->impl = m;
    c->local_rank = local_rank;
    c->local_size = local_size;
    MPI_Group group, world;
    mpi_check(MPI_Comm_group(comm, &group));
    mpi_check(MPI_Comm_group(MPI_COMM_WORLD, &world));
    int* members = xmalloc((size_t)size * sizeof(int));
    for (int q = 0; q < size; q++) members[q] = q;
    mpi_check(MPI_Group_translate_ranks(group, size, members, world, c->world_ranks));
    free(members);
    mpi_check(MPI_Group_free(&group));
    mpi_check(MPI_Group_free(&world));
    return c;
}

Comm* comm_mpi_world_create(int* argc, char*** argv, Error* e) {
    int initialized = 0, owns = 0;
    mpi_check(MPI_Initialized(&initialized));
    if (!initialized) {
        int provided = 0;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            errorf(e, "MPI_Init failed: check the MPI installation and launch with mpirun -np N or srun --mpi=pmix");
            return NULL;
        }
        owns = 1;
    }
    mpi_check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    MPI_Comm dup, node;
    mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
    int rank, local_rank, local_size;
    mpi_check(MPI_Comm_rank(dup, &rank));
    mpi_check(MPI_Comm_split_type(dup, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
    mpi_check(MPI_Comm_rank(node, &local_rank));
    mpi_check(MPI_Comm_size(node, &local_size));
    mpi_check(MPI_Comm_free(&node));
    return wrap(dup, owns, local_rank, local_size);
}

static Comm* mpi_split(Comm* c, int color, int key, Error* e) {
    mpi_barrier(c);  // every rank has arrived (or the missing ones are named), so the split cannot hang
    MPI_Comm sub;
    mpi_check(MPI_Comm_split(impl(c)->comm, color, key, &sub));
    Comm* s = wrap(sub, 0, c->local_rank, c->local_size);
    s->timeout_s = c->timeout_s;
    return s;
}

static void mpi_abort(Comm* c, const char* message) {
    fflush(stdout);
    fprintf(stderr, "modrwkv: error: rank %d: %s\n", c->world_ranks[c->rank], message);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static void mpi_free(Comm* c) {
    MpiComm* m = impl(c);
    mpi_check(MPI_Comm_free(&m->comm));
    if (m->owns_mpi) mpi_check(MPI_Finalize());
    free(m->stage);
    free(m->own);
    free(m->p.req);
    free(m->p.peer);
    free(m->p.is_recv);
    free(m->p.done);
    free(m);
    comm_release(c);
}

static const CommOps MPI_OPS = {
    .all_reduce = mpi_all_reduce,
    .reduce_scatter = mpi_reduce_scatter,
    .all_gather = mpi_all_gather,
    .gather = mpi_gather,
    .broadcast = mpi_broadcast,
    .barrier = mpi_barrier,
    .all_reduce_double = mpi_all_reduce_double,
    .split = mpi_split,
    .abort = mpi_abort,
    .free = mpi_free,
};
