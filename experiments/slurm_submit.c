// slurm_submit.c — `modrwkv slurm submit CONFIG.yaml ...`: one training run as a (multi-node) Slurm job
// (experiments/slurm_submit.h). The configuration is resolved and validated first (a bad config or an
// unknown key never reaches the queue), then frozen into <run dir>/job-config.yaml; slurm/train.sbatch is
// rendered into <run dir>/job.sbatch and submitted with `sbatch --parsable`.
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "experiments/slurm_submit.h"
#include "trainer/config.h"

static const char* SLURM_HELP =
    "usage: modrwkv slurm submit CONFIG.yaml [--nodes N] [--gpus-per-node G] [--tasks-per-node T]\n"
    "                            [--cpus-per-task C] [--partition P] [--time T] [--account A]\n"
    "                            [--run-dir DIR] [--set key=value ...] [--mpi pmix|pmi2|none|mpirun]\n"
    "                            [--signal-before S] [--template FILE] [--dry-run]\n"
    "Submits one training run to Slurm: N nodes x T ranks that train together (data parallel), started by\n"
    "`srun --mpi=pmix modrwkv train` (one rank per GPU on GPU nodes). The configuration (with --set and\n"
    "--run-dir applied) is checked before anything is submitted and frozen into DIR/job-config.yaml; the\n"
    "job script is DIR/job.sbatch (from slurm/train.sbatch), Slurm's output DIR/slurm-<job>.out/.err. Before\n"
    "the time limit the job writes a checkpoint and requeues itself; every start resumes (--resume auto).\n"
    "Prints the job id and the run directory.\n"
    "%s"
    "  --run-dir DIR        the run directory (default: the config's run_dir)\n"
    "  --set key=value      override one config key (repeatable; `modrwkv config schema` lists them)\n"
    "  --mpi M              how the ranks start: pmix (srun --mpi=pmix, default), pmi2, none (one rank only),\n"
    "                       or mpirun (Open MPI's mpirun inside the allocation, for MPIs without Slurm PMI)\n"
    "  --template FILE      the sbatch template (default: slurm/train.sbatch, or $MODRWKV_SLURM_DIR)\n"
    "  --dry-run            print the job script; create and submit nothing\n"
    "sbatch must be on PATH (Slurm's client) unless --dry-run is given. slurm/README.md has the details.\n";

typedef struct SubmitOptions {
    const char* config;
    const char* run_dir;
    const char* template_path;
    const char** sets;
    int n_sets;
    int dry_run;
    SlurmResources res;
} SubmitOptions;

static int fail(const char* msg) {
    fprintf(stderr, "modrwkv: error: %s\n", msg);
    return 1;
}

