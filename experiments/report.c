// report.c — the data of a sweep report (experiments/report.h): reading the run directories (sweep.json,
// metrics.jsonl, eval*.json, DONE), the metric columns, best-per-metric marks, ablation tables and escaping.
#include "experiments/report.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// ---------------------------------------------------------------------------------------------------- helpers

static char* path_join(const char* a, const char* b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int file_exists(const char* path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int is_dir(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static double json_num(const json_t* obj, const char* key) {
    const json_t* v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static void curve_add(ReportCurve* c, double step, double value) {
    while (c->n > 0 && c->step[c->n - 1] >= step) c->n--;   // a resumed run replays steps: keep the newest
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->step = xrealloc(c->step, (size_t)c->cap * sizeof *c->step);
        c->value = xrealloc(c->value, (size_t)c->cap * sizeof *c->value);
    }
    c->step[c->n] = step;
    c->value[c->n] = value;
    c->n++;
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static double median(double* v, int n) {
    if (n == 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ---------------------------------------------------------------------------------------------------- metrics.jsonl

typedef struct Samples {
    int n, cap;
    double* v;
} Samples;

static void samples_add(Samples* s, double x) {
    if (!isfinite(x)) return;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = xrealloc(s->v, (size_t)s->cap * sizeof *s->v);
    }
    s->v[s->n++] = x;
}

static void metrics_line(ReportRun* run, const json_t* j, Samples* tps, Samples* mfu) {
    double step = json_num(j, "step");
    double val = json_num(j, "val_loss"), loss = json_num(j, "loss");
    if (isfinite(step) && isfinite(val)) curve_add(&run->val, step, val);
    if (isfinite(step) && isfinite(loss)) curve_add(&run->loss, step, loss);
    samples_add(tps, json_num(j, "tokens_per_s"));
    samples_add(mfu, json_num(j, "mfu"));
    if (isfinite(json_num(j, "mfu"))) run->gpu = 1;
    const char* device = json_string_value(json_object_get(j, "device"));
    if (device && strncmp(device, "cuda", 4) == 0) run->gpu = 1;
    double el = json_num(j, "elapsed_s"), gpus = json_num(j, "gpus"), world = json_num(j, "world");
    if (isfinite(el)) run->elapsed_s = el;
    double devices = isfinite(gpus) && gpus > 0 ? gpus : world;   // GPUs, else processes
    if (isfinite(devices) && devices > 0) run->devices = devices;
    double pt = json_num(j, "params_total"), pr = json_num(j, "params_trained");
    if (isfinite(pt)) run->params_total = pt;
    if (isfinite(pr)) run->params_trained = pr;
}

// Reads metrics.jsonl when present (a missing file is a run that has not logged yet).
static int load_metrics(ReportRun* run, Error* e) {
    char* path = path_join(run->dir, "metrics.jsonl");
    FILE* f = fopen(path, "r");
    free(path);
    if (!f) return 0;
    Samples tps = {0}, mfu = {0};
    char* line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        json_t* j = json_loads(line, 0, NULL);
        if (json_is_object(j)) metrics_line(run, j, &tps, &mfu);
        else run->skipped_lines++;
        json_decref(j);
    }
    free(line);
    fclose(f);
    if (run->loss.n > 0) run->train_loss = run->loss.value[run->loss.n - 1];
    if (run->val.n > 0) run->val_loss = run->val.value[run->val.n - 1];
    run->tokens_per_s = median(tps.v, tps.n);
    run->mfu = median(mfu.v, mfu.n);
    free(tps.v);
    free(mfu.v);
    return 0;
}

// ---------------------------------------------------------------------------------------------------- sweep.json

static json_t* load_json_object(const char* path, Error* e) {
    json_error_t je;
    json_t* j = json_load_file(path, 0, &je);
    if (!j) return errorf(e, "%s: line %d: %s: fix or remove the file", path, je.line, je.text), NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        return errorf(e, "%s: expected a JSON object: fix or remove the file", path), NULL;
    }
    return j;
}

static int load_sweep_json(ReportRun* run, const char* dirname, char** sweep_name, Error* e) {
    char* path = path_join(run->dir, "sweep.json");
    if (!file_exists(path)) {
        free(path);
        run->id = xstrdup(dirname);
        return 0;
    }
    json_t* j = load_json_object(path, e);
    if (!j) return free(path), -1;
    const char* id = json_string_value(json_object_get(j, "run_id"));
    run->id = xstrdup(id ? id : dirname);
    const char* sweep = json_string_value(json_object_get(j, "sweep"));
    if (sweep && !*sweep_name) *sweep_name = xstrdup(sweep);
    json_t* params = json_object_get(j, "params");
    int rc = 0;
    if (params && !json_is_object(params)) rc = errorf(e, "%s: \"params\" must be an object of strings", path);
    const char* key;
    json_t* v;
    if (rc == 0) {
        run->param_keys = xcalloc(json_object_size(params) + 1, sizeof(char*));
        run->param_values = xcalloc(json_object_size(params) + 1, sizeof(char*));
        json_object_foreach(params, key, v) {
            char num[64];
            const char* s = json_string_value(v);
            if (!s && json_is_number(v)) snprintf(num, sizeof num, "%.9g", json_number_value(v)), s = num;
            if (!s && json_is_boolean(v)) s = json_is_true(v) ? "true" : "false";
            if (!s) {
                rc = errorf(e, "%s: params.%s must be a string or a number", path, key);
                break;
            }
            run->param_keys[run->n_params] = xstrdup(key);
            run->param_values[run->n_params++] = xstrdup(s);
        }
    }
    json_decref(j);
    free(path);
    return rc;
}

// ---------------------------------------------------------------------------------------------------- eval*.json

static void add_eval(ReportRun* run, const char* prefix, const char* metric, double value, int64_t n,
                     const json_t* ci) {
    run->evals = xrealloc(run->evals, (size_t)(run->n_evals + 1) * sizeof *run->evals);
    ReportEval* ev = &run->evals[run->n_evals++];
    size_t len = strlen(prefix) + strlen(metric) + 2;
    ev->metric = xmalloc(len);
    snprintf(ev->metric, len, "%s%s%s", prefix, *prefix ? " " : "", metric);
    ev->value = value;
    ev->n = n;
    const json_t* lo = json_array_get(ci, 0);   // NULL when ci is not an array
    const json_t* hi = json_array_get(ci, 1);
    ev->lo = json_is_number(lo) ? json_number_value(lo) : NAN;
    ev->hi = json_is_number(hi) ? json_number_value(hi) : NAN;
}

static int load_eval(ReportRun* run, const char* file, Error* e) {
    char* path = path_join(run->dir, file);
    json_t* j = load_json_object(path, e);
    if (!j) return free(path), -1;
    const char* metric = json_string_value(json_object_get(j, "metric"));
    const json_t* value = json_object_get(j, "value");
    int rc = 0;
    if (!metric || !(json_is_number(value) || json_is_null(value))) {
        rc = errorf(e, "%s: expected \"metric\" (a string) and \"value\" (a number), as `modrwkv eval` writes", path);
    } else {
        char prefix[256] = "";
        if (strcmp(file, "eval.json") != 0) snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(file) - 10), file + 5);
        json_t* n = json_object_get(j, "n");
        int64_t count = json_is_integer(n) ? (int64_t)json_integer_value(n) : -1;
        add_eval(run, prefix, metric, json_is_number(value) ? json_number_value(value) : NAN, count,
                 json_object_get(j, "ci95"));
        if (json_is_number(json_object_get(j, "cer")))
            add_eval(run, prefix, "cer", json_number_value(json_object_get(j, "cer")), -1, json_object_get(j, "cer_ci95"));
    }
    json_decref(j);
    free(path);
    return rc;
}

static int is_eval_file(const char* name) {
    size_t n = strlen(name);
    if (strcmp(name, "eval.json") == 0) return 1;
    return n > 10 && strncmp(name, "eval-", 5) == 0 && strcmp(name + n - 5, ".json") == 0;
}

static int cmp_str(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

// Names of a directory's entries (sorted, NULL-terminated), or NULL with e filled.
static char** list_dir(const char* path, int* n, Error* e) {
    DIR* d = opendir(path);
    if (!d) return errorf(e, "%s: cannot read the directory: %s", path, strerror(errno)), NULL;
    char** names = NULL;
    *n = 0;
    struct dirent* de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        names = xrealloc(names, (size_t)(*n + 2) * sizeof *names);
        names[(*n)++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (*n > 1) qsort(names, (size_t)*n, sizeof *names, cmp_str);
    if (!names) names = xmalloc(sizeof *names);
    names[*n] = NULL;
    return names;
}

static void free_names(char** names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static int load_evals(ReportRun* run, Error* e) {
    int n;
    char** names = list_dir(run->dir, &n, e);
    if (!names) return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        if (is_eval_file(names[i])) rc = load_eval(run, names[i], e);
    free_names(names, n);
    return rc;
}

// ---------------------------------------------------------------------------------------------------- runs

static void run_init(ReportRun* run, const char* dir) {
    memset(run, 0, sizeof *run);
    run->dir = xstrdup(dir);
    run->train_loss = run->val_loss = run->tokens_per_s = run->mfu = run->elapsed_s = NAN;
    run->params_total = run->params_trained = NAN;
    run->devices = 1;
}

static void run_free(ReportRun* run) {
    free(run->id);
    free(run->dir);
    for (int i = 0; i < run->n_params; i++) free(run->param_keys[i]), free(run->param_values[i]);
    free(run->param_keys);
    free(run->param_values);
    free(run->loss.step), free(run->loss.value), free(run->val.step), free(run->val.value);
    for (int i = 0; i < run->n_evals; i++) free(run->evals[i].metric);
    free(run->evals);
}

static int load_run(Report* r, const char* name, Error* e) {
    char* dir = path_join(r->dir, name);
    char* metrics = path_join(dir, "metrics.jsonl");
    char* sweep = path_join(dir, "sweep.json");
    int is_run = is_dir(dir) && (file_exists(metrics) || file_exists(sweep));
    free(metrics);
    free(sweep);
    if (!is_run) return free(dir), 0;
    r->runs = xrealloc(r->runs, (size_t)(r->n_runs + 1) * sizeof *r->runs);
    ReportRun* run = &r->runs[r->n_runs++];
    run_init(run, dir);
    char* done = path_join(dir, "DONE");
    run->done = file_exists(done);
    free(done);
    free(dir);
    if (load_sweep_json(run, name, &r->sweep, e) != 0) return -1;
    if (load_metrics(run, e) != 0) return -1;
    return load_evals(run, e);
}

static int cmp_run(const void* a, const void* b) {
    return strcmp(((const ReportRun*)a)->id, ((const ReportRun*)b)->id);
}

static int has_name(char** names, int n, const char* s) {
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0) return 1;
    return 0;
}

static void collect_columns(Report* r) {
    for (int i = 0; i < r->n_runs; i++) {
        const ReportRun* run = &r->runs[i];
        for (int k = 0; k < run->n_params; k++) {
            if (has_name(r->axes, r->n_axes, run->param_keys[k])) continue;
            r->axes = xrealloc(r->axes, (size_t)(r->n_axes + 1) * sizeof *r->axes);
            r->axes[r->n_axes++] = xstrdup(run->param_keys[k]);
        }
    }
    if (r->n_axes > 1) qsort(r->axes, (size_t)r->n_axes, sizeof *r->axes, cmp_str);
    r->metrics = xmalloc(2 * sizeof *r->metrics);
    r->metrics[r->n_metrics++] = xstrdup("train loss");
    r->metrics[r->n_metrics++] = xstrdup("val loss");
    for (int i = 0; i < r->n_runs; i++) {
        for (int k = 0; k < r->runs[i].n_evals; k++) {
            const char* m = r->runs[i].evals[k].metric;
            if (has_name(r->metrics, r->n_metrics, m)) continue;
            r->metrics = xrealloc(r->metrics, (size_t)(r->n_metrics + 1) * sizeof *r->metrics);
            r->metrics[r->n_metrics++] = xstrdup(m);
        }
    }
}

static char* base_name(const char* dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && dir[start - 1] != '/') start--;
    char* s = xmalloc(n - start + 1);
    memcpy(s, dir + start, n - start);
    s[n - start] = '\0';
    return s;
}

int report_load(const char* sweep_dir, Report* r, Error* e) {
    memset(r, 0, sizeof *r);
    r->dir = xstrdup(sweep_dir);
    int n;
    char** names = list_dir(sweep_dir, &n, e);
    if (!names) return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) rc = load_run(r, names[i], e);
    free_names(names, n);
    if (rc != 0) return -1;
    if (r->n_runs == 0)
        return errorf(e, "%s: no run directories (subdirectories with metrics.jsonl or sweep.json): "
                      "give the directory of a sweep (runs/<sweep>)", sweep_dir);
    if (!r->sweep) r->sweep = base_name(sweep_dir);
    qsort(r->runs, (size_t)r->n_runs, sizeof *r->runs, cmp_run);
    collect_columns(r);
    return 0;
}

void report_free(Report* r) {
    for (int i = 0; i < r->n_runs; i++) run_free(&r->runs[i]);
    free(r->runs);
    free_names(r->axes, r->n_axes);
    free_names(r->metrics, r->n_metrics);
    free(r->dir);
    free(r->sweep);
    memset(r, 0, sizeof *r);
}

// ---------------------------------------------------------------------------------------------------- columns

double report_run_metric(const ReportRun* run, const char* metric) {
    if (strcmp(metric, "train loss") == 0) return run->train_loss;
    if (strcmp(metric, "val loss") == 0) return run->val_loss;
    for (int i = 0; i < run->n_evals; i++)
        if (strcmp(run->evals[i].metric, metric) == 0) return run->evals[i].value;
    return NAN;
}

const char* report_run_param(const ReportRun* run, const char* key) {
    for (int i = 0; i < run->n_params; i++)
        if (strcmp(run->param_keys[i], key) == 0) return run->param_values[i];
    return NULL;
}

static int ends_with_word(const char* s, const char* word) {
    size_t n = strlen(s), w = strlen(word);
    return n >= w && strcmp(s + n - w, word) == 0 && (n == w || s[n - w - 1] == ' ' || s[n - w - 1] == '_');
}

int report_lower_is_better(const char* metric) {
    return strstr(metric, "loss") != NULL || ends_with_word(metric, "wer") || ends_with_word(metric, "cer") ||
           ends_with_word(metric, "perplexity") || ends_with_word(metric, "mse") || ends_with_word(metric, "mae");
}

void report_mark_best(const double* v, int n, int lower_is_better, unsigned char* best) {
    double b = NAN;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        if (!isfinite(b) || (lower_is_better ? v[i] < b : v[i] > b)) b = v[i];
    }
    for (int i = 0; i < n; i++) best[i] = isfinite(b) && v[i] == b;
}

