// comm_nccl.c — the NCCL communicator of comm_nccl.h: the CommOps table on device buffers, a non-blocking
// NCCL communicator driven by a host-side watchdog (enqueue, then poll until done, an error or the
// deadline), equal-chunk staging for ragged sizes, and creation by unique id over a host communicator.
// Plain C against the CUDA runtime and NCCL APIs (no kernels of its own: AVG is ncclAvg).
#include "sharding/comm_nccl.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { SPIN_POLLS = 256 };

typedef struct NcclComm {
    Comm* parent;            // host communicator of the same ranks (comm_broadcast, abort, split)
    int owns_parent;         // a split owns the host communicator made for it
    int device;
    ncclComm_t nccl;
    cudaStream_t stream;     // every collective runs here
    cudaStream_t compute;    // waited for before each collective (NULL: legacy default stream)
    cudaEvent_t ready;       // recorded on compute
    float* stage_in;         // (stage_in_cap) padded input of a ragged reduce_scatter
    size_t stage_in_cap;
    float* stage_out;        // (stage_out_cap) padded output of a ragged all_gather
    size_t stage_out_cap;
    double* scratch;         // (2) device: [0] the scalar all-reduce, [1] zeros for the barrier
    double* host_scratch;    // (1) pinned host copy of the scalar
} NcclComm;

static NcclComm* impl(const Comm* c) { return (NcclComm*)c->impl; }

// ---------------------------------------------------------------------------- failures
static const char* const WHAT_TO_DO =
    "rerun with NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET to see why, check that every rank sees its own GPU "
    "(CUDA_VISIBLE_DEVICES, nvidia-smi) and that the nodes reach each other";

// Ends the job from a communicator that exists: NCCL's kernels are aborted first, then the parent's
// abort prints "modrwkv: error: rank R: <message>" and terminates every rank.
static void fail(Comm* c, const char* message) __attribute__((noreturn));
static void fail(Comm* c, const char* message) {
    NcclComm* m = impl(c);
    if (m->nccl) ncclCommAbort(m->nccl);
    m->nccl = NULL;
    comm_abort(m->parent, message);
}

static void cuda_check_at(Comm* c, cudaError_t rc, const char* call, const char* file, int line) {
    if (rc == cudaSuccess) return;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s failed on GPU %d (%s:%d): %s; %s", call, impl(c)->device, file, line,
             cudaGetErrorString(rc), WHAT_TO_DO);
    fail(c, msg);
}

// Checks one CUDA call of an existing communicator: cuda_check(c, cudaMemcpyAsync(...)).
#define cuda_check(c, call) cuda_check_at((c), (call), #call, __FILE__, __LINE__)

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000L, (us % 1000000L) * 1000L};
    nanosleep(&ts, NULL);
}

// Spins first, then sleeps a little longer each time up to 1 ms (ranks may share CPU cores).
static void back_off(int idle_polls) {
    if (idle_polls < SPIN_POLLS) return;
    long us = 10L * (idle_polls - SPIN_POLLS + 1);
    sleep_us(us < 1000 ? us : 1000);
}

// Waits until an NCCL call of the non-blocking communicator nc has been issued: ncclInProgress is polled
// through ncclCommGetAsyncError until it changes or `deadline` (then ncclInProgress is returned).
static ncclResult_t settle(ncclComm_t nc, ncclResult_t rc, double deadline) {
    int idle = 0;
    while (rc == ncclInProgress) {
        if (now_seconds() > deadline) return ncclInProgress;
        back_off(++idle);
        if (ncclCommGetAsyncError(nc, &rc) != ncclSuccess) return ncclInternalError;
    }
    return rc;
}

static void nccl_check_at(Comm* c, ncclResult_t rc, const char* call, const char* file, int line) {
    rc = settle(impl(c)->nccl, rc, now_seconds() + c->timeout_s);
    if (rc == ncclSuccess) return;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s failed on GPU %d (%s:%d): %s (%s); %s", call, impl(c)->device, file, line,
             rc == ncclInProgress ? "still in progress at the timeout" : ncclGetErrorString(rc),
             ncclGetLastError(impl(c)->nccl), WHAT_TO_DO);
    fail(c, msg);
}

// Checks one NCCL call of an existing communicator (issuing it to completion in non-blocking mode):
// nccl_check(c, ncclAllReduce(...)).
#define nccl_check(c, call) nccl_check_at((c), (call), #call, __FILE__, __LINE__)

