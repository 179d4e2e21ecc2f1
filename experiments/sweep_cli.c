// sweep_cli.c — the `modrwkv sweep` and `modrwkv config` commands (experiments/sweep.h).
//   modrwkv sweep run SWEEP.yaml [--index I | --jobs N]   every run in turn (or only run I of the expansion, or
//                                     N runs at a time): done ones skipped, interrupted ones resumed
//   modrwkv sweep status SWEEP.yaml   one line per run from the run directories (+ the Slurm queue when submitted)
//   modrwkv sweep expand SWEEP.yaml   the run ids and their overrides, nothing run
//   modrwkv sweep submit SWEEP.yaml [options]   a Slurm job array + report job (experiments/slurm_sweep.c)
//   modrwkv config show FILE [--set key=value ...]   the resolved configuration (extends and overrides applied)
//   modrwkv config schema                            every key with its type, default and meaning
// Errors are one line on stderr ("modrwkv: error: ...") with exit status 1; `sweep run` exits 1 when a
// run failed (after trying the others).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/slurm_submit.h"
#include "experiments/sweep.h"
#include "experiments/sweep_parallel.h"
#include "sharding/comm.h"
#include "trainer/config.h"

static const char* SWEEP_HELP =
    "usage: modrwkv sweep run|status|expand SWEEP.yaml | sweep run SWEEP.yaml --index I | --jobs N\n"
    "       modrwkv sweep submit ...\n"
    "  run      run every run of the sweep one after another in runs_dir/<name>/<run-id>/: runs with a DONE\n"
    "           marker are skipped, interrupted ones resume from their newest checkpoint; a failed run does\n"
    "           not stop the others (exit status 1 if any failed). --index I runs only run I (0-based, in the\n"
    "           order of `expand`), the same way (one element of a Slurm job array); --jobs N runs N runs at\n"
    "           a time, each in its own process (set train.threads in the sweep's `set:` so N x threads fits)\n"
    "  status   one line per run: id, state (done / partial step N of M / not started / failed), last\n"
    "           training loss, validation loss, eval metric, parameters; after `submit`, the Slurm state of\n"
    "           the queued and running array elements (squeue)\n"
    "  expand   print the run ids and the overrides of each run without running anything\n"
    "  submit   submit the sweep to Slurm as a job array and a report job (`modrwkv sweep submit --help`)\n"
    "The sweep file format is documented in experiments/sweep.h (name, base, runs_dir, set, grid, zip,\n"
    "random, eval); experiments/demo-sweep.yaml is an example.\n";

static const char* CONFIG_HELP =
    "usage: modrwkv config show FILE [--set key=value ...] | modrwkv config schema\n"
    "  show     print the fully resolved configuration of FILE (its `extends:` chain and the --set overrides\n"
    "           applied), in the form written to every run directory as config.yaml\n"
    "  schema   every key with its type, default and meaning\n";

static int fail(const char* msg) {
    fprintf(stderr, "modrwkv: error: %s\n", msg);
    return 1;
}

// `sweep run SWEEP --index I`: run I alone, with the skip/resume behaviour of a whole sweep.
static int run_index(const Sweep* s, const char* arg, Comm* comm) {
    char* end;
    long i = strtol(arg, &end, 10);
    Error e;
    if (!*arg || *end || i < 0 || i >= s->n_runs) {
        errorf(&e, "sweep %s: --index %s is not a run of the sweep (0 to %d; `modrwkv sweep expand` lists them in "
                   "order)", s->name, arg, s->n_runs - 1);
        return fail(e.msg);
    }
    char dir[CONFIG_PATH_MAX + 256];
    sweep_run_dir(s, &s->runs[i], dir, sizeof dir);
    Sweep one = *s;  // the same sweep restricted to run i
    one.runs = &s->runs[i];
    one.n_runs = 1;
    printf("sweep %s: run %ld of %d (index %ld): %s\n", s->name, i + 1, s->n_runs, i, s->runs[i].id);
    if (sweep_run_all(&one, stdout, comm) > 0) {
        errorf(&e, "sweep %s: run %s (index %ld) failed (its FAILED file and train.log in %s hold the error)", s->name,
               s->runs[i].id, i, dir);
        return fail(e.msg);
    }
    return 0;
}

static int run(const Sweep* s, const char* index, int* argc, char*** argv);

