// groups.c — see groups.h.
#include "sharding/groups.h"

#include <string.h>

static int check_layout(int world, int tp, int dp, Error* e) {
    if (tp < 1)
        return errorf(e, "parallel.tp = %d: the tensor-parallel size must be at least 1", tp);
    if (dp < 0)
        return errorf(e, "parallel.dp = %d: the data-parallel size must be at least 1 (or 0 to derive it)", dp);
    if (world % tp != 0)
        return errorf(e, "parallel.tp = %d does not divide the %d ranks of the job: launch a multiple of %d ranks "
                         "(mpirun -np %d) or set parallel.tp to a divisor of %d",
                      tp, world, tp, (world / tp + 1) * tp, world);
    if (dp != 0 && tp * dp != world)
        return errorf(e, "parallel.tp x parallel.dp = %d x %d = %d ranks, but the job has %d: launch %d ranks "
                         "(mpirun -np %d) or set parallel.dp to 0 to derive it (%d)",
                      tp, dp, tp * dp, world, tp * dp, tp * dp, world / tp);
    return 0;
}

int groups_create(ProcessGroups* g, Comm* world, int tp, int dp, Error* e) {
    memset(g, 0, sizeof *g);
    int size = comm_size(world), rank = comm_rank(world);
    if (check_layout(size, tp, dp, e) != 0) return -1;
    g->world = world;
    g->rank = rank;
    g->size = size;
    g->tp_size = tp;
    g->dp_size = size / tp;
    g->tp_rank = rank % tp;
    g->dp_rank = rank / tp;
    g->local_rank = comm_local_rank(world);
    g->local_size = comm_local_size(world);
    g->tp = comm_split(world, g->dp_rank, g->tp_rank, e);   // color: which tp group; ordered by tp rank
    if (!g->tp) return -1;
    g->dp = comm_split(world, g->tp_rank, g->dp_rank, e);   // color: which dp group; ordered by dp rank
    if (!g->dp) {
        groups_free(g);
        return -1;
    }
    return 0;
}

void groups_free(ProcessGroups* g) {
    comm_free(g->tp);
    comm_free(g->dp);
    g->tp = g->dp = NULL;
}