// ---------------------------------------------------------------------------- the watchdog
static void timed_out(Comm* c, const char* what, size_t n) {
    char msg[1024];
    snprintf(msg, sizeof msg,
             "NCCL collective %s (%zu values) on GPU %d timed out after %g s (a peer rank died or hangs, or NCCL "
             "cannot reach it: %s); the last complete checkpoint is intact, resume with --resume auto",
             what, n, impl(c)->device, c->timeout_s, WHAT_TO_DO);
    fail(c, msg);
}

static void async_failed(Comm* c, const char* what, ncclResult_t rc) {
    char msg[1024];
    snprintf(msg, sizeof msg, "NCCL collective %s on GPU %d failed: %s (%s); %s", what, impl(c)->device,
             ncclGetErrorString(rc), ncclGetLastError(impl(c)->nccl), WHAT_TO_DO);
    fail(c, msg);
}

// Returns when everything queued on the communicator's stream has completed; aborts the job on an
// asynchronous NCCL error or after the timeout.
static void wait_done(Comm* c, const char* what, size_t n) {
    NcclComm* m = impl(c);
    double deadline = now_seconds() + c->timeout_s;
    for (int idle = 0;; idle++) {
        cudaError_t q = cudaStreamQuery(m->stream);
        if (q == cudaSuccess) return;
        if (q != cudaErrorNotReady) cuda_check_at(c, q, "cudaStreamQuery", __FILE__, __LINE__);
        ncclResult_t async = ncclSuccess;
        nccl_check(c, ncclCommGetAsyncError(m->nccl, &async));
        if (async != ncclSuccess && async != ncclInProgress) async_failed(c, what, async);
        if (now_seconds() > deadline) timed_out(c, what, n);
        back_off(idle);
    }
}

// The communicator's stream waits for the work queued so far on the compute stream.
static void after_compute(Comm* c) {
    NcclComm* m = impl(c);
    cuda_check(c, cudaEventRecord(m->ready, m->compute));
    cuda_check(c, cudaStreamWaitEvent(m->stream, m->ready, 0));
}

// ---------------------------------------------------------------------------- collectives
static ncclRedOp_t red_op(CommOp op) {
    if (op == COMM_MAX) return ncclMax;
    return op == COMM_AVG ? ncclAvg : ncclSum;
}

// Ring all-reduce volume of n values of `bytes` each on P ranks, per rank and direction.
static size_t ring_all_reduce_bytes(size_t n, size_t bytes, int P) {
    return 2 * (size_t)(P - 1) * n * bytes / (size_t)P;
}

static float* grow(Comm* c, float** buf, size_t* cap, size_t n) {
    if (n > *cap) {
        cuda_check(c, cudaFree(*buf));
        *buf = NULL;
        cuda_check(c, cudaMalloc((void**)buf, n * sizeof(float)));
        *cap = n;
    }
    return *buf;
}

static void nccl_all_reduce(Comm* c, float* x, size_t n, CommOp op) {
    NcclComm* m = impl(c);
    if (n == 0) return;
    after_compute(c);
    nccl_check(c, ncclAllReduce(x, x, n, ncclFloat32, red_op(op), m->nccl, m->stream));
    comm_count_bytes(c, ring_all_reduce_bytes(n, sizeof(float), c->size),
                     ring_all_reduce_bytes(n, sizeof(float), c->size));
    wait_done(c, "all_reduce", n);
}

static void nccl_reduce_scatter(Comm* c, float* out, const float* in, size_t n, CommOp op) {
    NcclComm* m = impl(c);
    int P = c->size;
    size_t chunk = comm_chunk(n, P), padded = chunk * (size_t)P;
    if (n == 0) return;
    after_compute(c);
    const float* src = in;
    if (padded != n) {  // ragged: n inputs then zeros, in a buffer NCCL can cut into P equal chunks
        float* stage = grow(c, &m->stage_in, &m->stage_in_cap, padded);
        cuda_check(c, cudaMemcpyAsync(stage, in, n * sizeof(float), cudaMemcpyDeviceToDevice, m->stream));
        cuda_check(c, cudaMemsetAsync(stage + n, 0, (padded - n) * sizeof(float), m->stream));
        src = stage;
    }
    nccl_check(c, ncclReduceScatter(src, out, chunk, ncclFloat32, red_op(op), m->nccl, m->stream));
    comm_count_bytes(c, (size_t)(P - 1) * chunk * sizeof(float), (size_t)(P - 1) * chunk * sizeof(float));
    wait_done(c, "reduce_scatter", n);
}

