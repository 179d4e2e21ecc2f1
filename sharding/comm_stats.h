// comm_stats.h — communication accounting: what every communicator counts about its collectives
// (BENCHMARKS.md, "Distributed: communication volume and scaling model").
//
// Contract:
// - Every Comm (comm.h) keeps one CommStats: per collective kind, the number of calls, the payload bytes
//   this rank sent to other ranks and received from them, and the wall seconds spent inside the calls
//   (waiting for peers included). comm.c counts calls and seconds when it dispatches; the implementation
//   counts the bytes as its algorithm actually moves them (comm_count_bytes), so for the MPI
//   communicator an all-reduce of n floats on p ranks counts (n - len_r) + (p-1) len_r floats sent by
//   rank r (2 (p-1)/p n on average, exactly that when p divides n). Copies inside a rank are not
//   counted; neither is the MPI library's own traffic (communicator creation, MPI_Comm_split).
// - comm_stats_get / comm_stats_reset (comm.h) read and clear one communicator's counts.
// - MODRWKV_COMM_STATS=path: when set, every communicator created in the process is tracked, and when the
//   world (comm_world_create's result) is freed each rank writes a JSON summary to `path` with every
//   "%r" replaced by its world rank (no "%r" and more than one rank: `path.<rank>`): the totals per kind
//   over every communicator of the process and one entry per communicator (backend, size, rank, kinds).
//   The file is written atomically; a failure prints one warning line and does not change the exit status.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum CommKind {
    COMM_KIND_ALL_REDUCE = 0,
    COMM_KIND_REDUCE_SCATTER,
    COMM_KIND_ALL_GATHER,
    COMM_KIND_GATHER,
    COMM_KIND_BROADCAST,
    COMM_KIND_BARRIER,
    COMM_KIND_ALL_REDUCE_DOUBLE,
    COMM_KIND_SPLIT,
    COMM_KINDS
} CommKind;

typedef struct CommKindStats {
    uint64_t calls;
    uint64_t bytes_sent;      // payload this rank put on the wire
    uint64_t bytes_received;  // payload this rank took off the wire
    double seconds;           // wall time inside the calls
} CommKindStats;

typedef struct CommStats {
    CommKindStats kind[COMM_KINDS];
} CommStats;

// "all_reduce", "reduce_scatter", ... (the names used in the JSON summary).
const char* comm_kind_name(CommKind k);
// acc += x, kind by kind.
void comm_stats_add(CommStats* acc, const CommStats* x);
uint64_t comm_stats_total_sent(const CommStats* s);
uint64_t comm_stats_total_received(const CommStats* s);
// Writes {"all_reduce": {"calls": .., "bytes_sent": .., "bytes_received": .., "seconds": ..}, ...,
// "bytes_sent": total, "bytes_received": total} (kinds never called are left out).
void comm_stats_write_json(FILE* f, const CommStats* s);

// ---------------------------------------------------------------------------- for comm.c
struct Comm;
// Starts tracking c when MODRWKV_COMM_STATS is set (called by comm_alloc).
void comm_stats_track(struct Comm* c);
// Stops tracking c, keeping its final counts for the summary; when c is the world, writes the summary
// (called by comm_release).
void comm_stats_untrack(struct Comm* c);