// `sweep run SWEEP --jobs N` (experiments/sweep_parallel.h).
static int run_jobs(const Sweep* s, const char* path, const char* arg) {
    char* end;
    long n = strtol(arg, &end, 10);
    Error e;
    if (!*arg || *end || n < 1 || n > 1024) {
        errorf(&e, "sweep run --jobs %s: expects the number of runs at a time (1 to 1024)", arg);
        return fail(e.msg);
    }
    int failed = sweep_run_parallel(s, path, (int)n, stdout, &e);
    if (failed < 0) return fail(e.msg);
    if (failed == 0) return 0;
    errorf(&e, "sweep %s: %d of %d runs failed (their FAILED files hold the errors; fix and run again to retry them)",
           s->name, failed, s->n_runs);
    return fail(e.msg);
}

int sweep_main(int argc, char** argv) {
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(SWEEP_HELP, stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "submit") == 0) return sweep_submit_main(argc - 1, argv + 1);
    int indexed = argc == 5 && strcmp(argv[1], "run") == 0 && strcmp(argv[3], "--index") == 0;
    int jobs = argc == 5 && strcmp(argv[1], "run") == 0 && strcmp(argv[3], "--jobs") == 0;
    if ((argc != 3 && !indexed && !jobs) ||
        (strcmp(argv[1], "run") != 0 && strcmp(argv[1], "status") != 0 && strcmp(argv[1], "expand") != 0)) {
        fputs(SWEEP_HELP, stderr);
        return fail("sweep: expected `run`, `status`, `expand` or `submit` and one sweep file (`run` may take --index I)");
    }
    Sweep s;
    Error e;
    if (sweep_load(&s, argv[2], &e) != 0) {
        sweep_free(&s);
        return fail(e.msg);
    }
    int rc = 0;
    if (strcmp(argv[1], "expand") == 0) {
        sweep_print_expansion(&s, stdout);
    } else if (strcmp(argv[1], "status") == 0) {
        printf("sweep %s: %d runs in %s/%s\n", s.name, s.n_runs, s.runs_dir, s.name);
        sweep_print_status(&s, stdout);
        sweep_print_slurm_queue(&s, stdout);
    } else if (jobs) {
        rc = run_jobs(&s, argv[2], argv[4]);
    } else {
        rc = run(&s, indexed ? argv[4] : NULL, &argc, &argv);
    }
    sweep_free(&s);
    return rc;
}

// `sweep run`: every run (index NULL) or one. Started by mpirun / srun with several ranks, every run trains
// on all of them (rank 0 reports; the others stay silent).
static int run(const Sweep* s, const char* index, int* argc, char*** argv) {
    Error e;
    Comm* comm = comm_world_create(argc, argv, &e);
    if (!comm) return fail(e.msg);
    if (comm_rank(comm) != 0 && !freopen("/dev/null", "w", stdout)) comm_abort(comm, "cannot silence its output");
    int rc = 0;
    if (index) {
        rc = run_index(s, index, comm);
    } else {
        printf("sweep %s: %d runs in %s/%s\n", s->name, s->n_runs, s->runs_dir, s->name);
        int failed = sweep_run_all(s, stdout, comm);
        if (failed > 0) {
            char msg[256];
            snprintf(msg, sizeof msg, "sweep %s: %d of %d runs failed (listed above; their FAILED files hold the "
                     "errors; fix and run again to retry them)", s->name, failed, s->n_runs);
            rc = fail(msg);
        }
    }
    comm_free(comm);  // finalises MPI when it started it
    return rc;
}

static int config_show(int argc, char** argv) {
    Config* c = malloc(sizeof *c);
    if (!c) return fail("out of memory");
    config_defaults(c);
    Error e;
    int rc = config_load(c, argv[2], &e);
    for (int i = 3; rc == 0 && i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) rc = config_set(c, argv[++i], &e);
        else if (strncmp(argv[i], "--set=", 6) == 0) rc = config_set(c, argv[i] + 6, &e);
        else rc = errorf(&e, "config show: unexpected argument '%s' (only --set key=value may follow the file)", argv[i]);
    }
    if (rc != 0) {
        free(c);
        return fail(e.msg);
    }
    char* yaml = config_to_yaml(c);
    fputs(yaml, stdout);
    free(yaml);
    rc = config_validate(c, &e);
    free(c);
    return rc == 0 ? 0 : fail(e.msg);
}

int config_main(int argc, char** argv) {
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(CONFIG_HELP, stdout);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "schema") == 0) {
        config_print_keys(stdout);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "show") == 0) return config_show(argc, argv);
    fputs(CONFIG_HELP, stderr);
    return fail("config: expected `show FILE [--set key=value ...]` or `schema`");
}