static void nccl_all_gather(Comm* c, float* out, const float* in, size_t n) {
    NcclComm* m = impl(c);
    int P = c->size;
    size_t chunk = comm_chunk(n, P), padded = chunk * (size_t)P, len = comm_chunk_len(n, P, c->rank);
    if (n == 0) return;
    after_compute(c);
    if (padded == n) {
        nccl_check(c, ncclAllGather(in, out, chunk, ncclFloat32, m->nccl, m->stream));
    } else {  // ragged: this rank's len values padded to a chunk, gathered into a padded buffer
        float* send = grow(c, &m->stage_in, &m->stage_in_cap, chunk);
        float* recv = grow(c, &m->stage_out, &m->stage_out_cap, padded);
        if (len) cuda_check(c, cudaMemcpyAsync(send, in, len * sizeof(float), cudaMemcpyDeviceToDevice, m->stream));
        cuda_check(c, cudaMemsetAsync(send + len, 0, (chunk - len) * sizeof(float), m->stream));
        nccl_check(c, ncclAllGather(send, recv, chunk, ncclFloat32, m->nccl, m->stream));
        cuda_check(c, cudaMemcpyAsync(out, recv, n * sizeof(float), cudaMemcpyDeviceToDevice, m->stream));
    }
    comm_count_bytes(c, (size_t)(P - 1) * chunk * sizeof(float), (size_t)(P - 1) * chunk * sizeof(float));
    wait_done(c, "all_gather", n);
}

static void nccl_gather(Comm* c, float* out, const float* in, size_t n, int root) {
    NcclComm* m = impl(c);
    int P = c->size, r = c->rank;
    size_t chunk = comm_chunk(n, P), len = comm_chunk_len(n, P, r), moved = 0;
    if (n == 0) return;
    after_compute(c);
    if (r == root && len)
        cuda_check(c, cudaMemcpyAsync(out + (size_t)r * chunk, in, len * sizeof(float), cudaMemcpyDeviceToDevice,
                                      m->stream));
    nccl_check(c, ncclGroupStart());
    for (int q = 0; r == root && q < P; q++) {
        size_t len_q = comm_chunk_len(n, P, q);
        if (q == r || len_q == 0) continue;
        nccl_check(c, ncclRecv(out + (size_t)q * chunk, len_q, ncclFloat32, q, m->nccl, m->stream));
        moved += len_q;
    }
    if (r != root && len) nccl_check(c, ncclSend(in, len, ncclFloat32, root, m->nccl, m->stream));
    nccl_check(c, ncclGroupEnd());
    comm_count_bytes(c, r == root ? 0 : len * sizeof(float), moved * sizeof(float));
    wait_done(c, "gather", n);
}

static void nccl_broadcast(Comm* c, void* buf, size_t bytes, int root) {
    NcclComm* m = impl(c);
    if (bytes == 0) return;
    after_compute(c);
    nccl_check(c, ncclBroadcast(buf, buf, bytes, ncclUint8, root, m->nccl, m->stream));
    comm_count_bytes(c, c->rank == root ? bytes : 0, c->rank == root ? 0 : bytes);
    wait_done(c, "broadcast", bytes);
}

static void nccl_barrier(Comm* c) {
    NcclComm* m = impl(c);
    float* zero = (float*)(m->scratch + 1);  // stays 0: a sum of zeros
    nccl_check(c, ncclAllReduce(zero, zero, 1, ncclFloat32, ncclSum, m->nccl, m->stream));
    comm_count_bytes(c, ring_all_reduce_bytes(1, sizeof(float), c->size),
                     ring_all_reduce_bytes(1, sizeof(float), c->size));
    wait_done(c, "barrier", 1);
}

static double nccl_all_reduce_double(Comm* c, double x, CommOp op) {
    NcclComm* m = impl(c);
    *m->host_scratch = x;
    cuda_check(c, cudaMemcpyAsync(m->scratch, m->host_scratch, sizeof(double), cudaMemcpyHostToDevice, m->stream));
    nccl_check(c, ncclAllReduce(m->scratch, m->scratch, 1, ncclFloat64, op == COMM_MAX ? ncclMax : ncclSum, m->nccl,
                                m->stream));
    cuda_check(c, cudaMemcpyAsync(m->host_scratch, m->scratch, sizeof(double), cudaMemcpyDeviceToHost, m->stream));
    comm_count_bytes(c, ring_all_reduce_bytes(1, sizeof(double), c->size),
                     ring_all_reduce_bytes(1, sizeof(double), c->size));
    wait_done(c, "all_reduce_double", 1);
    return op == COMM_AVG ? *m->host_scratch / c->size : *m->host_scratch;
}

// ---------------------------------------------------------------------------- creation
static const CommOps NCCL_OPS;

