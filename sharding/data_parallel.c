// data_parallel.c — see data_parallel.h.
#include "sharding/data_parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

// ---------------------------------------------------------------------------- building the layout
static int validate(const DPTensor* t, int n, const DPConfig* cfg, Error* e) {
    if (cfg->zero != 0 && cfg->zero != 1)
        return errorf(e, "parallel.zero = %d: use 0 (gradient all-reduce) or 1 (ZeRO-1: sharded optimizer state)",
                      cfg->zero);
    for (int i = 1; i < n; i++)
        if (t[i].offset < t[i - 1].offset + t[i - 1].numel)
            return errorf(e, "data parallel: tensor %d (%s, offset %zu) starts before the end of tensor %d (%s, "
                             "offset %zu, %zu values): list the tensors in buffer order without overlap",
                          i, t[i].name ? t[i].name : "?", t[i].offset, i - 1, t[i - 1].name ? t[i - 1].name : "?",
                          t[i - 1].offset, t[i - 1].numel);
    return 0;
}

static void build_runs(DataParallel* dp) {
    dp->runs = xcalloc((size_t)dp->n_tensors + 1, sizeof(DPRun));
    for (int i = 0; i < dp->n_tensors; i++) {
        const DPTensor* t = &dp->tensors[i];
        if (!t->trained || t->numel == 0) continue;
        DPRun* last = dp->n_runs ? &dp->runs[dp->n_runs - 1] : NULL;
        if (last && last->offset + last->n == t->offset) {
            last->n += t->numel;
        } else {
            dp->runs[dp->n_runs++] = (DPRun){.offset = t->offset, .begin = dp->n_trained, .n = t->numel};
        }
        dp->n_trained += t->numel;
    }
}

static void add_bucket(DataParallel* dp, size_t begin, size_t end) {
    dp->buckets = xrealloc(dp->buckets, (size_t)(dp->n_buckets + 1) * sizeof(DPRange));
    dp->buckets[dp->n_buckets++] = (DPRange){begin, end};
}

// Buckets from the end of trained space backwards: whole tensors while they fit, a tensor larger than a
// bucket split into bucket-sized pieces from its end.
static void build_buckets(DataParallel* dp) {
    size_t B = dp->bucket_floats, end = dp->n_trained, begin = dp->n_trained, tensor_end = dp->n_trained;
    for (int i = dp->n_tensors - 1; i >= 0; i--) {
        const DPTensor* t = &dp->tensors[i];
        if (!t->trained || t->numel == 0) continue;
        size_t tensor_begin = tensor_end - t->numel;
        tensor_end = tensor_begin;
        if (end - tensor_begin <= B) {
            begin = tensor_begin;
            continue;
        }
        if (begin < end) add_bucket(dp, begin, end);
        end = begin;
        while (end - tensor_begin > B) {
            add_bucket(dp, end - B, end);
            end -= B;
        }
        begin = tensor_begin;
    }
    if (begin < end) add_bucket(dp, begin, end);
}

// This rank's shard and the trained tensors cut to it.
static void build_shard(DataParallel* dp) {
    int P = comm_size(dp->comm), r = comm_rank(dp->comm);
    dp->chunk = dp->zero ? comm_chunk(dp->n_trained, P) : dp->n_trained;
    dp->shard_begin = dp->zero ? dp->chunk * (size_t)r : 0;
    dp->shard_len = dp->zero ? comm_chunk_len(dp->n_trained, P, r) : dp->n_trained;
    if (dp->shard_begin > dp->n_trained) dp->shard_begin = dp->n_trained;
    dp->segments = xcalloc((size_t)dp->n_tensors + 1, sizeof(DPSegment));
    size_t shard_end = dp->shard_begin + dp->shard_len, pos = 0;
    for (int i = 0; i < dp->n_tensors; i++) {
        const DPTensor* t = &dp->tensors[i];
        if (!t->trained || t->numel == 0) continue;
        size_t a = pos > dp->shard_begin ? pos : dp->shard_begin;
        size_t b = min_size(pos + t->numel, shard_end);
        if (a < b)
            dp->segments[dp->n_segments++] = (DPSegment){
                .tensor = i, .offset = t->offset + (a - pos), .shard_offset = a - dp->shard_begin, .n = b - a};
        pos += t->numel;
    }
}

