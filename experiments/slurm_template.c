// slurm_template.c — finding and rendering the sbatch templates of slurm/ and checking the job's resources
// (experiments/slurm_submit.h: placeholder syntax, lookup order, what values may contain).
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "experiments/slurm_submit.h"

void slurm_resources_default(SlurmResources* r) {
    memset(r, 0, sizeof *r);
    r->nodes = 1;
    r->signal_before_s = 300;
    r->mpi = "pmix";
}

const char* SLURM_RESOURCE_HELP =
    "  --nodes N            nodes (1)\n"
    "  --gpus-per-node G    GPUs per node; 0 = a CPU job, no GPU request (0)\n"
    "  --tasks-per-node T   ranks per node (G on GPU nodes: one rank per GPU; 1 on CPUs)\n"
    "  --cpus-per-task C    CPU cores per rank (the cluster's default)\n"
    "  --partition P, --time T, --account A   the job's partition, time limit (MINUTES, HH:MM:SS,\n"
    "                       DAYS-HH:MM:SS) and account (the cluster's defaults)\n"
    "  --signal-before S    SIGUSR1 S seconds before the time limit: checkpoint, then requeue (300)\n";

// A strictly parsed non-negative integer option value.
static int parse_count(const char* opt, const char* arg, int* out, Error* e) {
    char* end;
    long v = strtol(arg, &end, 10);
    if (!*arg || *end || v < 0 || v > 1000000) return errorf(e, "--%s expects a non-negative integer, got '%s'", opt, arg);
    *out = (int)v;
    return 0;
}

int slurm_resource_option(SlurmResources* r, int code, const char* arg, Error* e) {
    int rc = 0;
    switch (code) {
    case SLURM_OPT_NODES: rc = parse_count("nodes", arg, &r->nodes, e); break;
    case SLURM_OPT_GPUS: rc = parse_count("gpus-per-node", arg, &r->gpus_per_node, e); break;
    case SLURM_OPT_TASKS: rc = parse_count("tasks-per-node", arg, &r->tasks_per_node, e); break;
    case SLURM_OPT_CPUS: rc = parse_count("cpus-per-task", arg, &r->cpus_per_task, e); break;
    case SLURM_OPT_SIGNAL_BEFORE: rc = parse_count("signal-before", arg, &r->signal_before_s, e); break;
    case SLURM_OPT_PARTITION: r->partition = arg; break;
    case SLURM_OPT_TIME: r->time = arg; break;
    case SLURM_OPT_ACCOUNT: r->account = arg; break;
    case SLURM_OPT_MPI: r->mpi = arg; break;
    default: return 0;
    }
    return rc == 0 ? 1 : -1;
}

int slurm_tasks_per_node(const SlurmResources* r) {
    if (r->tasks_per_node > 0) return r->tasks_per_node;
    return r->gpus_per_node > 0 ? r->gpus_per_node : 1;
}

// "#SBATCH --NAME=VALUE" into out, or "" when value is absent.
static void optional_line(char* out, size_t size, const char* name, const char* value) {
    if (value) snprintf(out, size, "#SBATCH --%s=%s", name, value);
    else out[0] = 0;
}

int slurm_resource_vars(const SlurmResources* r, SlurmResourceText* t, SlurmVar* vars) {
    snprintf(t->nodes, sizeof t->nodes, "%d", r->nodes);
    snprintf(t->tasks, sizeof t->tasks, "%d", slurm_tasks_per_node(r));
    snprintf(t->signal, sizeof t->signal, "%d", r->signal_before_s);
    char gpus[16], cpus[16];
    snprintf(gpus, sizeof gpus, "%d", r->gpus_per_node);
    snprintf(cpus, sizeof cpus, "%d", r->cpus_per_task);
    optional_line(t->gpus, sizeof t->gpus, "gpus-per-node", r->gpus_per_node > 0 ? gpus : NULL);
    optional_line(t->cpus, sizeof t->cpus, "cpus-per-task", r->cpus_per_task > 0 ? cpus : NULL);
    optional_line(t->partition, sizeof t->partition, "partition", r->partition);
    optional_line(t->time, sizeof t->time, "time", r->time);
    optional_line(t->account, sizeof t->account, "account", r->account);
    const SlurmVar v[8] = {{"NODES", t->nodes},         {"TASKS_PER_NODE", t->tasks},  {"SIGNAL_BEFORE", t->signal},
                           {"SBATCH_GPUS", t->gpus},     {"SBATCH_CPUS", t->cpus},      {"SBATCH_PARTITION", t->partition},
                           {"SBATCH_TIME", t->time},     {"SBATCH_ACCOUNT", t->account}};
    memcpy(vars, v, sizeof v);
    return 8;
}