// Device state of a rank before NCCL: the GPU, the stream, the event and the scratch buffers. Returns -1
// with e filled (a CUDA failure: no usable device) and releases what it made.
static int open_device(NcclComm* m, int device, Error* e) {
    cudaError_t rc = cudaSetDevice(device);
    if (rc == cudaSuccess) rc = cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking);
    if (rc == cudaSuccess) rc = cudaEventCreateWithFlags(&m->ready, cudaEventDisableTiming);
    if (rc == cudaSuccess) rc = cudaMalloc((void**)&m->scratch, 2 * sizeof(double));
    if (rc == cudaSuccess) rc = cudaMemset(m->scratch, 0, 2 * sizeof(double));
    if (rc == cudaSuccess) rc = cudaMallocHost((void**)&m->host_scratch, sizeof(double));
    if (rc == cudaSuccess) return 0;
    return errorf(e, "GPU %d cannot be used for NCCL: %s; check CUDA_VISIBLE_DEVICES, the driver (nvidia-smi) and "
                     "that no other process holds the GPU in exclusive mode",
                  device, cudaGetErrorString(rc));
}

static void close_device(NcclComm* m) {
    if (m->stream) cudaStreamDestroy(m->stream);
    if (m->ready) cudaEventDestroy(m->ready);
    cudaFree(m->scratch);
    cudaFree(m->stage_in);
    cudaFree(m->stage_out);
    cudaFreeHost(m->host_scratch);
}

// 1 when any rank of the parent passes failed != 0 (the same answer everywhere).
static int any_failed(Comm* parent, int failed) { return comm_all_reduce_double(parent, failed, COMM_MAX) != 0; }

// e of a rank that did not fail itself names the failure elsewhere.
static void elsewhere(Comm* parent, int failed, const char* step, Error* e) {
    if (!failed)
        errorf(e, "NCCL communicator not created: another rank failed to %s (see its message; this is rank %d)", step,
               comm_world_rank(parent, comm_rank(parent)));
}

// ncclCommInitRankConfig in non-blocking mode, polled until the parent's timeout.
static int init_rank(Comm* parent, const ncclUniqueId* id, ncclComm_t* out, Error* e) {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    *out = NULL;
    ncclResult_t rc = ncclCommInitRankConfig(out, comm_size(parent), *id, comm_rank(parent), &config);
    if (*out) rc = settle(*out, rc, now_seconds() + comm_timeout(parent));
    if (rc == ncclSuccess) return 0;
    const char* why = rc == ncclInProgress ? "not done at the timeout" : ncclGetErrorString(rc);
    errorf(e, "ncclCommInitRankConfig failed on rank %d: %s (%s); %s", comm_world_rank(parent, comm_rank(parent)),
           why, ncclGetLastError(*out), WHAT_TO_DO);
    if (*out) ncclCommAbort(*out);
    *out = NULL;
    return -1;
}

static Comm* wrap(Comm* parent, int owns_parent, NcclComm* m) {
    Comm* c = comm_alloc("nccl", &NCCL_OPS, comm_rank(parent), comm_size(parent));
    memcpy(c->world_ranks, parent->world_ranks, (size_t)parent->size * sizeof(int));
    c->local_rank = parent->local_rank;
    c->local_size = parent->local_size;
    c->timeout_s = parent->timeout_s;
    m->parent = parent;
    m->owns_parent = owns_parent;
    c->impl = m;
    return c;
}

// Releases what create made (and the host communicator of a split) after a failure; returns NULL.
static Comm* undo(NcclComm* m, Comm* parent, int owns_parent) {
    if (m->nccl) ncclCommAbort(m->nccl);
    close_device(m);
    free(m);
    if (owns_parent) comm_free(parent);
    return NULL;
}

// The steps of comm_nccl_create on a host communicator; a split passes the one it made (owned).
static Comm* create(Comm* parent, int owns_parent, int device, Error* e) {
    NcclComm* m = xcalloc(1, sizeof *m);
    m->device = device;
    int failed = open_device(m, device, e) != 0;
    if (any_failed(parent, failed)) {
        elsewhere(parent, failed, "open its GPU", e);
        return undo(m, parent, owns_parent);
    }
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    ncclResult_t rc = comm_rank(parent) == 0 ? ncclGetUniqueId(&id) : ncclSuccess;
    failed = rc != ncclSuccess;
    if (failed) errorf(e, "ncclGetUniqueId failed on rank 0: %s; %s", ncclGetErrorString(rc), WHAT_TO_DO);
    if (any_failed(parent, failed)) {
        elsewhere(parent, failed, "draw the NCCL unique id", e);
        return undo(m, parent, owns_parent);
    }
    comm_broadcast(parent, &id, sizeof id, 0);
    failed = init_rank(parent, &id, &m->nccl, e) != 0;
    if (any_failed(parent, failed)) {
        elsewhere(parent, failed, "join the NCCL communicator", e);
        return undo(m, parent, owns_parent);
    }
    return wrap(parent, owns_parent, m);
}

