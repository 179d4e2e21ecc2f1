// dp_check.c — specification of sharding/ (communicators, process groups, data parallel / ZeRO-1) as an
// MPI program: run it with `mpirun -np N dp_check` for N = 1..4 (no model needed).
//
// Every rank can generate every rank's inputs (seeded by rank), so each rank computes the serial answer
// itself and compares. Checks (the worst value over all ranks is printed once, by rank 0):
// 1. Collectives of the MPI world and of a world of one rank (comm_self): all_reduce (SUM/AVG/MAX),
//    reduce_scatter, all_gather, gather, broadcast, scalar all-reduce and barrier, for sizes that do and
//    do not divide by the number of ranks (and n < ranks): results are BIT-IDENTICAL to the serial
//    rank-order fp32 sum, and independent of how a buffer is split into calls.
// 2. Process groups: every dp x tp layout of the world (tp contiguous), membership of the tp and dp
//    groups, local ranks, and clear errors for layouts that do not fit the world.
// 3. Data parallel on RWKV-like parameter groups (weight decay, 2x lr, unused and frozen tensors, a gap
//    in the buffer): 4 AdamW steps with gradient clipping active in two of them, by bucketed all-reduce
//    and by ZeRO-1, with tiny and default buckets, equal a single process running AdamW on the averaged
//    gradients; the moments gathered in the full layout equal the serial ones, and loading them into a
//    different layout (1 rank; ZeRO-1 over all ranks) continues the same trajectory.
// Scenarios for tests/mpi/timeout_check.sh: `--scenario timeout` (rank 1 sleeps past a 2 s collective
// timeout: every rank must exit non-zero naming rank 1) and `--scenario kill` (rank 1 dies by SIGKILL).
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "sharding/comm.h"
#include "sharding/data_parallel.h"
#include "sharding/groups.h"
#include "tests/testutil.h"

static int g_rank;  // world rank (rank 0 prints)

// ---------------------------------------------------------------------------- reporting over all ranks
// `measured` is this rank's error; rank 0 prints the worst over the world and the tolerance.
static int report(const char* name, double measured, double tol) {
    double worst = 0;
    MPI_Allreduce(&measured, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    int fail = !(worst <= tol);
    if (g_rank == 0) printf("%s: worst over ranks %.3e (tol %.1e) %s\n", name, worst, tol, fail ? "FAIL" : "PASS");
    return fail;
}

// Number of elements whose bits differ.
static double bit_mismatches(const float* a, const float* b, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return (double)bad;
}

static double max_rel_err(const float* got, const float* want, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]) / fmax(fabs((double)want[i]), 1e-6);
        if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

// ---------------------------------------------------------------------------- 1. collectives
// Rank q's contribution: values spread over 8 decades, so the order of the sum matters.
static void contribution(float* x, size_t n, int q, uint64_t salt) {
    TestRng r;
    test_rng_seed(&r, 1000 + 17 * (uint64_t)q + salt);
    for (size_t i = 0; i < n; i++) x[i] = test_rng_uniform(&r, -1, 1) * powf(10.0f, (float)(i % 9) - 4);
}

// The serial answer: acc = x_0 op x_1 op ... in rank order (AVG: the sum times 1/P).
static void serial_reduce(float* acc, size_t n, int P, uint64_t salt, CommOp op) {
    float* x = xmalloc((n + 1) * sizeof(float));
    contribution(acc, n, 0, salt);
    for (int q = 1; q < P; q++) {
        contribution(x, n, q, salt);
        for (size_t i = 0; i < n; i++) {
            if (op == COMM_MAX) acc[i] = x[i] > acc[i] ? x[i] : acc[i];
            else acc[i] = acc[i] + x[i];
        }
    }
    for (size_t i = 0; op == COMM_AVG && i < n; i++) acc[i] = acc[i] * (1.0f / (float)P);
    free(x);
}

