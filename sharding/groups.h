// groups.h — the process groups of a dp x tp layout (DESIGN.md, "Parallelism").
//
// Contract:
// - world = dp x tp. Tensor-parallel ranks are contiguous: world rank w has tp_rank = w % tp and
//   dp_rank = w / tp, so the tp group of w is {dp_rank*tp .. dp_rank*tp + tp-1} (inside a node when tp
//   divides the ranks per node) and its dp group is {tp_rank, tp_rank + tp, ...}.
// - tp must be >= 1 and divide the world size; dp = 0 means world / tp, otherwise tp * dp must equal the
//   world size. Violations return -1 with a one-line Error that says how to launch or what to set.
// - local_rank/local_size come from the world communicator (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)
//   under MPI): the GPU of a rank is local_rank mod the visible devices.
// - groups_create is collective over the world; groups_free frees the tp and dp communicators (not the
//   world): call it before comm_free(world).
#pragma once
#include "kernels/common.h"
#include "sharding/comm.h"

typedef struct ProcessGroups {
    Comm* world;                  // not owned
    Comm* tp;                     // (tp ranks) tensor-parallel group of this rank
    Comm* dp;                     // (dp ranks) data-parallel group of this rank
    int rank, size;               // in the world
    int tp_size, dp_size;
    int tp_rank, dp_rank;
    int local_rank, local_size;   // on this node
} ProcessGroups;

// tp >= 1; dp >= 0 (0: derived). Returns 0, or -1 with e filled (bad layout for this world size).
int groups_create(ProcessGroups* g, Comm* world, int tp, int dp, Error* e);
void groups_free(ProcessGroups* g);
