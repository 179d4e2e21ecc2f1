// comm_volume_check.c — specification of communication accounting (sharding/comm_stats.h) as an MPI
// program: run it with `mpirun -np P comm_volume_check` for P = 1..4.
//
// Checks (the worst value over all ranks is printed once, by rank 0; every byte count must be exact):
// 1. Each collective of the MPI world, for sizes that do and do not divide by P (and n < P), counts one
//    call and exactly the bytes comm_mpi.c's algorithm moves for rank r (len_q = chunk length of rank q,
//    4 bytes a float):
//      all_reduce      sent = received = 4 (n + (P-2) len_r)
//      reduce_scatter  sent = 4 (n - len_r), received = 4 (P-1) len_r      (all_gather: the reverse)
//      gather          non-roots send 4 len_r; the root receives 4 (n - len_root)
//      broadcast       the root sends (P-1) bytes; the others receive bytes
//      scalar          8 (P-1) each way; barrier: no bytes
//    and the world's totals equal the analytic volumes: all_reduce 2 (P-1) n floats (2 (P-1)/P n per
//    rank, the ring all-reduce's), reduce_scatter and all_gather (P-1) n, broadcast (P-1) bytes. No
//    other kind is charged, and comm_stats_reset clears everything. The one-rank communicator counts
//    calls and no bytes.
// 2. One data-parallel step (dp_reduce_gradients + dp_grad_norm + dp_update) on a parameter table with
//    frozen tensors and a gap: zero 0 moves exactly the all-reduce of its buckets (world total
//    2 (P-1) n_trained floats, whatever the bucket size); zero 1 moves a reduce-scatter and an all-gather
//    of P chunks of ceil(n_trained / P) floats ((P-1) chunk each way per collective) plus one scalar for
//    the norm; when P divides n_trained both layouts move the same total.
// 3. MODRWKV_COMM_STATS: a world created with it set writes, when freed, one JSON file per rank whose
//    totals equal the counts of the world and of a split made from it.
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "sharding/comm.h"
#include "sharding/data_parallel.h"
#include "tests/testutil.h"

static int g_rank;  // world rank (rank 0 prints)