static int check_all_reduce(Comm* c, const char* label, size_t n, CommOp op) {
    int P = comm_size(c), r = comm_rank(c);
    float *x = xmalloc((n + 1) * sizeof(float)), *want = xmalloc((n + 1) * sizeof(float));
    contribution(x, n, r, n);
    serial_reduce(want, n, P, n, op);
    comm_all_reduce(c, x, n, op);
    double bad = bit_mismatches(x, want, n);
    // the same values reduced in two calls (an arbitrary split) give the same bits
    contribution(x, n, r, n);
    comm_all_reduce(c, x, n / 3, op);
    comm_all_reduce(c, x + n / 3, n - n / 3, op);
    bad += bit_mismatches(x, want, n);
    char name[320];
    const char* ops[] = {"SUM", "AVG", "MAX"};
    snprintf(name, sizeof name, "%s all_reduce %s n=%zu: elements differing from the serial rank-order result", label,
             ops[op], n);
    free(x);
    free(want);
    return report(name, bad, 0);
}

static int check_reduce_scatter(Comm* c, const char* label, size_t n) {
    int P = comm_size(c), r = comm_rank(c);
    size_t chunk = comm_chunk(n, P), len = comm_chunk_len(n, P, r);
    float *x = xmalloc((n + 1) * sizeof(float)), *want = xmalloc((n + 1) * sizeof(float));
    float* out = xmalloc((chunk + 1) * sizeof(float));
    test_poison(out, chunk);
    contribution(x, n, r, n + 7);
    serial_reduce(want, n, P, n + 7, COMM_SUM);
    comm_reduce_scatter(c, out, x, n, COMM_SUM);
    double bad = bit_mismatches(out, want + chunk * (size_t)r, len);
    for (size_t i = len; i < chunk; i++) bad += out[i] != 0.0f;  // padding is zero
    char name[320];
    snprintf(name, sizeof name, "%s reduce_scatter n=%zu (chunk %zu): elements differing from serial", label, n, chunk);
    free(x);
    free(want);
    free(out);
    return report(name, bad, 0);
}

// all_gather and gather (to the last rank): rank q contributes chunk q of its own contribution.
static int check_gathers(Comm* c, const char* label, size_t n) {
    int P = comm_size(c), r = comm_rank(c);
    size_t chunk = comm_chunk(n, P);
    float *x = xmalloc((n + 1) * sizeof(float)), *want = xmalloc((n + 1) * sizeof(float));
    float* out = xmalloc((n + 1) * sizeof(float));
    for (int q = 0; q < P; q++) {
        contribution(x, n, q, n + 3);
        size_t len = comm_chunk_len(n, P, q);
        if (len) memcpy(want + chunk * (size_t)q, x + chunk * (size_t)q, len * sizeof(float));
    }
    contribution(x, n, r, n + 3);
    test_poison(out, n);
    comm_all_gather(c, out, x + chunk * (size_t)r, n);
    double bad_all = bit_mismatches(out, want, n), bad_root = 0;
    test_poison(out, n);
    comm_gather(c, r == P - 1 ? out : NULL, x + chunk * (size_t)r, n, P - 1);
    if (r == P - 1) bad_root = bit_mismatches(out, want, n);
    char name[320];
    snprintf(name, sizeof name, "%s all_gather n=%zu: elements differing", label, n);
    int fail = report(name, bad_all, 0);
    snprintf(name, sizeof name, "%s gather to rank %d n=%zu: elements differing", label, P - 1, n);
    fail += report(name, bad_root, 0);
    free(x);
    free(want);
    free(out);
    return fail;
}

