// slurm_sweep.c — `modrwkv sweep submit SWEEP.yaml ...`: a sweep as one Slurm job array (element I runs
// `modrwkv sweep run SWEEP.yaml --index I`) plus a report job that runs after it (--dependency=afterany), and
// the queue part of `modrwkv sweep status` (experiments/slurm_submit.h). Every run's configuration is
// validated before anything is submitted. The scripts, Slurm's output and jobs.json go to
// <runs_dir>/<sweep>/slurm/.
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "experiments/slurm_submit.h"

static const char* SWEEP_SUBMIT_HELP =
    "usage: modrwkv sweep submit SWEEP.yaml [--max-parallel K] [--nodes N] [--gpus-per-node G]\n"
    "                            [--tasks-per-node T] [--cpus-per-task C] [--partition P] [--time T] [--account A]\n"
    "                            [--mpi pmix|pmi2|none|mpirun] [--report | --no-report] [--dry-run]\n"
    "Submits the sweep to Slurm as one job array, element I training run I of `modrwkv sweep expand`\n"
    "(`modrwkv sweep run SWEEP.yaml --index I`: finished runs are skipped, interrupted ones resume), and a\n"
    "report job that writes runs_dir/<name>/report.md once every element has ended (--dependency=afterany).\n"
    "Scripts, Slurm's output and jobs.json (the job ids, read by `modrwkv sweep status`) go to\n"
    "runs_dir/<name>/slurm/. Prints both job ids.\n"
    "  --max-parallel K     at most K runs at once (--array=0-(N-1)%%K; default: no limit)\n"
    "%s"
    "                       (every element gets these resources: a run trains on all its N x T ranks)\n"
    "  --report, --no-report   submit the dependent report job (default) or not\n"
    "  --dry-run            print the two job scripts and the sbatch commands; create and submit nothing\n";

typedef struct SweepSubmitOptions {
    const char* sweep;
    int max_parallel;   // 0: no limit
    int report;
    int dry_run;
    SlurmResources res;
} SweepSubmitOptions;

static int fail(const char* msg) {
    fprintf(stderr, "modrwkv: error: %s\n", msg);
    return 1;
}