// ---------------------------------------------------------------------------------------------------- ablations

typedef struct RowSet {
    int n;
    char** labels;
    double* sum;           // (n, cols)
    int* count;            // (n, cols) runs with the metric
    int* runs;             // (n) runs in the row
} RowSet;

static int rowset_row(RowSet* s, const char* label, int cols) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->labels[i], label) == 0) return i;
    s->labels = xrealloc(s->labels, (size_t)(s->n + 1) * sizeof *s->labels);
    s->sum = xrealloc(s->sum, (size_t)(s->n + 1) * cols * sizeof *s->sum);
    s->count = xrealloc(s->count, (size_t)(s->n + 1) * cols * sizeof *s->count);
    s->runs = xrealloc(s->runs, (size_t)(s->n + 1) * sizeof *s->runs);
    s->labels[s->n] = xstrdup(label);
    for (int c = 0; c < cols; c++) s->sum[s->n * cols + c] = 0, s->count[s->n * cols + c] = 0;
    s->runs[s->n] = 0;
    return s->n++;
}

// Row order: numbers by value when both labels are numbers, otherwise by text (insertion sort: few rows).
static int label_before(const char* a, const char* b) {
    char *ea, *eb;
    double x = strtod(a, &ea), y = strtod(b, &eb);
    if (*a && *b && !*ea && !*eb && x != y) return x < y;
    return strcmp(a, b) < 0;
}