static int check_broadcast(Comm* c, const char* label, size_t bytes) {
    int P = comm_size(c), r = comm_rank(c);
    unsigned char *buf = xmalloc(bytes + 1), *want = xmalloc(bytes + 1);
    for (size_t i = 0; i < bytes; i++) {
        buf[i] = (unsigned char)(i * 31 + (size_t)r * 7);
        want[i] = (unsigned char)(i * 31 + (size_t)(P - 1) * 7);
    }
    comm_broadcast(c, buf, bytes, P - 1);
    double bad = 0;
    for (size_t i = 0; i < bytes; i++) bad += buf[i] != want[i];
    char name[320];
    snprintf(name, sizeof name, "%s broadcast of %zu bytes from rank %d: bytes differing", label, bytes, P - 1);
    free(buf);
    free(want);
    return report(name, bad, 0);
}

static int check_scalars(Comm* c, const char* label) {
    int P = comm_size(c), r = comm_rank(c);
    double sum = 0, max = -INFINITY;
    for (int q = 0; q < P; q++) {
        double v = (q % 2 ? -1.0 : 1.0) * pow(10.0, 3 * q) / 3.0;
        sum += v;
        max = v > max ? v : max;
    }
    double mine = (r % 2 ? -1.0 : 1.0) * pow(10.0, 3 * r) / 3.0;
    double err = fabs(comm_all_reduce_double(c, mine, COMM_SUM) - sum);
    err += fabs(comm_all_reduce_double(c, mine, COMM_AVG) - sum / P);
    err += fabs(comm_all_reduce_double(c, mine, COMM_MAX) - max);
    double nan_max = comm_all_reduce_double(c, r == P - 1 ? NAN : 1.0, COMM_MAX);
    comm_barrier(c);
    char name[320];
    snprintf(name, sizeof name, "%s scalar SUM/AVG/MAX (rank order, exact): |error|", label);
    int fail = report(name, err, 0);
    snprintf(name, sizeof name, "%s scalar MAX with a NaN on the last rank is NaN", label);
    fail += report(name, isnan(nan_max) ? 0 : 1, 0);
    return fail;
}

// Negative control (3+ ranks): the same contributions summed in reverse rank order differ in some bits,
// so the bit-exact checks above do see the order of the sum.
static int check_order_matters(Comm* c, const char* label) {
    int P = comm_size(c);
    if (P < 3) return 0;
    size_t n = 65537;
    float *fwd = xmalloc(n * sizeof(float)), *rev = xmalloc(n * sizeof(float)), *x = xmalloc(n * sizeof(float));
    serial_reduce(fwd, n, P, n, COMM_SUM);
    contribution(rev, n, P - 1, n);
    for (int q = P - 2; q >= 0; q--) {
        contribution(x, n, q, n);
        for (size_t i = 0; i < n; i++) rev[i] = rev[i] + x[i];
    }
    double differing = bit_mismatches(fwd, rev, n);
    char name[320];
    snprintf(name, sizeof name, "%s negative control: reverse-order sum differs in %.0f of %zu elements (must be > 0)",
             label, differing, n);
    free(fwd);
    free(rev);
    free(x);
    return report(name, differing > 0 ? 0 : 1, 0);
}

static int check_collectives(Comm* c, const char* label) {
    int fail = 0;
    size_t sizes[] = {0, 1, 3, 7, 1000, 65537};  // n < ranks, ragged and empty chunks
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int op = COMM_SUM; op <= COMM_MAX; op++) fail += check_all_reduce(c, label, sizes[s], (CommOp)op);
        fail += check_reduce_scatter(c, label, sizes[s]);
        fail += check_gathers(c, label, sizes[s]);
    }
    fail += check_broadcast(c, label, 13);
    fail += check_broadcast(c, label, 1 << 20);
    fail += check_scalars(c, label);
    return fail + check_order_matters(c, label);
}

