// comm_stats.c — see comm_stats.h: kind names, sums, the JSON form of the counts, and the
// MODRWKV_COMM_STATS summary (a process-wide list of the tracked communicators, written when the world
// is freed). Communicators are created and freed by one thread (comm.h), so the list needs no lock.
#include "sharding/comm_stats.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "sharding/comm.h"

static const char* const KIND_NAMES[COMM_KINDS] = {
    "all_reduce", "reduce_scatter", "all_gather", "gather", "broadcast", "barrier", "all_reduce_double", "split",
};

const char* comm_kind_name(CommKind k) { return k >= 0 && k < COMM_KINDS ? KIND_NAMES[k] : "?"; }

void comm_stats_add(CommStats* acc, const CommStats* x) {
    for (int k = 0; k < COMM_KINDS; k++) {
        acc->kind[k].calls += x->kind[k].calls;
        acc->kind[k].bytes_sent += x->kind[k].bytes_sent;
        acc->kind[k].bytes_received += x->kind[k].bytes_received;
        acc->kind[k].seconds += x->kind[k].seconds;
    }
}

uint64_t comm_stats_total_sent(const CommStats* s) {
    uint64_t t = 0;
    for (int k = 0; k < COMM_KINDS; k++) t += s->kind[k].bytes_sent;
    return t;
}

uint64_t comm_stats_total_received(const CommStats* s) {
    uint64_t t = 0;
    for (int k = 0; k < COMM_KINDS; k++) t += s->kind[k].bytes_received;
    return t;
}

void comm_stats_write_json(FILE* f, const CommStats* s) {
    fputc('{', f);
    for (int k = 0; k < COMM_KINDS; k++) {
        const CommKindStats* x = &s->kind[k];
        if (!x->calls) continue;
        fprintf(f, "\"%s\": {\"calls\": %" PRIu64 ", \"bytes_sent\": %" PRIu64 ", \"bytes_received\": %" PRIu64
                   ", \"seconds\": %.6f}, ",
                KIND_NAMES[k], x->calls, x->bytes_sent, x->bytes_received, x->seconds);
    }
    fprintf(f, "\"bytes_sent\": %" PRIu64 ", \"bytes_received\": %" PRIu64 "}", comm_stats_total_sent(s),
            comm_stats_total_received(s));
}

// ---------------------------------------------------------------------------- the tracked communicators
typedef struct Record {
    const Comm* live;      // NULL once freed (then the fields below hold its final state)
    const char* backend;
    int rank, size;
    CommStats stats;
} Record;

static Record* g_records;  // (g_n) in creation order
static int g_n, g_cap;

static Record* find(const Comm* c) {
    for (int i = 0; i < g_n; i++)
        if (g_records[i].live == c) return &g_records[i];
    return NULL;
}

void comm_stats_track(Comm* c) {
    const char* path = getenv("MODRWKV_COMM_STATS");
    if (!path || !path[0]) return;
    if (g_n == g_cap) {
        g_cap = g_cap ? 2 * g_cap : 8;
        g_records = xrealloc(g_records, (size_t)g_cap * sizeof *g_records);
    }
    g_records[g_n++] = (Record){.live = c};
}

// Current state of record r (a live communicator is read now).
static Record snapshot(const Record* r) {
    if (!r->live) return *r;
    return (Record){.live = r->live, .backend = r->live->name, .rank = r->live->rank, .size = r->live->size,
                    .stats = r->live->stats};
}

// `path` with every "%r" replaced by the world rank; without "%r" and with more than one rank, "path.<rank>".
static char* rank_path(const char* path, int world_rank, int world_size) {
    size_t cap = strlen(path) + 32, len = 0;
    char* out = xmalloc(cap);
    int replaced = 0;
    for (const char* p = path; *p; p++) {
        if (len + 24 > cap) out = xrealloc(out, cap *= 2);
        if (p[0] == '%' && p[1] == 'r') {
            len += (size_t)snprintf(out + len, cap - len, "%d", world_rank);
            replaced = 1;
            p++;
        } else {
            out[len++] = *p;
        }
    }
    out[len] = '\0';
    if (!replaced && world_size > 1) snprintf(out + len, cap - len, ".%d", world_rank);
    return out;
}

static void write_summary(const Comm* world) {
    const char* path = getenv("MODRWKV_COMM_STATS");
    int world_rank = world->world_ranks[world->rank];
    char* buf = NULL;
    size_t len = 0;
    FILE* f = open_memstream(&buf, &len);
    if (!f) fatal("MODRWKV_COMM_STATS: out of memory for the summary");
    CommStats total = {0};
    for (int i = 0; i < g_n; i++) {
        Record r = snapshot(&g_records[i]);
        comm_stats_add(&total, &r.stats);
    }
    fprintf(f, "{\"rank\": %d, \"size\": %d, \"backend\": \"%s\",\n \"total\": ", world_rank, world->size,
            world->name);
    comm_stats_write_json(f, &total);
    fprintf(f, ",\n \"communicators\": [");
    for (int i = 0; i < g_n; i++) {
        Record r = snapshot(&g_records[i]);
        fprintf(f, "%s\n  {\"backend\": \"%s\", \"size\": %d, \"rank\": %d, \"kinds\": ", i ? "," : "", r.backend,
                r.size, r.rank);
        comm_stats_write_json(f, &r.stats);
        fputc('}', f);
    }
    fprintf(f, "]}\n");
    fclose(f);
    char* out = rank_path(path, world_rank, world->size);
    Error e = {{0}};
    if (write_file_atomic(out, buf, len, &e) != 0)
        fprintf(stderr, "modrwkv: warning: rank %d: MODRWKV_COMM_STATS: %s\n", world_rank, e.msg);
    free(out);
    free(buf);
}

// Drops the records of freed communicators (after a summary); frees the list when it is empty.
static void forget_freed(void) {
    int kept = 0;
    for (int i = 0; i < g_n; i++)
        if (g_records[i].live) g_records[kept++] = g_records[i];
    g_n = kept;
    if (g_n == 0) {
        free(g_records);
        g_records = NULL;
        g_cap = 0;
    }
}

void comm_stats_untrack(Comm* c) {
    Record* r = find(c);
    if (!r) return;
    *r = snapshot(r);
    r->live = NULL;
    if (!c->stats_is_world) return;
    write_summary(c);
    forget_freed();
}
