// sweep_parallel.h — running the runs of a sweep several at a time on one machine (experiments/sweep_parallel.c).
//
// Contract: sweep_run_parallel starts `<this executable> sweep run SWEEP_PATH --index I` for every run I of s,
// at most `jobs` processes at once, and waits for all of them; finished runs are skipped and interrupted ones
// resumed by the children exactly as by `sweep run`. Each run uses train.threads threads: set it in the
// sweep's `set:` so that jobs x threads fits the machine. Returns the number of runs whose process failed,
// or -1 with e filled when a process could not be started.
#pragma once
#include <stdio.h>

#include "experiments/sweep.h"
#include "kernels/common.h"

int sweep_run_parallel(const Sweep* s, const char* sweep_path, int jobs, FILE* log, Error* e);