// ---------------------------------------------------------------------------- 2. process groups
static int check_layout(Comm* world, int tp) {
    int W = comm_size(world), w = comm_rank(world);
    ProcessGroups g;
    Error e = {{0}};
    if (groups_create(&g, world, tp, 0, &e) != 0) {
        if (g_rank == 0) printf("groups tp=%d: unexpected error: %s\n", tp, e.msg);
        return report("groups_create accepts a divisor of the world", 1, 0);
    }
    int dp = W / tp, bad = 0;
    bad += g.tp_size != tp || g.dp_size != dp || g.tp_rank != w % tp || g.dp_rank != w / tp;
    bad += comm_size(g.tp) != tp || comm_rank(g.tp) != w % tp || comm_size(g.dp) != dp || comm_rank(g.dp) != w / tp;
    for (int i = 0; i < tp; i++) bad += comm_world_rank(g.tp, i) != (w / tp) * tp + i;
    for (int i = 0; i < dp; i++) bad += comm_world_rank(g.dp, i) != i * tp + w % tp;
    double tp_sum = 0, dp_sum = 0;  // sums of member world ranks, through the groups themselves
    for (int i = 0; i < tp; i++) tp_sum += (w / tp) * tp + i;
    for (int i = 0; i < dp; i++) dp_sum += i * tp + w % tp;
    bad += comm_all_reduce_double(g.tp, w, COMM_SUM) != tp_sum;
    bad += comm_all_reduce_double(g.dp, w, COMM_SUM) != dp_sum;
    bad += g.local_rank != w || g.local_size != W;  // the test runs on one node
    groups_free(&g);
    char name[320];
    snprintf(name, sizeof name, "groups tp=%d x dp=%d: wrong memberships, ranks or sums", tp, dp);
    return report(name, bad, 0);
}

static int check_layout_errors(Comm* world) {
    int W = comm_size(world), fail = 0;
    ProcessGroups g;
    Error e = {{0}};
    int rc = groups_create(&g, world, W + 1, 0, &e);
    if (g_rank == 0) fail += expect_reject("tp that does not divide the world is rejected", rc, &e, "parallel.tp", "does not divide");
    rc = groups_create(&g, world, 1, W + 1, &e);
    if (g_rank == 0) fail += expect_reject("tp x dp != world is rejected", rc, &e, "parallel.dp", "launch");
    rc = groups_create(&g, world, 0, 0, &e);
    if (g_rank == 0) fail += expect_reject("tp = 0 is rejected", rc, &e, "parallel.tp", "at least 1");
    Comm* bad = comm_split(world, -1, 0, &e);
    if (g_rank == 0) fail += expect_reject("comm_split with a negative color is rejected", bad ? 0 : -1, &e, "color", NULL);
    return report("layout errors (rank 0's checks above)", fail, 0);
}

static int check_groups(Comm* world) {
    int W = comm_size(world), fail = 0;
    for (int tp = 1; tp <= W; tp++)
        if (W % tp == 0) fail += check_layout(world, tp);
    return fail + check_layout_errors(world);
}

// ---------------------------------------------------------------------------- 3. data parallel
enum { N_STEPS = 4, N_TENSORS = 13 };
static const float GRAD_SCALES[N_STEPS + 1] = {0.001f, 0.05f, 0.002f, 0.1f, 0.003f};  // clipped: steps 2 and 4
static const double CLIP = 1.0;

typedef struct Model {  // an RWKV-like parameter table (name, numel, trained, lr_scale, weight_decay)
    DPTensor t[N_TENSORS];
    size_t n_params;
} Model;