// Parses argv (argv[0] = "submit") with the option table opts. Returns 0, 1 after --help, or -1 with e filled.
static int parse_with(int argc, char** argv, const struct option* opts, SweepSubmitOptions* o, Error* e) {
    slurm_resources_default(&o->res);
    o->report = 1;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = slurm_resource_option(&o->res, ch, optarg, e);
        if (r < 0) return -1;
        if (r > 0) continue;
        char* end;
        switch (ch) {
        case 'k':
            o->max_parallel = (int)strtol(optarg, &end, 10);
            if (!*optarg || *end || o->max_parallel < 1)
                return errorf(e, "--max-parallel expects a positive integer, got '%s'", optarg);
            break;
        case 'r': o->report = 1; break;
        case 'R': o->report = 0; break;
        case 'n': o->dry_run = 1; break;
        case 'h': printf(SWEEP_SUBMIT_HELP, SLURM_RESOURCE_HELP); return 1;
        default:
            return errorf(e, "sweep submit: unknown option or missing value in '%s': run `modrwkv sweep submit --help`",
                          argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return errorf(e, "sweep submit: give exactly one SWEEP.yaml (see `modrwkv sweep submit --help`)");
    o->sweep = argv[optind];
    return slurm_resources_check(&o->res, e);
}

static int parse_options(int argc, char** argv, SweepSubmitOptions* o, Error* e) {
    static const struct option OWN[] = {{"max-parallel", 1, 0, 'k'}, {"report", 0, 0, 'r'}, {"no-report", 0, 0, 'R'},
                                        {"dry-run", 0, 0, 'n'},      {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
    struct option* opts = slurm_long_options(OWN);
    int rc = parse_with(argc, argv, opts, o, e);
    free(opts);
    return rc;
}

// Every run's configuration resolves and validates (nothing broken reaches the queue).
static int check_runs(const Sweep* s, Error* e) {
    Config* c = xmalloc(sizeof *c);
    int rc = 0;
    for (int i = 0; i < s->n_runs && rc == 0; i++) {
        Error run_e;
        if (sweep_run_config(s, &s->runs[i], c, &run_e) != 0)
            rc = errorf(e, "sweep %s, run %d (%s): %s", s->name, i, s->runs[i].id, run_e.msg);
    }
    free(c);
    return rc;
}

// <runs_dir>/<name> as an absolute path (created with its slurm/ folder unless dry_run). malloc'ed or NULL.
static char* sweep_dir(const Sweep* s, int dry_run, Error* e) {
    char cwd[PATH_MAX], dir[PATH_MAX + CONFIG_PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        errorf(e, "cannot read the current directory");
        return NULL;
    }
    if (s->runs_dir[0] == '/') snprintf(dir, sizeof dir, "%s/%s", s->runs_dir, s->name);
    else snprintf(dir, sizeof dir, "%s/%s/%s", cwd, s->runs_dir, s->name);
    if (dry_run) return xstrdup(dir);
    char slurm[sizeof dir + 8];
    snprintf(slurm, sizeof slurm, "%s/slurm", dir);
    return mkdir_p(slurm, e) == 0 ? slurm_absolute(dir, e) : NULL;
}

// The two rendered scripts (array, report); returns 0 or -1. The values every template may use are shared.
static int render_scripts(const SweepSubmitOptions* o, const Sweep* s, const char* dir, char** array, char** report,
                          Error* e) {
    char *t_array = slurm_template_find("sweep-array.sbatch", NULL, e), *t_report = NULL;
    if (t_array) t_report = slurm_template_find("report.sbatch", NULL, e);
    char* text_a = t_report ? read_file(t_array, NULL, e) : NULL;
    char* text_r = text_a ? read_file(t_report, NULL, e) : NULL;
    char *exe = slurm_self_exe(), *sweep_abs = text_r ? slurm_absolute(o->sweep, e) : NULL;
    char cwd[PATH_MAX];
    int rc = -1;
    if (sweep_abs && exe && getcwd(cwd, sizeof cwd)) {
        char log_dir[PATH_MAX + CONFIG_PATH_MAX], range[64], name_a[160], name_r[160], launcher[96];
        slurm_launcher_words(o->res.mpi, launcher, sizeof launcher);
        snprintf(log_dir, sizeof log_dir, "%s/slurm", dir);
        if (o->max_parallel > 0) snprintf(range, sizeof range, "0-%d%%%d", s->n_runs - 1, o->max_parallel);
        else snprintf(range, sizeof range, "0-%d", s->n_runs - 1);
        slurm_job_name("modrwkv-sweep-", s->name, name_a, sizeof name_a);
        slurm_job_name("modrwkv-report-", s->name, name_r, sizeof name_r);
        char *q_exe = slurm_shell_quote(exe), *q_sweep = slurm_shell_quote(sweep_abs);
        char *q_dir = slurm_shell_quote(dir), *q_cwd = slurm_shell_quote(cwd);
        SlurmResourceText t;
        SlurmVar vars[20];
        int n = slurm_resource_vars(&o->res, &t, vars);
        const SlurmVar more[] = {{"ARRAY", range},       {"LOG_DIR", log_dir},  {"MODRWKV", q_exe}, {"SWEEP", q_sweep},
                                 {"SWEEP_DIR", q_dir},   {"WORKDIR", q_cwd},    {"LAUNCHER", launcher},
                                 {"JOB_NAME", name_a}};
        for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) vars[n++] = more[i];
        *array = slurm_template_render(text_a, t_array, vars, n, e);
        vars[n - 1].value = name_r;
        *report = *array ? slurm_template_render(text_r, t_report, vars, n, e) : NULL;
        rc = *report ? 0 : -1;
        free(q_exe);
        free(q_sweep);
        free(q_dir);
        free(q_cwd);
    } else if (text_r && sweep_abs) {
        errorf(e, "cannot find this executable or the current directory");
    }
    free(exe);
    free(sweep_abs);
    free(text_a);
    free(text_r);
    free(t_array);
    free(t_report);
    return rc;
}

// jobs.json: the submitted job ids and the run ids in array-index order.
static int write_jobs_json(const Sweep* s, const char* dir, const char* array_id, const char* report_id, Error* e) {
    json_t* root = json_object();
    json_object_set_new(root, "array_job", json_string(array_id));
    json_object_set_new(root, "report_job", report_id ? json_string(report_id) : json_null());
    json_object_set_new(root, "n_runs", json_integer(s->n_runs));
    json_t* runs = json_array();
    for (int i = 0; i < s->n_runs; i++) json_array_append_new(runs, json_string(s->runs[i].id));
    json_object_set_new(root, "runs", runs);
    char* text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    char path[PATH_MAX + CONFIG_PATH_MAX];
    snprintf(path, sizeof path, "%s/slurm/jobs.json", dir);
    int rc = write_file_atomic(path, text, strlen(text), e);
    free(text);
    return rc;
}

// Writes both scripts, submits the array, then the report job after it; records the ids.
static int submit(const SweepSubmitOptions* o, const Sweep* s, const char* dir, const char* array, const char* report,
                  Error* e) {
    char p_array[PATH_MAX + CONFIG_PATH_MAX], p_report[PATH_MAX + CONFIG_PATH_MAX], id_a[64], id_r[64], dep[96];
    snprintf(p_array, sizeof p_array, "%s/slurm/array.sbatch", dir);
    snprintf(p_report, sizeof p_report, "%s/slurm/report.sbatch", dir);
    if (write_file_atomic(p_array, array, strlen(array), e) != 0 ||
        (o->report && write_file_atomic(p_report, report, strlen(report), e) != 0) ||
        slurm_sbatch(p_array, NULL, 0, id_a, sizeof id_a, e) != 0)
        return -1;
    printf("sweep %s: %d runs submitted as array job %s (scripts and Slurm's output in %s/slurm)\n", s->name, s->n_runs,
           id_a, dir);
    int rc = 0;
    if (o->report) {
        snprintf(dep, sizeof dep, "--dependency=afterany:%s", id_a);
        const char* extra[1] = {dep};
        Error re;
        rc = slurm_sbatch(p_report, extra, 1, id_r, sizeof id_r, &re);
        if (rc == 0) printf("report job %s runs after array job %s: %s/report.md\n", id_r, id_a, dir);
        else errorf(e, "array job %s is queued, but the report job was not: %s", id_a, re.msg);
    }
    Error je;
    if (write_jobs_json(s, dir, id_a, o->report && rc == 0 ? id_r : NULL, &je) != 0 && rc == 0)
        rc = errorf(e, "the jobs were submitted (array %s) but %s", id_a, je.msg);
    return rc;
}

static void print_dry_run(const SweepSubmitOptions* o, const char* dir, const char* array, const char* report) {
    printf("# array job: sbatch --parsable %s/slurm/array.sbatch\n%s", dir, array);
    if (o->report)
        printf("# report job: sbatch --parsable --dependency=afterany:<array job id> %s/slurm/report.sbatch\n%s", dir,
               report);
}

int sweep_submit_main(int argc, char** argv) {
    SweepSubmitOptions o;
    memset(&o, 0, sizeof o);
    Error e = {{0}};
    Sweep s;
    memset(&s, 0, sizeof s);
    char *dir = NULL, *array = NULL, *report = NULL, sbatch[PATH_MAX];
    int rc = parse_options(argc, argv, &o, &e);
    if (rc == 0) rc = sweep_load(&s, o.sweep, &e);
    if (rc == 0) rc = check_runs(&s, &e);
    if (rc == 0 && !o.dry_run && !slurm_find_program("sbatch", sbatch, sizeof sbatch))
        rc = errorf(&e, "sbatch not found: install Slurm's client or use --dry-run");
    if (rc == 0 && !(dir = sweep_dir(&s, o.dry_run, &e))) rc = -1;
    if (rc == 0 && !slurm_sbatch_safe(dir))
        rc = errorf(&e, "sweep directory '%.300s': Slurm's #SBATCH --output line cannot carry this path; use letters, "
                        "digits and . _ - + / : , = ~", dir);
    if (rc == 0) rc = render_scripts(&o, &s, dir, &array, &report, &e);
    if (rc == 0 && o.dry_run) print_dry_run(&o, dir, array, report);
    else if (rc == 0) rc = submit(&o, &s, dir, array, report, &e);
    free(dir);
    free(array);
    free(report);
    sweep_free(&s);
    if (rc > 0) return 0;  // --help
    return rc == 0 ? 0 : fail(e.msg);
}

// ---------------------------------------------------------------------------------------------------- status

// `squeue -h [-r] -j ID -o "%i %T"`: one "JOBID[_INDEX] STATE" line per queued job or array element (""
// once Slurm has forgotten the job: squeue's "Invalid job id"). NULL with why filled when squeue failed
// otherwise (no controller reachable, ...).
static char* squeue_lines(const char* id, int array, Error* why) {
    char* argv[] = {"squeue", "-h", "-j", (char*)id, "-o", "%i %T", array ? "-r" : NULL, NULL};
    char *out = NULL, *err = NULL;
    int rc = slurm_run(argv, &out, &err, why);
    if (rc > 0 && err && strstr(err, "Invalid job id")) {  // finished long ago: nothing of it is queued
        rc = 0;
        out[0] = 0;
    }
    if (rc != 0) {
        if (rc > 0) errorf(why, "%.300s", err && *err ? err : "squeue failed");
        free(out);
        out = NULL;
    }
    free(err);
    return out;
}

// The queued/running elements of the array job, one line each with the run id of their index.
static void print_array_queue(const char* id, json_t* runs, FILE* f) {
    Error why;
    char* out = squeue_lines(id, 1, &why);
    if (!out) {
        fprintf(f, "  squeue failed, the queue state is not shown: %s\n", why.msg);
        return;
    }
    int shown = 0;
    char* save = NULL;
    for (char* line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char job[64], state[64];
        if (sscanf(line, "%63s %63s", job, state) != 2) continue;
        const char* us = strchr(job, '_');
        int index = us ? atoi(us + 1) : -1;
        const char* run = index >= 0 ? json_string_value(json_array_get(runs, (size_t)index)) : NULL;
        fprintf(f, "  %-12s %-10s %s\n", job, state, run ? run : "(elements not yet split by Slurm)");
        shown++;
    }
    if (shown == 0) fprintf(f, "  no element of array job %s is queued or running\n", id);
    free(out);
}

static void print_report_queue(const char* id, FILE* f) {
    Error why;
    char job[64], state[64];
    char* out = squeue_lines(id, 0, &why);
    if (!out) fprintf(f, "  squeue failed for the report job: %s\n", why.msg);
    else if (sscanf(out, "%63s %63s", job, state) == 2) fprintf(f, "  %-12s %-10s report\n", job, state);
    else fprintf(f, "  report job %s is no longer queued\n", id);
    free(out);
}

void sweep_print_slurm_queue(const Sweep* s, FILE* f) {
    char path[PATH_MAX + CONFIG_PATH_MAX], squeue[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s/slurm/jobs.json", s->runs_dir, s->name);
    json_t* jobs = json_load_file(path, 0, NULL);
    if (!jobs) return;
    const char* array = json_string_value(json_object_get(jobs, "array_job"));
    const char* report = json_string_value(json_object_get(jobs, "report_job"));
    if (array) {
        fprintf(f, "slurm: array job %s%s%s (%s)\n", array, report ? ", report job " : "", report ? report : "", path);
        if (!slurm_find_program("squeue", squeue, sizeof squeue)) {
            fprintf(f, "  squeue not found: the queue state is not shown\n");
        } else {
            print_array_queue(array, json_object_get(jobs, "runs"), f);
            if (report) print_report_queue(report, f);
        }
    }
    json_decref(jobs);
}