DataParallel* dp_create(Comm* dp_comm, Backend* be, const DPTensor* tensors, int n_tensors, const DPConfig* cfg,
                        Error* e) {
    if (validate(tensors, n_tensors, cfg, e) != 0) return NULL;
    DataParallel* dp = xcalloc(1, sizeof *dp);
    dp->comm = dp_comm;
    dp->be = be;
    dp->zero = cfg->zero;
    dp->n_tensors = n_tensors;
    dp->tensors = xcalloc((size_t)n_tensors + 1, sizeof(DPTensor));
    if (n_tensors) memcpy(dp->tensors, tensors, (size_t)n_tensors * sizeof(DPTensor));
    for (int i = 0; i < n_tensors; i++) dp->tensors[i].name = NULL;
    size_t bytes = cfg->bucket_bytes ? cfg->bucket_bytes : DP_DEFAULT_BUCKET_BYTES;
    dp->bucket_floats = bytes / sizeof(float) ? bytes / sizeof(float) : 1;
    build_runs(dp);
    if (!dp->zero) build_buckets(dp);
    build_shard(dp);
    int P = comm_size(dp_comm);
    dp->window = dp->bucket_floats / (size_t)P ? dp->bucket_floats / (size_t)P : 1;
    size_t stage = dp->zero ? dp->window * (size_t)P : dp->bucket_floats;
    dp->send = be->alloc(be, stage * sizeof(float));
    dp->recv = be->alloc(be, stage * sizeof(float));
    dp->m = be->alloc(be, dp->shard_len * sizeof(float));
    dp->v = be->alloc(be, dp->shard_len * sizeof(float));
    return dp;
}

void dp_free(DataParallel* dp) {
    if (!dp) return;
    Backend* be = dp->be;
    be->free(be, dp->send);
    be->free(be, dp->recv);
    be->free(be, dp->m);
    be->free(be, dp->v);
    free(dp->tensors);
    free(dp->runs);
    free(dp->buckets);
    free(dp->segments);
    free(dp);
}