int slurm_sbatch_safe(const char* s) {
    for (const unsigned char* p = (const unsigned char*)s; *p; p++)
        if (!isalnum(*p) && !strchr("._-+/:,=~", *p)) return 0;
    return 1;
}

void slurm_job_name(const char* prefix, const char* path, char* out, size_t size) {
    const char* base = strrchr(path, '/');
    snprintf(out, size, "%s%s", prefix, base ? base + 1 : path);
    for (char* p = out; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-') *p = '_';
}

// A value for an #SBATCH line: non-empty and made of characters sbatch passes through unchanged.
static int check_token(const char* what, const char* v, Error* e) {
    if (!v) return 0;
    if (!*v || strlen(v) > 256 || !slurm_sbatch_safe(v))
        return errorf(e, "%s '%.300s': use up to 256 letters, digits and . _ - + / : , = ~ (it goes into an #SBATCH "
                      "line)", what, v);
    return 0;
}

int slurm_resources_check(const SlurmResources* r, Error* e) {
    if (r->nodes < 1) return errorf(e, "--nodes must be at least 1 (got %d)", r->nodes);
    if (r->gpus_per_node < 0) return errorf(e, "--gpus-per-node must be 0 (CPU) or more (got %d)", r->gpus_per_node);
    if (r->tasks_per_node < 0) return errorf(e, "--tasks-per-node must be at least 1 (got %d)", r->tasks_per_node);
    if (r->cpus_per_task < 0) return errorf(e, "--cpus-per-task must be at least 1 (got %d)", r->cpus_per_task);
    if (r->signal_before_s < 0) return errorf(e, "--signal-before must be 0 or more seconds (got %d)", r->signal_before_s);
    const char* mpis[] = {"pmix", "pmi2", "none", "mpirun"};
    int known = 0;
    for (int i = 0; i < 4; i++) known |= strcmp(r->mpi, mpis[i]) == 0;
    if (!known) return errorf(e, "--mpi must be pmix, pmi2, none or mpirun (got '%s')", r->mpi);
    if (r->time && strspn(r->time, "0123456789:-") != strlen(r->time))
        return errorf(e, "--time '%s': use Slurm's forms MINUTES, HH:MM:SS or DAYS-HH:MM:SS", r->time);
    if (check_token("--time", r->time, e) || check_token("--partition", r->partition, e) ||
        check_token("--account", r->account, e))
        return -1;
    int ranks = r->nodes * slurm_tasks_per_node(r);
    if (strcmp(r->mpi, "none") == 0 && ranks > 1)
        return errorf(e, "--mpi none starts %d independent processes that would not train together: use pmix (or "
                         "mpirun) for more than one rank", ranks);
    return 0;
}

struct option* slurm_long_options(const struct option* extra) {
    static const struct option RESOURCES[] = {
        {"nodes", 1, 0, SLURM_OPT_NODES},          {"gpus-per-node", 1, 0, SLURM_OPT_GPUS},
        {"tasks-per-node", 1, 0, SLURM_OPT_TASKS}, {"cpus-per-task", 1, 0, SLURM_OPT_CPUS},
        {"partition", 1, 0, SLURM_OPT_PARTITION},  {"time", 1, 0, SLURM_OPT_TIME},
        {"account", 1, 0, SLURM_OPT_ACCOUNT},      {"mpi", 1, 0, SLURM_OPT_MPI},
        {"signal-before", 1, 0, SLURM_OPT_SIGNAL_BEFORE}};
    size_t n_res = sizeof RESOURCES / sizeof RESOURCES[0], n_extra = 0;
    while (extra[n_extra].name) n_extra++;
    struct option* all = xmalloc((n_res + n_extra + 1) * sizeof *all);
    memcpy(all, RESOURCES, sizeof RESOURCES);
    memcpy(all + n_res, extra, (n_extra + 1) * sizeof *all);  // with the terminator
    return all;
}

// ---------------------------------------------------------------------------------------------------- lookup

static int readable(const char* path) { return access(path, R_OK) == 0; }

// Appends "<dir>/<name>" to the candidates (and the message listing them).
static void candidate(char out[][PATH_MAX], int* n, const char* dir, const char* sub, const char* name) {
    snprintf(out[*n], PATH_MAX, "%s%s/%s", dir, sub, name);
    (*n)++;
}

char* slurm_template_find(const char* name, const char* explicit_path, Error* e) {
    if (explicit_path) {
        if (readable(explicit_path)) return xstrdup(explicit_path);
        errorf(e, "--template %s: cannot read the file", explicit_path);
        return NULL;
    }
    char tried[4][PATH_MAX];
    int n = 0;
    const char* env = getenv("MODRWKV_SLURM_DIR");
    if (env && *env) candidate(tried, &n, env, "", name);
    char* exe = slurm_self_exe();
    char* slash = exe ? strrchr(exe, '/') : NULL;
    if (slash) {
        *slash = 0;
        candidate(tried, &n, exe, "/../slurm", name);
        candidate(tried, &n, exe, "/../share/modrwkv/slurm", name);
    }
    free(exe);
#ifdef MODRWKV_SOURCE_DIR
    candidate(tried, &n, MODRWKV_SOURCE_DIR, "/slurm", name);
#endif
    for (int i = 0; i < n; i++)
        if (readable(tried[i])) return xstrdup(tried[i]);
    char list[4 * PATH_MAX + 64] = "";
    for (int i = 0; i < n; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, tried[i], sizeof list - strlen(list) - 1);
    }
    errorf(e, "the sbatch template %s was not found (tried %s): set MODRWKV_SLURM_DIR to the slurm/ folder of "
              "modrwkv or pass --template FILE", name, n ? list : "nothing");
    return NULL;
}