static Model make_model(void) {
    struct { const char* name; size_t numel; int trained; float lr_scale; int wd; } rows[N_TENSORS] = {
        {"emb.weight", 2048, 1, 1, 1},           {"blocks.0.ln0.weight", 32, 1, 1, 0},
        {"blocks.0.att.x_r", 32, 1, 1, 0},       {"blocks.0.att.w0", 32, 1, 2, 0},
        {"blocks.0.att.w1", 256, 1, 1, 0},       {"blocks.0.att.v0", 32, 0, 1, 0},   // unused
        {"blocks.0.att.receptance.weight", 1024, 1, 1, 1},
        {"blocks.0.att.key.weight", 1024, 0, 1, 1},                                  // frozen
        {"blocks.0.ffn.key.weight", 4096, 1, 1, 1}, {"blocks.0.ffn.value.weight", 4096, 1, 1, 1},
        {"ln_out.weight", 32, 1, 1, 0},          {"ln_out.bias", 32, 1, 1, 0},
        {"head.weight", 2048, 1, 1, 1},
    };
    Model m = {.n_params = 0};
    for (int i = 0; i < N_TENSORS; i++) {
        if (i == 10) m.n_params += 5;  // a gap in the buffer that belongs to no tensor
        m.t[i] = (DPTensor){.name = rows[i].name, .offset = m.n_params, .numel = rows[i].numel, .trained = rows[i].trained,
                            .lr_scale = rows[i].lr_scale, .weight_decay = rows[i].wd};
        m.n_params += rows[i].numel;
    }
    return m;
}

static void init_params(float* p, size_t n) {
    TestRng r;
    test_rng_seed(&r, 42);
    for (size_t i = 0; i < n; i++) p[i] = test_rng_normal(&r) * 0.1f;
}

// Rank q's gradient at a step; untrained tensors get huge values that must never be used.
static void rank_gradient(const Model* m, float* g, int step, int q) {
    TestRng r;
    test_rng_seed(&r, 7 + 1009 * (uint64_t)step + 31 * (uint64_t)q);
    for (size_t i = 0; i < m->n_params; i++) g[i] = test_rng_normal(&r) * GRAD_SCALES[step];
    for (int i = 0; i < N_TENSORS; i++)
        for (size_t j = 0; !m->t[i].trained && j < m->t[i].numel; j++) g[m->t[i].offset + j] = 1e30f;
}

static DPAdamW hyper(int step, float grad_scale) {
    return (DPAdamW){.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.1f,
                     .grad_scale = grad_scale, .step = step + 1};
}

static float clip_scale(double norm) { return norm > CLIP ? (float)(CLIP / norm) : 1.0f; }

// The serial reference: one process, averaged gradients in rank order, AdamW per trained tensor.
typedef struct Reference {
    float *params, *m, *v;   // (n_params) after each step
    float* avg;              // (n_params) averaged gradient of the last step
    double norm[N_STEPS + 1];
} Reference;

static void reference_step(const Model* md, Backend* be, Reference* ref, int P, int step) {
    float* g = xmalloc(md->n_params * sizeof(float));
    rank_gradient(md, ref->avg, step, 0);
    for (int q = 1; q < P; q++) {
        rank_gradient(md, g, step, q);
        for (size_t i = 0; i < md->n_params; i++) ref->avg[i] = ref->avg[i] + g[i];
    }
    for (size_t i = 0; i < md->n_params; i++) ref->avg[i] = ref->avg[i] * (1.0f / (float)P);
    double ss = 0;
    for (int i = 0; i < N_TENSORS; i++)
        if (md->t[i].trained) ss += be->k.sum_squares(be, ref->avg + md->t[i].offset, md->t[i].numel);
    ref->norm[step] = sqrt(ss);
    DPAdamW h = hyper(step, clip_scale(ref->norm[step]));
    for (int i = 0; i < N_TENSORS; i++) {
        const DPTensor* t = &md->t[i];
        if (!t->trained) continue;
        be->k.adamw_update(be, ref->params + t->offset, ref->avg + t->offset, ref->m + t->offset, ref->v + t->offset,
                           t->numel, h.lr * t->lr_scale, h.beta1, h.beta2, h.eps, t->weight_decay ? h.weight_decay : 0,
                           h.step, h.grad_scale);
    }
    free(g);
}

