// sweep.h — hyper-parameter sweeps: a sweep file expands into runs, each a normal run directory.
//
// Sweep file (YAML):
//   name: demo-sweep              # required; runs go to <runs_dir>/<name>/<run-id>/
//   base: base.yaml               # required; a config file (may use `extends:`), relative to the sweep file
//   runs_dir: runs                # default "runs", relative to the current directory (like every run_dir)
//   set: {train.max_steps: 50}    # fixed overrides applied to every run (on top of base)
//   grid:                         # cartesian product, the first axis varies slowest
//     model.projector.kind: [mlp, linear]
//   zip:                          # parallel lists of equal length: run i takes the i-th value of each
//     model.projector.conv_kernel: [3, 4]
//     model.projector.conv_stride: [2, 3]
//   random: {n: 4, seed: 1, axes: {train.lr: [1e-3, 3e-3]}}   # n samples, each axis a uniform choice
//   eval: {data: DIR, metric: accuracy|wer|mc|mse|lambada|perplexity, max_samples: 0}   # eval.json in
//                                 # the run dir (experiments/eval.h; max_samples 0 = every sample)
// Each axis is one config key (any key of `modrwkv config schema` except run_dir) with a list of scalar
// values; paired keys such as conv_kernel and conv_stride go into `zip:`. A key may appear in one block
// only. The runs are the product grid x zip x random (blocks that are absent contribute one empty point);
// random sample i draws, for each axis in file order, index splitmix64(seed stream) mod (number of values).
// Points with the same parameters (repeated random draws) are run once.
//
// Run id: "<slug>-<hash>", hash = the first 10 hex digits of SHA-256 over the varied parameters as sorted
// "key=value\n" lines (the values as written), slug = the values in axis order joined by '-' (a path
// value by its file name without extension; characters other than [A-Za-z0-9._-] become '_'). The id
// depends only on the varied parameters, so re-expanding a sweep gives the same directories.
//
// Run directory: config.yaml, metrics.jsonl, checkpoints/ (train_run), train.log (the output of every
// attempt, appended), sweep.json (sweep name, run id, varied parameters, every override; written before
// training), eval.json (with eval:), DONE (written atomically after training and evaluation succeeded),
// FAILED (the error of the last failed attempt).
// sweep_run_all skips runs with DONE, resumes the others from their newest checkpoint (a killed sweep
// continues where it stopped) and tries every run even when one fails. A run that a stop signal ends early
// (SIGUSR1 before a Slurm time limit, SIGTERM: it checkpoints and stops) gets no DONE, and the sweep stops
// there, to be continued by running it again (a requeued job).
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "kernels/common.h"
#include "sharding/comm.h"
#include "trainer/config.h"

typedef struct SweepParam {
    char* key;     // dotted config key
    char* value;   // its value as written in the sweep file
} SweepParam;

typedef struct SweepRun {
    char id[96];
    SweepParam* params;   // the varied parameters in axis order (grid, zip, random)
    int n_params;
} SweepRun;

typedef struct Sweep {
    char* path;           // the sweep file (for messages)
    char* name;
    char* base;           // the base config, resolved relative to the sweep file
    char* runs_dir;
    SweepParam* fixed;    // set:
    int n_fixed;
    char* eval_data;      // NULL: no evaluation
    char* eval_metric;
    int64_t eval_max_samples;   // 0: every sample
    SweepRun* runs;
    int n_runs;
} Sweep;

// Reads and expands a sweep file. Errors name FILE:LINE and the key. sweep_free also after a failure.
int sweep_load(Sweep* s, const char* path, Error* e);
// Same from text; `name` stands for the file (messages, and the directory `base:` is relative to).
int sweep_load_string(Sweep* s, const char* yaml, const char* name, Error* e);
void sweep_free(Sweep* s);

// The run id of a parameter list (see above); out holds at least 96 bytes.
void sweep_run_id(const SweepParam* params, int n, char* out, size_t size);
// <runs_dir>/<name>/<id>
void sweep_run_dir(const Sweep* s, const SweepRun* r, char* out, size_t size);
// The run's resolved config: defaults, base, set:, the run's parameters, run_dir; validated.
int sweep_run_config(const Sweep* s, const SweepRun* r, Config* c, Error* e);

// Runs every run one after another (see above), progress on `log`. Returns the number of failed runs
// (their ids and errors printed on `log`).
// comm: the ranks that train every run together (a multi-rank sweep element under srun / mpirun; rank 0 logs
// to `log` and writes the markers), or NULL for one process.
int sweep_run_all(const Sweep* s, FILE* log, Comm* comm);
// One line per run: id, state (done / partial step N of M (checkpoint K) / not started / failed), last
// training loss, validation loss, eval metric, varied parameters (from the run directories).
void sweep_print_status(const Sweep* s, FILE* f);
// One line per run: id, then the overrides it applies ("key=value" separated by spaces).
void sweep_print_expansion(const Sweep* s, FILE* f);

// The CLI (sweep_cli.c): `modrwkv sweep run|status|expand SWEEP.yaml` and
// `modrwkv config show FILE [--set k=v ...] | schema`. Return the process exit status.
int sweep_main(int argc, char** argv);
int config_main(int argc, char** argv);