// ---------------------------------------------------------------------------- trained space <-> buffer
// Index of the run that holds trained position a (a < n_trained).
static int find_run(const DataParallel* dp, size_t a) {
    int lo = 0, hi = dp->n_runs - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (dp->runs[mid].begin <= a) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

// Copies trained positions [a, b) between buf (buffer layout) and packed (b - a values); buf is only read
// when to_buf is 0 (callers holding a const buffer cast it for that direction).
static void copy_trained(const DataParallel* dp, float* buf, float* packed, size_t a, size_t b, int to_buf) {
    Backend* be = dp->be;
    for (int i = a < b ? find_run(dp, a) : dp->n_runs; i < dp->n_runs && a < b; i++) {
        const DPRun* run = &dp->runs[i];
        size_t end = min_size(b, run->begin + run->n), n = end - a;
        float* in_buf = buf + run->offset + (a - run->begin);
        if (to_buf) be->k.copy(be, in_buf, packed, n);
        else be->k.copy(be, packed, in_buf, n);
        packed += n;
        a = end;
    }
}

// Buffer address of trained position a when [a, b) lies in one run, else NULL.
static float* contiguous(const DataParallel* dp, float* buf, size_t a, size_t b) {
    const DPRun* run = &dp->runs[find_run(dp, a)];
    return b <= run->begin + run->n ? buf + run->offset + (a - run->begin) : NULL;
}

// Trained range of rank j's part of window k (values; may be empty).
static DPRange window_range(const DataParallel* dp, int j, size_t k) {
    size_t shard_end = min_size(dp->chunk * (size_t)(j + 1), dp->n_trained);
    size_t a = min_size(dp->chunk * (size_t)j + k * dp->window, shard_end);
    return (DPRange){a, min_size(a + dp->window, shard_end)};
}

static size_t n_windows(const DataParallel* dp) { return (dp->chunk + dp->window - 1) / dp->window; }

// Values per rank in window k (the same on every rank).
static size_t window_piece(const DataParallel* dp, size_t k) { return min_size(dp->window, dp->chunk - k * dp->window); }

// ---------------------------------------------------------------------------- gradients
void dp_reduce_bucket(DataParallel* dp, float* grads, int b) {
    if (dp->zero || b < 0 || b >= dp->n_buckets)
        fatal("dp_reduce_bucket: bucket %d of %d with zero = %d (buckets exist only without ZeRO)", b, dp->n_buckets,
              dp->zero);
    DPRange r = dp->buckets[b];
    size_t n = r.end - r.begin;
    float* x = contiguous(dp, grads, r.begin, r.end);
    if (x) {
        comm_all_reduce(dp->comm, x, n, COMM_AVG);
        return;
    }
    copy_trained(dp, grads, dp->send, r.begin, r.end, 0);
    comm_all_reduce(dp->comm, dp->send, n, COMM_AVG);
    copy_trained(dp, grads, dp->send, r.begin, r.end, 1);
}

static void reduce_scatter_windows(DataParallel* dp, float* grads) {
    Backend* be = dp->be;
    int P = comm_size(dp->comm), me = comm_rank(dp->comm);
    for (size_t k = 0; k < n_windows(dp); k++) {
        size_t piece = window_piece(dp, k);
        for (int j = 0; j < P; j++) {  // send (P, piece): rank j's part of the window, zero-padded
            DPRange r = window_range(dp, j, k);
            copy_trained(dp, grads, dp->send + (size_t)j * piece, r.begin, r.end, 0);
            be->k.zero(be, dp->send + (size_t)j * piece + (r.end - r.begin), piece - (r.end - r.begin));
        }
        comm_reduce_scatter(dp->comm, dp->recv, dp->send, (size_t)P * piece, COMM_AVG);
        DPRange mine = window_range(dp, me, k);
        copy_trained(dp, grads, dp->recv, mine.begin, mine.end, 1);
    }
}

void dp_reduce_gradients(DataParallel* dp, float* grads) {
    if (dp->zero) {
        reduce_scatter_windows(dp, grads);
        return;
    }
    for (int b = 0; b < dp->n_buckets; b++) dp_reduce_bucket(dp, grads, b);
}

double dp_grad_norm(DataParallel* dp, const float* grads) {
    Backend* be = dp->be;
    double ss = 0;
    if (!dp->zero) {  // every rank holds all averaged gradients: tensor by tensor, no communication
        for (int i = 0; i < dp->n_tensors; i++) {
            const DPTensor* t = &dp->tensors[i];
            if (t->trained && !t->norm_skip && t->numel) ss += be->k.sum_squares(be, grads + t->offset, t->numel);
        }
        return sqrt(ss);
    }
    for (int s = 0; s < dp->n_segments; s++)
        if (!dp->tensors[dp->segments[s].tensor].norm_skip)
            ss += be->k.sum_squares(be, grads + dp->segments[s].offset, dp->segments[s].n);
    return sqrt(comm_all_reduce_double(dp->comm, ss, COMM_SUM));
}

// ---------------------------------------------------------------------------- update
static void all_gather_windows(DataParallel* dp, float* params) {
    Backend* be = dp->be;
    int P = comm_size(dp->comm), me = comm_rank(dp->comm);
    for (size_t k = 0; k < n_windows(dp); k++) {
        size_t piece = window_piece(dp, k);
        DPRange mine = window_range(dp, me, k);
        copy_trained(dp, params, dp->send, mine.begin, mine.end, 0);
        be->k.zero(be, dp->send + (mine.end - mine.begin), piece - (mine.end - mine.begin));
        comm_all_gather(dp->comm, dp->recv, dp->send, (size_t)P * piece);
        for (int j = 0; j < P; j++) {
            DPRange r = window_range(dp, j, k);
            if (j != me) copy_trained(dp, params, dp->recv + (size_t)j * piece, r.begin, r.end, 1);
        }
    }
}

void dp_update(DataParallel* dp, float* params, const float* grads, const DPAdamW* h) {
    Backend* be = dp->be;
    for (int s = 0; s < dp->n_segments; s++) {
        const DPSegment* g = &dp->segments[s];
        const DPTensor* t = &dp->tensors[g->tensor];
        float wd = t->weight_decay ? h->weight_decay : 0.0f;
        be->k.adamw_update(be, params + g->offset, grads + g->offset, dp->m + g->shard_offset,
                           dp->v + g->shard_offset, g->n, h->lr * t->lr_scale, h->beta1, h->beta2, h->eps, wd,
                           h->step, h->grad_scale);
    }
    if (dp->zero) all_gather_windows(dp, params);
}

// ---------------------------------------------------------------------------- optimizer state
static void gather_one(DataParallel* dp, float* full, const float* shard, int root) {
    Backend* be = dp->be;
    int P = comm_size(dp->comm), me = comm_rank(dp->comm);
    for (size_t k = 0; k < n_windows(dp); k++) {
        size_t piece = window_piece(dp, k);
        DPRange mine = window_range(dp, me, k);
        be->k.copy(be, dp->send, shard + (mine.begin - dp->shard_begin), mine.end - mine.begin);
        be->k.zero(be, dp->send + (mine.end - mine.begin), piece - (mine.end - mine.begin));
        comm_gather(dp->comm, dp->recv, dp->send, (size_t)P * piece, root);
        for (int j = 0; me == root && j < P; j++) {
            DPRange r = window_range(dp, j, k);
            copy_trained(dp, full, dp->recv + (size_t)j * piece, r.begin, r.end, 1);
        }
    }
}

void dp_gather_moments(DataParallel* dp, float* m_full, float* v_full, int root) {
    if (!dp->zero) {  // every rank holds the same moments
        if (comm_rank(dp->comm) != root) return;
        copy_trained(dp, m_full, dp->m, 0, dp->n_trained, 1);
        copy_trained(dp, v_full, dp->v, 0, dp->n_trained, 1);
        return;
    }
    gather_one(dp, m_full, dp->m, root);
    gather_one(dp, v_full, dp->v, root);
}

void dp_load_moments(DataParallel* dp, const float* m_full, const float* v_full) {
    size_t a = dp->shard_begin, b = dp->shard_begin + dp->shard_len;
    copy_trained(dp, (float*)m_full, dp->m, a, b, 0);
    copy_trained(dp, (float*)v_full, dp->v, a, b, 0);
}