// One data-parallel optimizer step of this rank; returns the relative error of the global norm.
static double dp_step(const Model* md, DataParallel* dp, float* params, float* grads, const Reference* ref,
                      int step, int q) {
    rank_gradient(md, grads, step, q);
    dp_reduce_gradients(dp, grads);
    double norm = dp_grad_norm(dp, grads);
    DPAdamW h = hyper(step, clip_scale(norm));
    dp_update(dp, params, grads, &h);
    return fabs(norm - ref->norm[step]) / ref->norm[step];
}

// Parameters equal the reference, untrained ones untouched, and every rank holds the same bits.
static int check_params(const char* label, const float* params, const Reference* ref, size_t n) {
    char name[320];
    snprintf(name, sizeof name, "%s: parameters vs single-process AdamW on averaged gradients, max rel err", label);
    int fail = report(name, max_rel_err(params, ref->params, n), 1e-6);
    snprintf(name, sizeof name, "%s: parameters differing in any bit from the single-process run", label);
    fail += report(name, bit_mismatches(params, ref->params, n), 0);
    float* root = xmalloc(n * sizeof(float));
    memcpy(root, params, n * sizeof(float));
    MPI_Bcast(root, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
    snprintf(name, sizeof name, "%s: parameters differing between ranks", label);
    fail += report(name, bit_mismatches(params, root, n), 0);
    free(root);
    return fail;
}

// The moments gathered to the last rank in the full layout equal the reference's (trained tensors).
static int check_moments(const Model* md, DataParallel* dp, const Reference* ref, const char* label) {
    int P = comm_size(dp->comm), r = comm_rank(dp->comm);
    float *m = xcalloc(md->n_params, sizeof(float)), *v = xcalloc(md->n_params, sizeof(float));
    dp_gather_moments(dp, r == P - 1 ? m : NULL, r == P - 1 ? v : NULL, P - 1);
    double bad = 0;
    for (int i = 0; r == P - 1 && i < N_TENSORS; i++) {
        const DPTensor* t = &md->t[i];
        if (!t->trained) continue;
        bad += bit_mismatches(m + t->offset, ref->m + t->offset, t->numel);
        bad += bit_mismatches(v + t->offset, ref->v + t->offset, t->numel);
    }
    char name[320];
    snprintf(name, sizeof name, "%s: gathered moments (full layout) differing from the single-process run", label);
    free(m);
    free(v);
    return report(name, bad, 0);
}

// Optimizer memory: the shard sizes add up to the trained values (ZeRO-1) or every rank holds them all.
static int check_shard_sizes(DataParallel* dp, const char* label) {
    int P = comm_size(dp->comm), r = comm_rank(dp->comm);
    double total = comm_all_reduce_double(dp->comm, (double)dp->shard_len, COMM_SUM);
    double want_total = dp->zero ? (double)dp->n_trained : (double)P * (double)dp->n_trained;
    size_t want_len = dp->zero ? comm_chunk_len(dp->n_trained, P, r) : dp->n_trained;
    double bad = (total != want_total) + (dp->shard_len != want_len);
    char name[320];
    snprintf(name, sizeof name, "%s: Adam moments per rank %zu of %zu trained values (wrong shard sizes)", label,
             dp->shard_len, dp->n_trained);
    return report(name, bad, 0);
}

// zero 0 buckets: they tile trained space from its end backwards (bucket 0 holds the last tensors, which
// the backward pass finishes first), none is larger than the bucket size, and a bucket boundary falls
// inside a tensor only when that tensor is larger than a bucket.
static int check_buckets(const Model* md, const DataParallel* dp, const char* label) {
    double bad = 0;
    size_t end = dp->n_trained;
    for (int b = 0; b < dp->n_buckets; b++) {
        DPRange r = dp->buckets[b];
        bad += r.end != end || r.begin >= r.end || r.end - r.begin > dp->bucket_floats;
        size_t pos = 0;  // is r.begin a tensor boundary, or inside a tensor larger than a bucket?
        int boundary = 0, inside_big = 0;
        for (int i = 0; i < N_TENSORS; i++) {
            if (!md->t[i].trained) continue;
            boundary |= pos == r.begin;
            inside_big |= pos < r.begin && r.begin < pos + md->t[i].numel && md->t[i].numel > dp->bucket_floats;
            pos += md->t[i].numel;
        }
        bad += !(boundary || inside_big);
        end = r.begin;
    }
    bad += end != 0;
    char name[320];
    snprintf(name, sizeof name, "%s: buckets not tiling trained space in reverse order at tensor boundaries", label);
    return report(name, bad, 0);
}

static int run_dp(Comm* c, Backend* be, const Model* md, const Reference* ref, int zero, size_t bucket_bytes,
                  const char* label) {
    Error e = {{0}};
    DPConfig cfg = {.zero = zero, .bucket_bytes = bucket_bytes};
    DataParallel* dp = dp_create(c, be, md->t, N_TENSORS, &cfg, &e);
    if (!dp) {
        printf("rank %d: dp_create failed: %s\n", g_rank, e.msg);
        return report("dp_create", 1, 0);
    }
    float *params = xmalloc(md->n_params * sizeof(float)), *grads = xmalloc(md->n_params * sizeof(float));
    init_params(params, md->n_params);
    double norm_err = 0;
    for (int s = 0; s < N_STEPS; s++) norm_err = fmax(norm_err, dp_step(md, dp, params, grads, ref, s, comm_rank(c)));
    char name[320];
    if (zero) snprintf(name, sizeof name, "%s (%zu windows): global gradient norm rel err", label,
                       (dp->chunk + dp->window - 1) / dp->window);
    else snprintf(name, sizeof name, "%s (%d buckets): global gradient norm rel err", label, dp->n_buckets);
    int fail = report(name, norm_err, 1e-12);
    if (!zero) fail += check_buckets(md, dp, label);
    fail += check_params(label, params, ref, md->n_params);
    fail += check_moments(md, dp, ref, label);
    fail += check_shard_sizes(dp, label);
    free(params);
    free(grads);
    dp_free(dp);
    return fail;
}

// Moments and parameters saved after N_STEPS load into another layout, whose next step matches the
// reference's: (a) ZeRO-1 over c, fed by each rank's gradient; (b) one rank, fed by the average.
static int check_reshard(Comm* c, Backend* be, const Model* md, Reference* ref, const float* m_saved,
                         const float* v_saved, const float* p_saved) {
    Error e = {{0}};
    int fail = 0;
    Comm* alone = comm_split(c, comm_rank(c), 0, &e);
    Comm* targets[2] = {c, alone};
    const char* labels[2] = {"resume under ZeRO-1 over all ranks", "resume on a single rank"};
    float *params = xmalloc(md->n_params * sizeof(float)), *grads = xmalloc(md->n_params * sizeof(float));
    for (int k = 0; k < 2; k++) {
        DPConfig cfg = {.zero = 1, .bucket_bytes = 1 << 10};
        DataParallel* dp = dp_create(targets[k], be, md->t, N_TENSORS, &cfg, &e);
        dp_load_moments(dp, m_saved, v_saved);
        memcpy(params, p_saved, md->n_params * sizeof(float));
        if (k == 0) {
            dp_step(md, dp, params, grads, ref, N_STEPS, comm_rank(c));
        } else {
            memcpy(grads, ref->avg, md->n_params * sizeof(float));
            dp_reduce_gradients(dp, grads);
            DPAdamW h = hyper(N_STEPS, clip_scale(dp_grad_norm(dp, grads)));
            dp_update(dp, params, grads, &h);
        }
        fail += check_params(labels[k], params, ref, md->n_params);
        dp_free(dp);
    }
    comm_free(alone);
    free(params);
    free(grads);
    return fail;
}

static int check_data_parallel(Comm* c, Backend* be, const char* label) {
    Model md = make_model();
    int P = comm_size(c), fail = 0;
    Reference ref = {xmalloc(md.n_params * sizeof(float)), xcalloc(md.n_params, sizeof(float)),
                     xcalloc(md.n_params, sizeof(float)), xmalloc(md.n_params * sizeof(float)), {0}};
    init_params(ref.params, md.n_params);
    for (int s = 0; s < N_STEPS; s++) reference_step(&md, be, &ref, P, s);
    struct { int zero; size_t bucket; const char* name; } runs[] = {
        {0, 256, "all-reduce, 256-byte buckets"}, {0, 0, "all-reduce, default buckets"},
        {1, 256, "ZeRO-1, 256-byte windows"}, {1, 0, "ZeRO-1, default windows"}};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char run_label[120];
        snprintf(run_label, sizeof run_label, "%s %s", label, runs[i].name);
        fail += run_dp(c, be, &md, &ref, runs[i].zero, runs[i].bucket, run_label);
    }
    float* m = xmalloc(md.n_params * sizeof(float)), *v = xmalloc(md.n_params * sizeof(float));
    float* p = xmalloc(md.n_params * sizeof(float));
    memcpy(m, ref.m, md.n_params * sizeof(float));  // the checkpoint written after N_STEPS
    memcpy(v, ref.v, md.n_params * sizeof(float));
    memcpy(p, ref.params, md.n_params * sizeof(float));
    reference_step(&md, be, &ref, P, N_STEPS);
    fail += check_reshard(c, be, &md, &ref, m, v, p);
    free(m);
    free(v);
    free(p);
    free(ref.params);
    free(ref.m);
    free(ref.v);
    free(ref.avg);
    return fail;
}