static void sort_rows(int* order, int n, char** labels) {
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && label_before(labels[order[k]], labels[order[k - 1]]); k--) {
            int tmp = order[k];
            order[k] = order[k - 1];
            order[k - 1] = tmp;
        }
}

// Adds the runs selected by `member` (NULL: all) to a table with rows = values of axis.
static ReportTable make_table(const Report* r, const char* axis, const char* title, const unsigned char* member) {
    int cols = r->n_metrics;
    RowSet s = {0};
    for (int i = 0; i < r->n_runs; i++) {
        if (member && !member[i]) continue;
        const char* v = report_run_param(&r->runs[i], axis);
        int row = rowset_row(&s, v ? v : "(not set)", cols);
        s.runs[row]++;
        for (int c = 0; c < cols; c++) {
            double x = report_run_metric(&r->runs[i], r->metrics[c]);
            if (isfinite(x)) s.sum[row * cols + c] += x, s.count[row * cols + c]++;
        }
    }
    ReportTable t = {xstrdup(title), xstrdup(axis), s.n, cols, xmalloc((size_t)s.n * sizeof(char*) + 1),
                     xmalloc((size_t)s.n * sizeof(int) + 1), xmalloc((size_t)(s.n * cols) * sizeof(double) + 1), NULL};
    int* order = xmalloc((size_t)s.n * sizeof *order + 1);
    for (int i = 0; i < s.n; i++) order[i] = i;
    sort_rows(order, s.n, s.labels);
    for (int i = 0; i < s.n; i++) {
        int k = order[i];
        t.row_labels[i] = s.labels[k];
        t.counts[i] = s.runs[k];
        for (int c = 0; c < cols; c++)
            t.cells[i * cols + c] = s.count[k * cols + c] ? s.sum[k * cols + c] / s.count[k * cols + c] : NAN;
    }
    free(order);
    free(s.labels);
    free(s.runs);
    free(s.sum);
    free(s.count);
    t.best = xcalloc((size_t)(s.n * cols) + 1, 1);
    double* col = xmalloc((size_t)(s.n + 1) * sizeof *col);
    unsigned char* b = xmalloc((size_t)s.n + 1);
    for (int c = 0; c < cols; c++) {
        for (int i = 0; i < s.n; i++) col[i] = t.cells[i * cols + c];
        report_mark_best(col, s.n, report_lower_is_better(r->metrics[c]), b);
        for (int i = 0; i < s.n; i++) t.best[i * cols + c] = b[i];
    }
    free(col);
    free(b);
    return t;
}

