// eval_parallel.c — the data-parallel combine of an evaluation (experiments/eval_internal.h): every rank
// agrees on failure, then the items of every rank are gathered on every rank in the evaluated order.
//
// Items travel as bytes: each rank packs its items (each EvalItem's bytes, then its strings with their
// lengths and its choice arrays) into one buffer headed by its length; the buffers are padded to the longest
// and exchanged with comm_all_gather, which moves its floats as bytes (bit for bit). Every rank unpacks the
// buffers in rank order and sorts the items by (sample, turn), which are unique, so the result is the
// one-rank item list exactly. The ranks run the same executable, so the EvalItem layout is the same.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/eval_internal.h"

typedef struct Packer {
    uint8_t* p;
    size_t len, cap;
} Packer;

static void put(Packer* k, const void* data, size_t n) {
    if (k->len + n > k->cap) {
        k->cap = 2 * (k->len + n) + 256;
        k->p = xrealloc(k->p, k->cap);
    }
    if (n) memcpy(k->p + k->len, data, n);
    k->len += n;
}

static void put_string(Packer* k, const char* s) {
    int64_t n = s ? (int64_t)strlen(s) : -1;   // -1: NULL
    put(k, &n, sizeof n);
    if (s) put(k, s, (size_t)n);
}

static void pack_item(Packer* k, const EvalItem* it) {
    put(k, it, sizeof *it);   // numbers; the pointers are replaced on unpacking
    put_string(k, it->key);
    put_string(k, it->reference);
    put_string(k, it->hypothesis);
    int n = it->choice_ll ? it->n_choices : 0;
    put(k, &n, sizeof n);
    put(k, it->choice_ll, (size_t)n * sizeof(double));
    put(k, it->choice_tokens, (size_t)n * sizeof(int));
}

typedef struct Unpacker {
    const uint8_t* p;
    size_t len, at;
} Unpacker;

// A buffer this process packed itself (on another rank): a short one is a bug, not bad input.
static void take(Unpacker* u, void* out, size_t n) {
    if (u->at + n > u->len) fatal("internal: eval: a gathered item buffer is truncated (%zu of %zu bytes)", u->at, u->len);
    if (n) memcpy(out, u->p + u->at, n);
    u->at += n;
}

static char* take_string(Unpacker* u) {
    int64_t n;
    take(u, &n, sizeof n);
    if (n < 0) return NULL;
    char* s = xmalloc((size_t)n + 1);
    take(u, s, (size_t)n);
    s[n] = 0;
    return s;
}

static void unpack_item(Unpacker* u, EvalItem* it) {
    take(u, it, sizeof *it);
    it->key = take_string(u);
    it->reference = take_string(u);
    it->hypothesis = take_string(u);
    int n;
    take(u, &n, sizeof n);
    it->choice_ll = n ? xmalloc((size_t)n * sizeof(double)) : NULL;
    it->choice_tokens = n ? xmalloc((size_t)n * sizeof(int)) : NULL;
    take(u, it->choice_ll, (size_t)n * sizeof(double));
    take(u, it->choice_tokens, (size_t)n * sizeof(int));
}

static int by_sample_turn(const void* a, const void* b) {
    const EvalItem *x = a, *y = b;
    if (x->sample != y->sample) return x->sample < y->sample ? -1 : 1;
    return (x->turn > y->turn) - (x->turn < y->turn);
}

// Every rank's items on every rank: (count, items...) per rank, gathered as padded float chunks.
static void gather_items(EvalResult* r, Comm* c) {
    Packer k = {0};
    uint64_t header[2] = {0, (uint64_t)r->n_items};   // bytes after the header, items
    put(&k, header, sizeof header);
    for (int64_t i = 0; i < r->n_items; i++) pack_item(&k, &r->items[i]);
    header[0] = (uint64_t)(k.len - sizeof header);
    memcpy(k.p, header, sizeof header);
    size_t longest = (size_t)comm_all_reduce_double(c, (double)k.len, COMM_MAX);
    size_t chunk = (longest + sizeof(float) - 1) / sizeof(float), P = (size_t)comm_size(c);
    float* mine = xcalloc(chunk, sizeof(float));
    memcpy(mine, k.p, k.len);
    float* all = xmalloc(P * chunk * sizeof(float));
    comm_all_gather(c, all, mine, P * chunk);
    free(mine);
    free(k.p);
    int64_t total = (int64_t)comm_all_reduce_double(c, (double)r->n_items, COMM_SUM);
    eval_free_items(r);
    size_t cap = 16;
    while (cap < (size_t)total) cap *= 2;   // eval_add_item's growth rule: the capacity is the next power of two
    r->items = xmalloc(cap * sizeof(EvalItem));
    for (size_t q = 0; q < P; q++) {
        Unpacker u = {.p = (const uint8_t*)(all + q * chunk), .len = chunk * sizeof(float)};
        uint64_t h[2];
        take(&u, h, sizeof h);
        u.len = sizeof h + (size_t)h[0];
        for (uint64_t i = 0; i < h[1]; i++) {
            if (r->n_items == total) fatal("internal: eval: more gathered items than the ranks counted");
            unpack_item(&u, &r->items[r->n_items++]);
        }
    }
    free(all);
    qsort(r->items, (size_t)r->n_items, sizeof(EvalItem), by_sample_turn);
}

// -1 on every rank when any rank failed: the message of the lowest failing rank, prefixed "rank R: " unless
// every rank failed (then rank 0's, as one process would say it).
static int agree_on_failure(Comm* c, int rc, Error* e) {
    int P = comm_size(c);
    double failed = comm_all_reduce_double(c, rc != 0 ? 1.0 : 0.0, COMM_SUM);
    if (failed == 0) return 0;
    int root = P - (int)comm_all_reduce_double(c, rc != 0 ? (double)(P - comm_rank(c)) : 0.0, COMM_MAX);
    char msg[sizeof e->msg];
    memset(msg, 0, sizeof msg);
    if (comm_rank(c) == root) memcpy(msg, e->msg, sizeof msg);
    comm_broadcast(c, msg, sizeof msg, root);
    msg[sizeof msg - 1] = 0;
    if ((int)failed == P) return errorf(e, "%s", msg);
    return errorf(e, "rank %d: %s", root, msg);
}

int eval_finish_parallel(EvalResult* r, const EvalOptions* o, int rc, Error* e) {
    r->ranks = 1;
    if (!o->comm || comm_size(o->comm) <= 1) return rc;
    r->ranks = comm_size(o->comm);
    if (agree_on_failure(o->comm, rc, e) != 0) return -1;
    gather_items(r, o->comm);
    return 0;
}