// ---------------------------------------------------------------------------- failure scenarios
static void run_scenario(Comm* world, const char* scenario, double timeout) {
    comm_set_timeout(world, timeout);
    comm_barrier(world);
    float x[1000] = {0};
    if (comm_rank(world) == 1 && strcmp(scenario, "timeout") == 0) sleep(30);
    if (comm_rank(world) == 1 && strcmp(scenario, "kill") == 0) raise(SIGKILL);
    comm_all_reduce(world, x, 1000, COMM_SUM);
    printf("rank %d: the collective completed although rank 1 never arrived\n", comm_rank(world));
    comm_free(world);
}

int main(int argc, char** argv) {
    Error e = {{0}};
    Comm* world = comm_world_create(&argc, &argv, &e);  // initialises MPI when started by mpirun
    if (!world) fatal("%s", e.msg);
    int mpi_ready = 0, provided = 0;
    MPI_Initialized(&mpi_ready);
    if (!mpi_ready) MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);  // run without mpirun
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    const char* scenario = NULL;
    double timeout = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--scenario") == 0) scenario = argv[i + 1];
        if (strcmp(argv[i], "--timeout") == 0) timeout = atof(argv[i + 1]);
    }
    if (scenario) {
        run_scenario(world, scenario, timeout);
        if (!mpi_ready) MPI_Finalize();
        return 0;
    }

    int fail = 0, P = comm_size(world);
    if (g_rank == 0) printf("dp_check: %d rank(s), world communicator '%s'\n", P, comm_backend_name(world));
    fail += report("world communicator is MPI's under mpirun",
                   getenv("OMPI_COMM_WORLD_SIZE") && strcmp(comm_backend_name(world), "mpi") != 0, 0);
    Backend* be = backend_cpu_create(1);
    Comm* self = comm_self_create();
    fail += check_collectives(world, "world");
    fail += check_collectives(self, "self");
    fail += check_groups(world);
    fail += check_data_parallel(world, be, "world");
    fail += check_data_parallel(self, be, "self");
    comm_free(self);
    backend_destroy(be);
    int total = 0;
    MPI_Allreduce(&fail, &total, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    comm_free(world);  // finalises MPI when comm_world_create started it
    if (!mpi_ready) MPI_Finalize();
    if (g_rank != 0) return total ? 1 : 0;
    return test_summary("dp_check", total);
}