// "k1 = v1, k2 = v2" over the axes other than `axis` (the run's context for that axis).
static char* context_of(const Report* r, const ReportRun* run, const char* axis) {
    char* s = NULL;
    size_t len = 0;
    FILE* f = open_memstream(&s, &len);
    int first = 1;
    for (int a = 0; a < r->n_axes; a++) {
        if (strcmp(r->axes[a], axis) == 0) continue;
        const char* v = report_run_param(run, r->axes[a]);
        fprintf(f, "%s%s = %s", first ? "" : ", ", r->axes[a], v ? v : "(not set)");
        first = 0;
    }
    fclose(f);
    return s;
}

static void table_free(ReportTable* t) {
    free(t->title);
    free(t->axis);
    for (int i = 0; i < t->n_rows; i++) free(t->row_labels[i]);
    free(t->row_labels);
    free(t->counts);
    free(t->cells);
    free(t->best);
}

static void push_table(ReportTable** tables, int* n, ReportTable t) {
    *tables = xrealloc(*tables, (size_t)(*n + 1) * sizeof **tables);
    (*tables)[(*n)++] = t;
}

static void grouped_tables(const Report* r, const char* axis, ReportTable** tables, int* n) {
    char** ctx = xmalloc((size_t)r->n_runs * sizeof *ctx);
    unsigned char* member = xmalloc((size_t)r->n_runs);
    unsigned char* seen = xcalloc((size_t)r->n_runs, 1);
    for (int i = 0; i < r->n_runs; i++) ctx[i] = context_of(r, &r->runs[i], axis);
    for (int i = 0; i < r->n_runs; i++) {
        if (seen[i]) continue;
        for (int k = 0; k < r->n_runs; k++) member[k] = strcmp(ctx[k], ctx[i]) == 0, seen[k] |= member[k];
        size_t len = strlen(axis) + strlen(ctx[i]) + 16;
        char* title = xmalloc(len);
        snprintf(title, len, "%s with %s", axis, ctx[i]);
        ReportTable t = make_table(r, axis, title, member);
        free(title);
        if (t.n_rows >= 2) push_table(tables, n, t);
        else table_free(&t);
    }
    for (int i = 0; i < r->n_runs; i++) free(ctx[i]);
    free(ctx);
    free(member);
    free(seen);
}