// `measured` is this rank's error; rank 0 prints the worst over the world and the tolerance.
static int report(const char* name, double measured, double tol) {
    double worst = 0;
    MPI_Allreduce(&measured, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    int fail = !(worst <= tol);
    if (g_rank == 0) printf("%s: worst over ranks %.0f (tol %.0f) %s\n", name, worst, tol, fail ? "FAIL" : "PASS");
    return fail;
}

static double sum_over_ranks(double x) {
    double s = 0;
    MPI_Allreduce(&x, &s, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return s;
}

static double abs_diff(uint64_t a, uint64_t b) { return a > b ? (double)(a - b) : (double)(b - a); }

// ---------------------------------------------------------------------------- 1. collectives
typedef struct Volume {
    uint64_t sent, received;
} Volume;

// What comm_mpi.c moves for rank r: n floats (bytes for broadcast; ignored for scalar and barrier).
static Volume expected(CommKind k, size_t n, int P, int r, int root) {
    uint64_t len = comm_chunk_len(n, P, r), F = sizeof(float);
    switch (k) {
    case COMM_KIND_ALL_REDUCE: return (Volume){F * (n + (uint64_t)(P - 2) * len), F * (n + (uint64_t)(P - 2) * len)};
    case COMM_KIND_REDUCE_SCATTER: return (Volume){F * (n - len), F * (uint64_t)(P - 1) * len};
    case COMM_KIND_ALL_GATHER: return (Volume){F * (uint64_t)(P - 1) * len, F * (n - len)};
    case COMM_KIND_GATHER: return r == root ? (Volume){0, F * (n - len)} : (Volume){F * len, 0};
    case COMM_KIND_BROADCAST: return r == root ? (Volume){(uint64_t)(P - 1) * n, 0} : (Volume){0, n};
    case COMM_KIND_ALL_REDUCE_DOUBLE: return (Volume){8 * (uint64_t)(P - 1), 8 * (uint64_t)(P - 1)};
    default: return (Volume){0, 0};
    }
}

// The analytic world total of bytes sent (every byte sent is received once, so it is also the total received).
static uint64_t analytic_world_total(CommKind k, size_t n, int P, int root) {
    uint64_t F = sizeof(float);
    switch (k) {
    case COMM_KIND_ALL_REDUCE: return F * 2 * (uint64_t)(P - 1) * n;
    case COMM_KIND_REDUCE_SCATTER:
    case COMM_KIND_ALL_GATHER: return F * (uint64_t)(P - 1) * n;
    case COMM_KIND_GATHER: return F * (n - comm_chunk_len(n, P, root));
    case COMM_KIND_BROADCAST: return (uint64_t)(P - 1) * n;
    case COMM_KIND_ALL_REDUCE_DOUBLE: return 8 * (uint64_t)P * (uint64_t)(P - 1);
    default: return 0;
    }
}

static void run_collective(Comm* c, CommKind k, size_t n, float* a, float* b, int root) {
    switch (k) {
    case COMM_KIND_ALL_REDUCE: comm_all_reduce(c, a, n, COMM_SUM); break;
    case COMM_KIND_REDUCE_SCATTER: comm_reduce_scatter(c, b, a, n, COMM_AVG); break;
    case COMM_KIND_ALL_GATHER: comm_all_gather(c, b, a, n); break;
    case COMM_KIND_GATHER: comm_gather(c, b, a, n, root); break;
    case COMM_KIND_BROADCAST: comm_broadcast(c, a, n, root); break;
    case COMM_KIND_BARRIER: comm_barrier(c); break;
    case COMM_KIND_ALL_REDUCE_DOUBLE: comm_all_reduce_double(c, 1.5, COMM_MAX); break;
    default: break;
    }
}

// |counted - expected| in bytes and calls, plus anything charged to another kind.
static double volume_error(const CommStats* s, CommKind k, Volume want) {
    double err = abs_diff(s->kind[k].bytes_sent, want.sent) + abs_diff(s->kind[k].bytes_received, want.received);
    err += abs_diff(s->kind[k].calls, 1);
    for (int j = 0; j < COMM_KINDS; j++)
        if (j != (int)k) err += (double)(s->kind[j].calls + s->kind[j].bytes_sent + s->kind[j].bytes_received);
    return err;
}

static int check_kind(Comm* c, CommKind k, const size_t* sizes, int n_sizes) {
    int P = comm_size(c), r = comm_rank(c), root = P - 1;
    double per_rank = 0, world = 0;
    for (int i = 0; i < n_sizes; i++) {
        size_t n = sizes[i];
        float* a = xcalloc(n + 1, sizeof(float));
        float* b = xcalloc(comm_chunk(n, P) * (size_t)P + 1, sizeof(float));
        comm_stats_reset(c);
        run_collective(c, k, n, a, b, root);
        CommStats s;
        comm_stats_get(c, &s);
        per_rank += volume_error(&s, k, expected(k, n, P, r, root));
        double total = sum_over_ranks((double)s.kind[k].bytes_sent);
        double total_recv = sum_over_ranks((double)s.kind[k].bytes_received);
        world += abs_diff((uint64_t)total, analytic_world_total(k, n, P, root)) + fabs(total - total_recv);
        free(a);
        free(b);
    }
    char name[256];
    snprintf(name, sizeof name, "%s: counted calls and bytes minus comm_mpi.c's per-rank volume, %d sizes",
             comm_kind_name(k), n_sizes);
    int fail = report(name, per_rank, 0);
    snprintf(name, sizeof name, "%s: world total minus the analytic volume (and sent minus received)",
             comm_kind_name(k));
    return fail + report(name, world, 0);
}

// A table of what one all-reduce and one broadcast count on this world (rank 0 prints rank 0's numbers).
static void print_example(Comm* c) {
    int P = comm_size(c);
    size_t n = 1001;
    float* x = xcalloc(n, sizeof(float));
    comm_stats_reset(c);
    comm_all_reduce(c, x, n, COMM_SUM);
    CommStats s;
    comm_stats_get(c, &s);
    double total = sum_over_ranks((double)s.kind[COMM_KIND_ALL_REDUCE].bytes_sent);
    if (g_rank == 0)
        printf("example: all_reduce of %zu floats on %d ranks: rank 0 sent %llu B, received %llu B; world total "
               "%.0f B = 2 (P-1) n 4 = %llu B (per rank %.1f B = 2 (P-1)/P n 4)\n",
               n, P, (unsigned long long)s.kind[COMM_KIND_ALL_REDUCE].bytes_sent,
               (unsigned long long)s.kind[COMM_KIND_ALL_REDUCE].bytes_received, total,
               (unsigned long long)(8 * (uint64_t)(P - 1) * n), 8.0 * (P - 1) * (double)n / P);
    free(x);
}

static int check_reset(Comm* c) {
    float x[4] = {0};
    comm_all_reduce(c, x, 4, COMM_SUM);
    comm_barrier(c);
    comm_stats_reset(c);
    CommStats s, zero = {0};
    comm_stats_get(c, &s);
    return report("comm_stats_reset leaves every count at zero", memcmp(&s, &zero, sizeof s) != 0, 0);
}

static int check_self(void) {
    Comm* self = comm_self_create();
    float a[8] = {0}, b[8];
    comm_all_reduce(self, a, 8, COMM_SUM);
    comm_reduce_scatter(self, b, a, 8, COMM_SUM);
    comm_all_gather(self, b, a, 8);
    comm_broadcast(self, a, 32, 0);
    CommStats s;
    comm_stats_get(self, &s);
    double bad = (double)(comm_stats_total_sent(&s) + comm_stats_total_received(&s));
    bad += abs_diff(s.kind[COMM_KIND_ALL_REDUCE].calls + s.kind[COMM_KIND_REDUCE_SCATTER].calls +
                        s.kind[COMM_KIND_ALL_GATHER].calls + s.kind[COMM_KIND_BROADCAST].calls, 4);
    comm_free(self);
    return report("one-rank communicator: 4 calls counted, 0 bytes", bad, 0);
}

static int check_collectives(Comm* world) {
    size_t sizes[] = {0, 1, 3, 7, 1000, 1001, 65537};
    int n_sizes = (int)(sizeof sizes / sizeof sizes[0]), fail = 0;
    for (int k = COMM_KIND_ALL_REDUCE; k <= COMM_KIND_ALL_REDUCE_DOUBLE; k++)
        fail += check_kind(world, (CommKind)k, sizes, n_sizes);
    print_example(world);
    fail += check_reset(world);
    return fail + check_self();
}

// ---------------------------------------------------------------------------- 2. data parallel
enum { N_TENSORS = 6 };

// A small RWKV-like table: trained tensors with and without weight decay, a frozen one, an empty one and
// a gap in the buffer. head_numel sets n_trained = 6133 + head_numel.
static size_t make_table(DPTensor* t, size_t head_numel, size_t* n_trained) {
    struct {
        const char* name;
        size_t numel, gap;
        int trained;
    } rows[N_TENSORS] = {
        {"emb.weight", 2000, 0, 1}, {"ln0.weight", 37, 0, 1},  {"frozen.encoder", 500, 0, 0},
        {"att.w0", 4096, 11, 1},    {"unused", 0, 0, 1},       {"head.weight", head_numel, 0, 1},
    };
    size_t offset = 0;
    *n_trained = 0;
    for (int i = 0; i < N_TENSORS; i++) {
        offset += rows[i].gap;
        t[i] = (DPTensor){.name = rows[i].name, .offset = offset, .numel = rows[i].numel, .trained = rows[i].trained,
                          .lr_scale = 1.0f, .weight_decay = rows[i].trained};
        offset += rows[i].numel;
        if (rows[i].trained) *n_trained += rows[i].numel;
    }
    return offset;
}

// Counts of one optimizer step: reduce the gradients, take their norm, update.
static CommStats dp_step(Comm* c, Backend* be, DataParallel* dp, size_t n_params) {
    float* params = be->alloc(be, n_params * sizeof(float));
    float* grads = be->alloc(be, n_params * sizeof(float));
    TestRng rng;
    test_rng_seed(&rng, 7 + (uint64_t)comm_rank(c));
    test_fill_uniform(&rng, grads, n_params, -1, 1);
    DPAdamW h = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_scale = 1,
                 .step = 1};
    comm_stats_reset(c);
    dp_reduce_gradients(dp, grads);
    double norm = dp_grad_norm(dp, grads);
    h.grad_scale = norm > 1 ? (float)(1 / norm) : 1.0f;
    dp_update(dp, params, grads, &h);
    CommStats s;
    comm_stats_get(c, &s);
    be->free(be, params);
    be->free(be, grads);
    return s;
}

// zero 0: the all-reduces of the buckets; returns |counted - expected| summed over everything.
static double zero0_error(const DataParallel* dp, const CommStats* s, int P, int r) {
    uint64_t want = 0;
    for (int b = 0; b < dp->n_buckets; b++) want += expected(COMM_KIND_ALL_REDUCE, dp->buckets[b].end - dp->buckets[b].begin, P, r, 0).sent;
    const CommKindStats* ar = &s->kind[COMM_KIND_ALL_REDUCE];
    double err = abs_diff(ar->bytes_sent, want) + abs_diff(ar->bytes_received, want) + abs_diff(ar->calls, (uint64_t)dp->n_buckets);
    return err + (double)(comm_stats_total_sent(s) - ar->bytes_sent);
}

// zero 1: reduce-scatter and all-gather of P chunks (P-1 chunks each way) and one scalar for the norm.
static double zero1_error(const DataParallel* dp, const CommStats* s, int P) {
    uint64_t want = sizeof(float) * (uint64_t)(P - 1) * dp->chunk;
    double err = 0;
    CommKind kinds[2] = {COMM_KIND_REDUCE_SCATTER, COMM_KIND_ALL_GATHER};
    for (int i = 0; i < 2; i++)
        err += abs_diff(s->kind[kinds[i]].bytes_sent, want) + abs_diff(s->kind[kinds[i]].bytes_received, want);
    err += abs_diff(s->kind[COMM_KIND_ALL_REDUCE_DOUBLE].bytes_sent, 8 * (uint64_t)(P - 1));
    err += abs_diff(s->kind[COMM_KIND_ALL_REDUCE_DOUBLE].calls, 1);
    return err + (double)s->kind[COMM_KIND_ALL_REDUCE].bytes_sent;
}

static int check_dp_layout(Comm* c, Backend* be, size_t head_numel, size_t bucket_bytes, uint64_t* world_bytes) {
    int P = comm_size(c), r = comm_rank(c), fail = 0;
    DPTensor t[N_TENSORS];
    size_t n_trained = 0, n_params = make_table(t, head_numel, &n_trained);
    Error e = {{0}};
    for (int zero = 0; zero <= 1; zero++) {
        DataParallel* dp = dp_create(c, be, t, N_TENSORS, &(DPConfig){zero, bucket_bytes}, &e);
        if (!dp) fatal("dp_create: %s", e.msg);
        CommStats s = dp_step(c, be, dp, n_params);
        double err = zero ? zero1_error(dp, &s, P) : zero0_error(dp, &s, P, r);
        uint64_t grads = zero ? s.kind[COMM_KIND_REDUCE_SCATTER].bytes_sent + s.kind[COMM_KIND_ALL_GATHER].bytes_sent
                              : s.kind[COMM_KIND_ALL_REDUCE].bytes_sent;
        world_bytes[zero] = (uint64_t)sum_over_ranks((double)grads);
        uint64_t analytic = zero ? sizeof(float) * 2 * (uint64_t)(P - 1) * (uint64_t)P * dp->chunk
                                 : sizeof(float) * 2 * (uint64_t)(P - 1) * n_trained;
        char name[320];
        snprintf(name, sizeof name,
                 "dp step zero %d, n_trained %zu, bucket %zu B (%d buckets, chunk %zu): counted minus expected bytes",
                 zero, n_trained, bucket_bytes, dp->n_buckets, dp->chunk);
        fail += report(name, err, 0);
        snprintf(name, sizeof name, "  world total %llu B minus the analytic %s %llu B",
                 (unsigned long long)world_bytes[zero], zero ? "2 (P-1) P ceil(n/P) 4" : "2 (P-1) n 4",
                 (unsigned long long)analytic);
        fail += report(name, abs_diff(world_bytes[zero], analytic), 0);
        dp_free(dp);
    }
    return fail;
}

static int check_data_parallel(Comm* c, Backend* be) {
    int P = comm_size(c), fail = 0;
    uint64_t ragged[2], even[2];
    size_t small = 4096, dflt = 0;
    fail += check_dp_layout(c, be, 3877, small, ragged);  // n_trained 10010: not divisible by 3 or 4
    fail += check_dp_layout(c, be, 3877, dflt, ragged);
    fail += check_dp_layout(c, be, 3875, small, even);    // n_trained 10008 = 12 * 834
    char name[256];
    snprintf(name, sizeof name, "P divides n_trained: zero 1 world bytes %llu minus zero 0 world bytes %llu",
             (unsigned long long)even[1], (unsigned long long)even[0]);
    fail += report(name, abs_diff(even[1], even[0]), 0);
    if (g_rank == 0 && P > 1)
        printf("n_trained 10010 on %d ranks: zero 1 moves %llu B in all vs %llu B for zero 0 (padding of the last "
               "chunk: %+.3f%%)\n",
               P, (unsigned long long)ragged[1], (unsigned long long)ragged[0],
               100.0 * ((double)ragged[1] / (double)ragged[0] - 1));
    return fail;
}

// ---------------------------------------------------------------------------- 3. MODRWKV_COMM_STATS
static uint64_t json_u64(json_t* obj, const char* kind, const char* field) {
    json_t* k = json_object_get(obj, kind);
    json_t* v = k ? json_object_get(k, field) : NULL;
    return v ? (uint64_t)json_integer_value(v) : UINT64_MAX;
}

// A second world (MPI is already running) created with MODRWKV_COMM_STATS set, and a split of it.
static int check_summary_file(int* argc, char*** argv) {
    int P = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    char pattern[128], path[160];
    snprintf(pattern, sizeof pattern, "comm_volume_np%d.rank%%r.json", P);
    snprintf(path, sizeof path, "comm_volume_np%d.rank%d.json", P, g_rank);
    setenv("MODRWKV_COMM_STATS", pattern, 1);
    Error e = {{0}};
    Comm* w = comm_world_create(argc, argv, &e);
    Comm* half = w ? comm_split(w, comm_rank(w) % 2, 0, &e) : NULL;
    if (!half) fatal("%s", e.msg);
    float x[1001] = {0}, y[1001];
    comm_all_reduce(w, x, 1001, COMM_SUM);
    comm_all_gather(half, y, x, 1001);
    CommStats total = {0}, s;
    comm_stats_get(w, &s);
    comm_stats_add(&total, &s);
    comm_stats_get(half, &s);
    comm_stats_add(&total, &s);
    comm_free(half);
    comm_free(w);  // writes the summary
    unsetenv("MODRWKV_COMM_STATS");

    Error fe = {{0}};
    size_t len = 0;
    char* text = read_file(path, &len, &fe);
    json_error_t je;
    json_t* root = text ? json_loads(text, 0, &je) : NULL;
    json_t* tot = root ? json_object_get(root, "total") : NULL;
    double bad = tot ? 0 : 1;
    if (tot) {
        bad += json_integer_value(json_object_get(root, "rank")) != g_rank;
        bad += json_array_size(json_object_get(root, "communicators")) != 2;
        bad += abs_diff(json_u64(tot, "all_reduce", "bytes_sent"), total.kind[COMM_KIND_ALL_REDUCE].bytes_sent);
        bad += abs_diff(json_u64(tot, "all_gather", "bytes_received"), total.kind[COMM_KIND_ALL_GATHER].bytes_received);
        bad += abs_diff((uint64_t)json_integer_value(json_object_get(tot, "bytes_sent")), comm_stats_total_sent(&total));
    }
    char name[600];
    snprintf(name, sizeof name, "MODRWKV_COMM_STATS=%s: %s has the world's and the split's totals", pattern, path);
    json_decref(root);
    free(text);
    unlink(path);
    return report(name, bad, 0);
}

int main(int argc, char** argv) {
    Error e = {{0}};
    unsetenv("MODRWKV_COMM_STATS");
    Comm* world = comm_world_create(&argc, &argv, &e);  // initialises MPI when started by mpirun
    if (!world) fatal("%s", e.msg);
    int mpi_ready = 0, provided = 0;
    MPI_Initialized(&mpi_ready);
    if (!mpi_ready) MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);  // run without mpirun
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    int fail = 0;
    if (g_rank == 0)
        printf("comm_volume_check: %d rank(s), world communicator '%s'\n", comm_size(world), comm_backend_name(world));
    fail += check_collectives(world);
    Backend* be = backend_cpu_create(1);
    fail += check_data_parallel(world, be);
    backend_destroy(be);
    fail += check_summary_file(&argc, &argv);
    int total = 0;
    MPI_Allreduce(&fail, &total, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    comm_free(world);  // finalises MPI when comm_world_create started it
    if (!mpi_ready) MPI_Finalize();
    if (g_rank != 0) return total ? 1 : 0;
    return test_summary("comm_volume_check", total);
}