// ---------------------------------------------------------------------------------------------------- rendering

typedef struct Buf {
    char* p;
    size_t len, cap;
} Buf;

static void buf_add(Buf* b, const char* s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

// The length of the placeholder name at s (after an '@'), or 0 when s does not start "NAME@".
static size_t placeholder_len(const char* s) {
    size_t n = 0;
    while (isupper((unsigned char)s[n]) || isdigit((unsigned char)s[n]) || s[n] == '_') n++;
    return n > 0 && s[n] == '@' ? n : 0;
}

static const SlurmVar* find_var(const SlurmVar* vars, int n_vars, const char* name, size_t len) {
    for (int i = 0; i < n_vars; i++)
        if (strlen(vars[i].name) == len && strncmp(vars[i].name, name, len) == 0) return &vars[i];
    return NULL;
}

// Renders one line (without its '\n') into b. Returns 0, or -1 for an unknown placeholder.
static int render_line(Buf* b, const char* line, size_t len, const char* path, int lineno, const SlurmVar* vars,
                       int n_vars, Error* e) {
    size_t start = b->len;
    int placeholders = 0, only_placeholder = 1;
    for (size_t i = 0; i < len; i++) {
        size_t n = line[i] == '@' ? placeholder_len(line + i + 1) : 0;
        if (n == 0 || i + n + 1 >= len) {  // not a placeholder: copied as is
            if (!isspace((unsigned char)line[i])) only_placeholder = 0;
            buf_add(b, line + i, 1);
            continue;
        }
        const SlurmVar* v = find_var(vars, n_vars, line + i + 1, n);
        if (!v) return errorf(e, "%s:%d: unknown placeholder @%.*s@ (see the list at the top of the template)", path,
                              lineno, (int)n, line + i + 1);
        buf_add(b, v->value, strlen(v->value));
        if (*v->value) only_placeholder = 0;
        placeholders++;
        i += n + 1;
    }
    if (placeholders > 0 && only_placeholder) {
        b->len = start;  // an optional line whose value is empty
        b->p[start] = 0;
        return 0;
    }
    buf_add(b, "\n", 1);
    return 0;
}

char* slurm_template_render(const char* text, const char* path, const SlurmVar* vars, int n_vars, Error* e) {
    Buf b = {NULL, 0, 0};
    buf_add(&b, "", 0);
    int lineno = 0;
    for (const char* line = text; *line;) {
        const char* nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (render_line(&b, line, len, path, ++lineno, vars, n_vars, e) != 0) {
            free(b.p);
            return NULL;
        }
        line += len + (nl ? 1 : 0);
    }
    return b.p;
}

char* slurm_shell_quote(const char* s) {
    Buf b = {NULL, 0, 0};
    buf_add(&b, "'", 1);
    for (const char* p = s; *p; p++) {
        if (*p == '\'') buf_add(&b, "'\\''", 4);
        else buf_add(&b, p, 1);
    }
    buf_add(&b, "'", 1);
    return b.p;
}