int report_ablation_tables(const Report* r, ReportTable** tables) {
    *tables = NULL;
    int n = 0;
    for (int a = 0; a < r->n_axes; a++) {
        const char* axis = r->axes[a];
        size_t len = strlen(axis) + 48;
        char* title = xmalloc(len);
        snprintf(title, len, r->n_axes > 1 ? "%s (other parameters averaged)" : "%s", axis);
        push_table(tables, &n, make_table(r, axis, title, NULL));
        free(title);
        if (r->n_axes > 1) grouped_tables(r, axis, tables, &n);
    }
    return n;
}

void report_tables_free(ReportTable* t, int n) {
    for (int i = 0; i < n; i++) table_free(&t[i]);
    free(t);
}

// ---------------------------------------------------------------------------------------------------- escaping

// Length of the valid UTF-8 sequence at s (0 when it is not one).
static size_t utf8_len(const unsigned char* s) {
    size_t n = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 2 && s[0] < 0xC2) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

static char* escape(const char* s, int markdown) {
    char* out = NULL;
    size_t len = 0;
    FILE* f = open_memstream(&out, &len);
    const unsigned char* p = (const unsigned char*)(s ? s : "");
    while (*p) {
        size_t n = utf8_len(p);
        if (n == 0) {
            fputs("\xEF\xBF\xBD", f);
            p++;
            continue;
        }
        if (n > 1) {
            fwrite(p, 1, n, f);
            p += n;
            continue;
        }
        unsigned char c = *p++;
        if (c == '&') fputs("&amp;", f);
        else if (c == '<') fputs("&lt;", f);
        else if (c == '>') fputs("&gt;", f);
        else if (c == '"') fputs("&quot;", f);
        else if (c == '\'') fputs("&#39;", f);
        else if (c < 0x20 || c == 0x7F) fputc(' ', f);
        else if (markdown && strchr("\\`*_[]|#", c)) fputc('\\', f), fputc(c, f);
        else fputc(c, f);
    }
    fclose(f);
    return out;
}

char* report_html_escape(const char* s) { return escape(s, 0); }
char* report_md_escape(const char* s) { return escape(s, 1); }