// Parses argv (argv[0] = "submit"). Returns 0, 1 after --help, or -1 with e filled.
static int parse_options(int argc, char** argv, SubmitOptions* o, Error* e) {
    static const struct option OWN[] = {{"run-dir", 1, 0, 'r'},  {"set", 1, 0, 's'}, {"template", 1, 0, 't'},
                                        {"dry-run", 0, 0, 'n'},  {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    struct option* opts = slurm_long_options(OWN);
    slurm_resources_default(&o->res);
    o->sets = xcalloc((size_t)argc, sizeof *o->sets);
    optind = 1;
    int ch, rc = 0;
    while (rc == 0 && (ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = slurm_resource_option(&o->res, ch, optarg, e);
        if (r != 0) {
            rc = r < 0 ? -1 : 0;
            continue;
        }
        switch (ch) {
        case 'r': o->run_dir = optarg; break;
        case 's': o->sets[o->n_sets++] = optarg; break;
        case 't': o->template_path = optarg; break;
        case 'n': o->dry_run = 1; break;
        case 'h': printf(SLURM_HELP, SLURM_RESOURCE_HELP); rc = 1; break;
        default:
            rc = errorf(e, "slurm submit: unknown option or missing value in '%s': run `modrwkv slurm submit --help`",
                        argv[optind - 1]);
        }
    }
    free(opts);
    if (rc != 0) return rc;
    if (optind != argc - 1) return errorf(e, "slurm submit: give exactly one CONFIG.yaml (see `modrwkv slurm submit --help`)");
    o->config = argv[optind];
    return slurm_resources_check(&o->res, e);
}

// The configuration as the job will see it: file, --set overrides, --run-dir; validated.
static int resolve_config(const SubmitOptions* o, Config* c, Error* e) {
    config_defaults(c);
    if (config_load(c, o->config, e) != 0) return -1;
    for (int i = 0; i < o->n_sets; i++)
        if (config_set(c, o->sets[i], e) != 0) return -1;
    if (o->run_dir) {
        if (strlen(o->run_dir) >= sizeof c->run_dir) return errorf(e, "--run-dir %.200s...: the path is too long", o->run_dir);
        snprintf(c->run_dir, sizeof c->run_dir, "%s", o->run_dir);
    }
    return config_validate(c, e);
}

// The run directory as an absolute path (created unless dry_run). Returns a malloc'ed path or NULL.
static char* absolute_run_dir(const char* dir, int dry_run, Error* e) {
    if (!dry_run) return mkdir_p(dir, e) == 0 ? slurm_absolute(dir, e) : NULL;
    if (dir[0] == '/') return xstrdup(dir);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        errorf(e, "cannot read the current directory");
        return NULL;
    }
    char* out = xmalloc(strlen(cwd) + strlen(dir) + 2);
    sprintf(out, "%s/%s", cwd, dir);
    return out;
}


void slurm_launcher_words(const char* mpi, char* out, size_t size) {
    if (strcmp(mpi, "mpirun") == 0) snprintf(out, size, "mpirun");
    else snprintf(out, size, "srun --mpi=%s --kill-on-bad-exit=1", mpi);
}

// The rendered job script (malloc'ed) or NULL.
static char* render_script(const SubmitOptions* o, const char* run_dir, const char* config_path, Error* e) {
    char* tpath = slurm_template_find("train.sbatch", o->template_path, e);
    char* text = tpath ? read_file(tpath, NULL, e) : NULL;
    char* exe = slurm_self_exe();
    char cwd[PATH_MAX], name[160], launcher[96];
    char* script = NULL;
    if (text && (!exe || !getcwd(cwd, sizeof cwd))) errorf(e, "cannot find this executable or the current directory");
    else if (text) {
        slurm_job_name("modrwkv-", run_dir, name, sizeof name);
        slurm_launcher_words(o->res.mpi, launcher, sizeof launcher);
        char *q_exe = slurm_shell_quote(exe), *q_cfg = slurm_shell_quote(config_path);
        char *q_run = slurm_shell_quote(run_dir), *q_cwd = slurm_shell_quote(cwd);
        SlurmResourceText t;
        SlurmVar vars[16];
        int n = slurm_resource_vars(&o->res, &t, vars);
        const SlurmVar more[] = {{"JOB_NAME", name}, {"LOG_DIR", run_dir}, {"MODRWKV", q_exe}, {"CONFIG", q_cfg},
                                 {"RUN_DIR", q_run}, {"WORKDIR", q_cwd}, {"LAUNCHER", launcher}};
        for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) vars[n++] = more[i];
        script = slurm_template_render(text, tpath, vars, n, e);
        free(q_exe);
        free(q_cfg);
        free(q_run);
        free(q_cwd);
    }
    free(exe);
    free(text);
    free(tpath);
    return script;
}

// Writes job-config.yaml and job.sbatch into the run directory and submits the script.
static int submit(const char* run_dir, const char* config_path, const Config* c, const char* script, Error* e) {
    char* yaml = config_to_yaml(c);
    int rc = write_file_atomic(config_path, yaml, strlen(yaml), e);
    free(yaml);
    char path[PATH_MAX + 32], id[64];
    snprintf(path, sizeof path, "%s/job.sbatch", run_dir);
    if (rc == 0) rc = write_file_atomic(path, script, strlen(script), e);
    if (rc == 0) rc = slurm_sbatch(path, NULL, 0, id, sizeof id, e);
    if (rc == 0) {
        printf("submitted job %s\nrun directory: %s\n", id, run_dir);
        printf("script %s; Slurm's output %s/slurm-%s.out; metrics %s/metrics.jsonl\n", path, run_dir, id, run_dir);
    }
    return rc;
}

static int slurm_submit(int argc, char** argv) {
    SubmitOptions o;
    memset(&o, 0, sizeof o);
    Error e = {{0}};
    Config* c = xmalloc(sizeof *c);
    char *run_dir = NULL, *script = NULL;
    int rc = parse_options(argc, argv, &o, &e);
    if (rc == 0) rc = resolve_config(&o, c, &e);
    char sbatch[PATH_MAX];
    if (rc == 0 && !o.dry_run && !slurm_find_program("sbatch", sbatch, sizeof sbatch))
        rc = errorf(&e, "sbatch not found: install Slurm's client or use --dry-run");
    if (rc == 0 && !(run_dir = absolute_run_dir(c->run_dir, o.dry_run, &e))) rc = -1;
    if (rc == 0 && (strlen(run_dir) + 32 >= sizeof c->run_dir || !slurm_sbatch_safe(run_dir)))
        rc = errorf(&e, "run directory '%.300s': Slurm's #SBATCH --output line cannot carry this path; use letters, "
                        "digits and . _ - + / : , = ~ (and keep it under %d bytes)", run_dir, (int)sizeof c->run_dir - 32);
    char config_path[PATH_MAX + 32];
    if (rc == 0) {
        snprintf(c->run_dir, sizeof c->run_dir, "%s", run_dir);
        snprintf(config_path, sizeof config_path, "%s/job-config.yaml", run_dir);
        if (!(script = render_script(&o, run_dir, config_path, &e))) rc = -1;
    }
    if (rc == 0 && o.dry_run) fputs(script, stdout);
    else if (rc == 0) rc = submit(run_dir, config_path, c, script, &e);
    free(script);
    free(run_dir);
    free(o.sets);
    free(c);
    if (rc > 0) return 0;  // --help
    return rc == 0 ? 0 : fail(e.msg);
}

int slurm_main(int argc, char** argv) {
    if (argc >= 2 && strcmp(argv[1], "submit") == 0) return slurm_submit(argc - 1, argv + 1);
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf(SLURM_HELP, SLURM_RESOURCE_HELP);
        return 0;
    }
    return fail("slurm: expected `submit CONFIG.yaml [options]` (see `modrwkv slurm --help`)");
}