int comm_nccl_device(int local_rank, int local_size, Error* e) {
    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess || count == 0)
        return errorf(e, "no CUDA device is visible to this rank (%s): run on a GPU node and check "
                         "CUDA_VISIBLE_DEVICES and the driver (nvidia-smi)",
                      rc != cudaSuccess ? cudaGetErrorString(rc) : "0 devices");
    if (local_size > count)
        return errorf(e, "%d ranks run on this node but only %d GPU%s visible: NCCL needs one GPU per rank; launch "
                         "at most %d ranks per node (srun --ntasks-per-node=%d, mpirun --map-by ppr:%d:node)",
                      local_size, count, count == 1 ? " is" : "s are", count, count, count);
    return local_rank % count;
}

Comm* comm_nccl_create(Comm* parent, int device, Error* e) {
    Error local = {{0}};
    int failed = 0;
    if (device < 0) {
        device = comm_nccl_device(comm_local_rank(parent), comm_local_size(parent), &local);
        failed = device < 0;
    }
    if (any_failed(parent, failed)) {
        if (failed) errorf(e, "rank %d: %s", comm_world_rank(parent, comm_rank(parent)), local.msg);
        else elsewhere(parent, failed, "find its GPU", e);
        return NULL;
    }
    return create(parent, 0, device, e);
}

void comm_nccl_set_compute_stream(Comm* c, cudaStream_t stream) { impl(c)->compute = stream; }
cudaStream_t comm_nccl_stream(const Comm* c) { return impl(c)->stream; }
int comm_nccl_gpu(const Comm* c) { return impl(c)->device; }

// ---------------------------------------------------------------------------- split, abort, free
static Comm* nccl_split(Comm* c, int color, int key, Error* e) {
    NcclComm* m = impl(c);
    Comm* host = comm_split(m->parent, color, key, e);  // same ranks and order as the NCCL split
    if (!host) return NULL;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
    NcclComm* s = xcalloc(1, sizeof *s);
    s->device = m->device;
    Error local = {{0}};
    if (open_device(s, m->device, &local) != 0) fail(c, local.msg);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t rc = ncclCommSplit(m->nccl, color, key, &s->nccl, &config);
    nccl_check(c, rc);  // issued on the parent communicator
    if (s->nccl) rc = settle(s->nccl, ncclInProgress, now_seconds() + c->timeout_s);
    int user_rank = -1;
    if (rc == ncclSuccess && s->nccl) ncclCommUserRank(s->nccl, &user_rank);
    if (rc != ncclSuccess || user_rank != comm_rank(host)) {
        char msg[512];
        snprintf(msg, sizeof msg, "ncclCommSplit(color %d, key %d) failed: %s (rank %d in NCCL, %d in the host split); %s",
                 color, key, rc == ncclSuccess ? "rank order differs" : ncclGetErrorString(rc), user_rank,
                 comm_rank(host), WHAT_TO_DO);
        fail(c, msg);
    }
    return wrap(host, 1, s);
#else
    return create(host, 1, m->device, e);
#endif
}

static void nccl_abort(Comm* c, const char* message) { fail(c, message); }

static void nccl_free(Comm* c) {
    NcclComm* m = impl(c);
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0)
    nccl_check(c, ncclCommFinalize(m->nccl));  // flushes this rank's pending operations
#endif
    ncclResult_t rc = ncclCommDestroy(m->nccl);
    m->nccl = NULL;
    if (rc != ncclSuccess) {
        char msg[512];
        snprintf(msg, sizeof msg, "ncclCommDestroy failed on GPU %d: %s; %s", m->device, ncclGetErrorString(rc),
                 WHAT_TO_DO);
        fail(c, msg);
    }
    close_device(m);
    if (m->owns_parent) comm_free(m->parent);
    free(m);
    comm_release(c);
}

static const CommOps NCCL_OPS = {
    .all_reduce = nccl_all_reduce,
    .reduce_scatter = nccl_reduce_scatter,
    .all_gather = nccl_all_gather,
    .gather = nccl_gather,
    .broadcast = nccl_broadcast,
    .barrier = nccl_barrier,
    .all_reduce_double = nccl_all_reduce_double,
    .split = nccl_split,
    .abort = nccl_abort,
    .free = nccl_free,
};
