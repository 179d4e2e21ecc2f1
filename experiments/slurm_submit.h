// slurm_submit.h — training runs and sweeps submitted to Slurm from the sbatch templates in slurm/.
//
// Contract:
// - Templates: slurm/train.sbatch, slurm/sweep-array.sbatch, slurm/report.sbatch. A placeholder is an
//   upper-case name between '@' signs (@NODES@); rendering replaces every one with its value, and a line that
//   holds nothing but a placeholder whose value is empty (an optional #SBATCH line) is dropped. A placeholder
//   the renderer does not know is an error naming the template file and line. Values that go into #SBATCH
//   lines (paths, partition, account, time) are checked for characters sbatch cannot carry; values used in
//   the script body are shell-quoted.
// - Template lookup (first that exists): an explicit file (--template), $MODRWKV_SLURM_DIR/<name>,
//   <directory of the executable>/../slurm/<name>, <directory of the executable>/../share/modrwkv/slurm/<name>,
//   MODRWKV_SOURCE_DIR/slurm/<name> (the source tree the binary was built from).
// - Submission runs `sbatch --parsable [extra] SCRIPT` found on PATH, as an argument vector (no shell), and
//   reads the job id from its output; a missing sbatch is the one-line error "sbatch not found: install
//   Slurm's client or use --dry-run". Nothing is submitted and no directory is created with --dry-run.
// - A sweep submitted to Slurm keeps the job ids in <runs_dir>/<sweep>/slurm/jobs.json:
//   {"array_job": "ID", "report_job": "ID" or null, "n_runs": N, "runs": [run ids in index order]}.
#pragma once
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

#include "experiments/sweep.h"
#include "kernels/common.h"

// One placeholder and its value (the value is used as is: quote it first when the body needs that).
typedef struct SlurmVar {
    const char* name;   // without the '@' signs
    const char* value;
} SlurmVar;

// The resources of every job of a submission.
typedef struct SlurmResources {
    int nodes;               // >= 1
    int gpus_per_node;       // 0: a CPU job (no --gpus-per-node line)
    int tasks_per_node;      // ranks per node; 0: gpus_per_node, or 1 on CPUs
    int cpus_per_task;       // 0: the cluster's default (no line)
    int signal_before_s;     // SIGUSR1 this many seconds before the time limit (checkpoint and requeue)
    const char* partition;   // NULL: the cluster's default partition
    const char* time;        // NULL: the partition's default limit
    const char* account;     // NULL: the user's default account
    const char* mpi;         // pmix | pmi2 | none (srun --mpi=...) | mpirun (mpirun inside the allocation)
} SlurmResources;

// getopt_long codes of the resource options shared by `slurm submit` and `sweep submit`.
enum {
    SLURM_OPT_NODES = 256, SLURM_OPT_GPUS, SLURM_OPT_TASKS, SLURM_OPT_CPUS, SLURM_OPT_PARTITION, SLURM_OPT_TIME,
    SLURM_OPT_ACCOUNT, SLURM_OPT_MPI, SLURM_OPT_SIGNAL_BEFORE
};
// Usage lines of those options (for --help texts).
extern const char* SLURM_RESOURCE_HELP;
// A getopt_long table (malloc'ed): the resource options, then the command's own `extra` (ending with its
// {0, 0, 0, 0} entry).
struct option* slurm_long_options(const struct option* extra);

// The text of the resource placeholders (see slurm_resource_vars).
typedef struct SlurmResourceText {
    char nodes[16], tasks[16], signal[16];
    char gpus[64], cpus[64], partition[320], time[96], account[320];
} SlurmResourceText;

void slurm_resources_default(SlurmResources* r);
// Applies resource option `code` with value `arg`: 1 when it was one, 0 when `code` is another option, -1 with
// e filled for a bad value.
int slurm_resource_option(SlurmResources* r, int code, const char* arg, Error* e);
// The ranks per node after defaults (gpus_per_node, or 1 on CPUs, unless tasks_per_node was given).
int slurm_tasks_per_node(const SlurmResources* r);
// Fills t and vars[0..7] with NODES, TASKS_PER_NODE, SIGNAL_BEFORE, SBATCH_GPUS, SBATCH_CPUS, SBATCH_PARTITION,
// SBATCH_TIME, SBATCH_ACCOUNT (empty optional lines when not asked for); returns 8.
int slurm_resource_vars(const SlurmResources* r, SlurmResourceText* t, SlurmVar* vars);
// Checks the values (ranges, characters #SBATCH lines can carry, known --mpi, no `--mpi none` for more than one
// rank). Returns 0 or -1.
int slurm_resources_check(const SlurmResources* r, Error* e);

// The path of template `name` (see the lookup above; `explicit_path` may be NULL). Returns a malloc'ed path
// or NULL with e listing the places tried.
char* slurm_template_find(const char* name, const char* explicit_path, Error* e);
// Renders template text (`path` names it in messages). Returns the malloc'ed script or NULL with e filled.
char* slurm_template_render(const char* text, const char* path, const SlurmVar* vars, int n_vars, Error* e);
// `s` in single quotes for the shell ('\'' for each quote inside). malloc'ed.
char* slurm_shell_quote(const char* s);
// 1 when every byte of s may appear in an #SBATCH line (letters, digits and ._-+/:,=~).
int slurm_sbatch_safe(const char* s);

// prefix + the last component of path, characters other than [A-Za-z0-9._-] replaced by '_' (a job name).
void slurm_job_name(const char* prefix, const char* path, char* out, size_t size);

// Searches PATH for an executable `name`; fills path (size bytes) and returns 1, else 0.
int slurm_find_program(const char* name, char* path, size_t size);
// Runs argv (argv[0] searched on PATH; NULL-terminated). stdout is captured into *out and stderr into *err
// (malloc'ed, NUL-terminated) when those are not NULL, else passed through. Returns the exit status (128 +
// signal when killed), or -1 with e filled when the program could not be started.
int slurm_run(char* const* argv, char** out, char** err, Error* e);
// `sbatch --parsable [extra...] script`: the job id in id (the digits before any ";cluster"). Returns 0, or
// -1 with e holding sbatch's exit status and its message (on one line).
int slurm_sbatch(const char* script, const char* const* extra, int n_extra, char* id, size_t id_size, Error* e);
// The absolute path of the running executable (for the scripts), malloc'ed; NULL when unknown.
char* slurm_self_exe(void);
// The launcher words of the templates' LAUNCHER placeholder for --mpi: "srun --mpi=M --kill-on-bad-exit=1",
// or "mpirun" (into out, size bytes).
void slurm_launcher_words(const char* mpi, char* out, size_t size);
// An absolute, normalised form of a path that exists (realpath), malloc'ed; NULL with e filled.
char* slurm_absolute(const char* path, Error* e);

// The CLIs (return the exit status): `modrwkv slurm submit ...` and `modrwkv sweep submit ...`.
int slurm_main(int argc, char** argv);
int sweep_submit_main(int argc, char** argv);
// For `modrwkv sweep status`: when the sweep was submitted (jobs.json) and squeue exists, the Slurm state of
// its queued and running array elements and of the report job; nothing when the sweep was never submitted.
void sweep_print_slurm_queue(const Sweep* s, FILE* f);
