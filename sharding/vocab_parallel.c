// vocab_parallel.c — vocabulary-parallel cross-entropy (see vocab_parallel.h).
#include "sharding/vocab_parallel.h"

#include <math.h>
#include <stdlib.h>

// Index of the first maximum of l (Vl).
static int first_argmax(const float* l, int Vl) {
    int best = 0;
    for (int v = 1; v < Vl; v++)
        if (l[v] > l[best]) best = v;
    return best;
}

// stats (4N): [0, N) row maxima (local, then global), [N, 3N) the local sums of exp(l - M) and the target
// logit (then their sums over the group), [3N, 4N) the owner code of the global argmax (tp_size - rank).
static void reduce_row_stats(Comm* tp, float* stats, const float* logits, const int32_t* targets, int N, int Vl,
                             int v_begin) {
    int rank = comm_rank(tp), P = comm_size(tp);
    float *max = stats, *sum = stats + N, *tgt = stats + 2 * N, *owner = stats + 3 * N;
    for (int i = 0; i < N; i++) max[i] = logits[(size_t)i * Vl + first_argmax(logits + (size_t)i * Vl, Vl)];
    comm_all_reduce(tp, max, (size_t)N, COMM_MAX);
    for (int i = 0; i < N; i++) {
        const float* l = logits + (size_t)i * Vl;
        double s = 0;
        for (int v = 0; v < Vl; v++) s += exp((double)l[v] - max[i]);
        sum[i] = (float)s;
        int t = targets[i] - v_begin;
        tgt[i] = targets[i] >= 0 && t >= 0 && t < Vl ? l[t] : 0.0f;
        owner[i] = l[first_argmax(l, Vl)] == max[i] ? (float)(P - rank) : 0.0f;
    }
    comm_all_reduce(tp, sum, 2 * (size_t)N, COMM_SUM);
    comm_all_reduce(tp, owner, (size_t)N, COMM_MAX);
}

void vocab_parallel_crossentropy(Comm* tp, float* losses, float* dlogits, const float* logits, const int32_t* targets,
                                 int N, int Vl, int v_begin, float dloss, float l2wrap) {
    int rank = comm_rank(tp), P = comm_size(tp);
    float* stats = xmalloc(4 * (size_t)(N > 0 ? N : 1) * sizeof(float));
    reduce_row_stats(tp, stats, logits, targets, N, Vl, v_begin);
    const float *max = stats, *sum = stats + N, *tgt = stats + 2 * N, *owner = stats + 3 * N;
    for (int i = 0; i < N; i++) {
        const float* l = logits + (size_t)i * Vl;
        int masked = targets[i] < 0;
        losses[i] = masked ? 0.0f : (float)(log((double)sum[i]) + max[i] - tgt[i]);
        if (!dlogits) continue;
        float* d = dlogits + (size_t)i * Vl;
        if (masked) {
            for (int v = 0; v < Vl; v++) d[v] = 0.0f;
            continue;
        }
        int am = (int)(P - owner[i]) == rank ? first_argmax(l, Vl) : -1;  // before d overwrites an aliased l
        float scale = dloss / sum[i], m = max[i];
        for (int v = 0; v < Vl; v++) d[v] = scale * (float)exp((double)l[v] - m);
        int t = targets[i] - v_begin;
        if (t >= 0 && t < Vl) d[t] -= dloss;
        if (am >= 0) d[am] += l2wrap * m;
    }
    free(stats);
}
