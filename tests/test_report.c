// test_report.c — the sweep report's data (experiments/report.h), as a specification:
// - loading: runs from sweep.json / metrics.jsonl / eval.json (final losses, median tokens/s, CPU-hours,
//   parameter counts, a cut line skipped, a resumed run's replayed steps replaced), run-id order, the metric
//   columns, a directory without sweep.json named after itself;
// - best per metric: lower/higher is better, ties all marked, missing values never marked, none when all missing;
// - ablation tables: one per varied parameter averaged over the others, plus grouped tables per combination of
//   the other parameters with at least two rows, rows in value order;
// - escaping: a malicious run name and parameter value in the HTML and markdown documents;
// - errors: a malformed eval.json and a directory without runs are rejected naming the file.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "experiments/report.h"
#include "tests/testutil.h"

static char ROOT[256];

static void write_text(const char* rel, const char* text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", ROOT, rel);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    Error e;
    if (mkdir_p(dir, &e) != 0 || write_file_atomic(path, text, strlen(text), &e) != 0) fatal("%s", e.msg);
}

// A run with params kind/lr, a final loss, a val loss and optionally an accuracy (NAN: no eval.json).
static void make_run(const char* sweep, const char* dir, const char* id, const char* kind, const char* lr,
                     double loss, double val, double acc) {
    char rel[256], text[2048];
    snprintf(rel, sizeof rel, "%s/%s/sweep.json", sweep, dir);
    snprintf(text, sizeof text, "{\"sweep\": \"s\", \"run_id\": \"%s\", \"params\": {\"kind\": \"%s\", \"lr\": \"%s\"},"
             " \"overrides\": []}", id, kind, lr);
    write_text(rel, text);
    snprintf(rel, sizeof rel, "%s/%s/metrics.jsonl", sweep, dir);
    snprintf(text, sizeof text,
             "{\"step\":1,\"loss\":5,\"tokens_per_s\":100,\"elapsed_s\":1800}\n"
             "{\"step\":2,\"loss\":4,\"tokens_per_s\":300,\"elapsed_s\":3600}\n"
             "{\"step\":2,\"val_loss\":%.17g}\n"
             "{\"step\":3,\"loss\":%.17g,\"tokens_per_s\":200,\"elapsed_s\":7200,\"params_total\":1000,\"params_trained\":10}\n",
             val, loss);
    write_text(rel, text);
    if (isfinite(acc)) {
        snprintf(rel, sizeof rel, "%s/%s/eval.json", sweep, dir);
        snprintf(text, sizeof text, "{\"metric\": \"accuracy\", \"value\": %.17g, \"n\": 50, \"ci95\": [0.1, 0.9]}", acc);
        write_text(rel, text);
    }
}

static char* sweep_path(const char* sweep) {
    char* p = xmalloc(512);
    snprintf(p, 512, "%s/%s", ROOT, sweep);
    return p;
}

static int test_load(void) {
    int f = 0;
    make_run("load", "r2", "b-run", "mlp", "1e-3", 1.5, 1.75, 0.5);
    make_run("load", "r1", "a-run", "linear", "1e-3", 2.0, 2.25, NAN);
    // a resumed run that replays steps 2-3, then a line cut by a killed job
    write_text("load/r3/metrics.jsonl", "{\"step\":1,\"loss\":5}\n{\"step\":2,\"loss\":4}\n{\"step\":3,\"loss\":3}\n"
                                        "{\"step\":2,\"loss\":3.5}\n{\"step\":3,\"loss\":2.5}\n{\"step\":4,\"lo");
    char* dir = sweep_path("load");
    Report r;
    Error e;
    int rc = report_load(dir, &r, &e);
    f += check_true("a sweep of 3 runs loads", rc == 0 && r.n_runs == 3, rc ? e.msg : "");
    if (rc == 0 && r.n_runs == 3) {
        const ReportRun* a = &r.runs[1];
        printf("  runs: %s, %s, %s; axes %d; metrics %d (%s, %s, %s)\n", r.runs[0].id, r.runs[1].id, r.runs[2].id,
               r.n_axes, r.n_metrics, r.metrics[0], r.metrics[1], r.n_metrics > 2 ? r.metrics[2] : "-");
        f += check_true("runs in run-id order; a run without sweep.json is named after its directory",
                        strcmp(r.runs[0].id, "a-run") == 0 && strcmp(a->id, "b-run") == 0 && strcmp(r.runs[2].id, "r3") == 0, "");
        f += check_true("sweep name from sweep.json", strcmp(r.sweep, "s") == 0, r.sweep);
        f += check_true("axes = union of params keys, sorted", r.n_axes == 2 && strcmp(r.axes[0], "kind") == 0 &&
                        strcmp(r.axes[1], "lr") == 0, "");
        f += check_true("metric columns: train loss, val loss, accuracy", r.n_metrics == 3 &&
                        strcmp(r.metrics[2], "accuracy") == 0, "");
        printf("  b-run: loss %g val %g acc %g tokens/s %g hours %g params %g/%g\n", a->train_loss, a->val_loss,
               report_run_metric(a, "accuracy"), a->tokens_per_s, a->elapsed_s / 3600, a->params_trained, a->params_total);
        f += check_true("final losses = last logged train step and last val line", a->train_loss == 1.5 && a->val_loss == 1.75, "");
        f += check_true("accuracy from eval.json; n/a (NaN) without it",
                        report_run_metric(a, "accuracy") == 0.5 && isnan(report_run_metric(&r.runs[0], "accuracy")), "");
        f += check_true("tokens/s = median of logged values (100, 300, 200 -> 200)", a->tokens_per_s == 200, "");
        f += check_true("CPU run: last elapsed_s x 1 process = 2 CPU-hours", !a->gpu && a->elapsed_s * a->devices / 3600 == 2, "");
        f += check_true("parameter counts from metrics.jsonl", a->params_total == 1000 && a->params_trained == 10, "");
        f += check_true("no parameter counts logged: n/a (NaN)", isnan(r.runs[2].params_total), "");
        const ReportCurve* c = &r.runs[2].loss;
        printf("  resumed run: %d points, last step %g loss %g, %d line skipped\n", c->n, c->step[c->n - 1],
               c->value[c->n - 1], r.runs[2].skipped_lines);
        f += check_true("resumed run: replayed steps replace the curve (1, 2, 3 -> losses 5, 3.5, 2.5)",
                        c->n == 3 && c->value[1] == 3.5 && r.runs[2].train_loss == 2.5, "");
        f += check_true("a cut line is skipped and counted", r.runs[2].skipped_lines == 1, "");
    }
    report_free(&r);
    free(dir);
    return f;
}

static int test_best(void) {
    int f = 0;
    double v[5] = {0.5, NAN, 0.25, 0.25, 0.75};
    unsigned char b[5];
    report_mark_best(v, 5, 1, b);
    f += check_true("lower is better: both tied 0.25 marked, NaN never", !b[0] && !b[1] && b[2] && b[3] && !b[4], "");
    report_mark_best(v, 5, 0, b);
    f += check_true("higher is better: 0.75 only", !b[0] && !b[1] && !b[2] && !b[3] && b[4], "");
    double none[2] = {NAN, INFINITY};
    report_mark_best(none, 2, 1, b);
    f += check_true("all values missing: nothing marked", !b[0] && !b[1], "");
    f += check_true("direction: losses, wer, cer, perplexity lower; accuracy higher",
                    report_lower_is_better("val loss") && report_lower_is_better("wer") && report_lower_is_better("asr cer") &&
                    report_lower_is_better("text perplexity") && !report_lower_is_better("accuracy") &&
                    !report_lower_is_better("answer"), "");
    return f;
}

static int find_table(const ReportTable* t, int n, const char* title) {
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].title, title) == 0) return i;
    return -1;
}

static int test_ablations(void) {
    int f = 0;
    // kind x lr: mlp at 1e-3 and 3e-4, linear at 1e-3 only; a repeat of mlp/1e-3
    make_run("abl", "r1", "mlp-hi", "mlp", "1e-3", 1.0, 1.0, 0.75);
    make_run("abl", "r2", "mlp-hi-seed2", "mlp", "1e-3", 2.0, 2.0, 0.25);
    make_run("abl", "r3", "mlp-lo", "mlp", "3e-4", 4.0, 4.0, NAN);
    make_run("abl", "r4", "lin-hi", "linear", "1e-3", 1.5, 1.5, 0.5);
    char* dir = sweep_path("abl");
    Report r;
    Error e;
    int rc = report_load(dir, &r, &e);
    f += check_true("ablation sweep loads", rc == 0, rc ? e.msg : "");
    ReportTable* t = NULL;
    int n = rc == 0 ? report_ablation_tables(&r, &t) : 0;
    for (int i = 0; i < n; i++) printf("  table: %s (%d rows)\n", t[i].title, t[i].n_rows);
    // kind averaged; kind with lr = 1e-3 (2 rows); kind with lr = 3e-4 has one row: left out;
    // lr averaged; lr with kind = mlp (2 rows); lr with kind = linear: one row, left out
    f += check_true("tables: 2 averaged + 2 grouped (groups with a single row left out)", n == 4, "");
    int ka = find_table(t, n, "kind (other parameters averaged)");
    int kg = find_table(t, n, "kind with lr = 1e-3");
    int lg = find_table(t, n, "lr with kind = mlp");
    f += check_true("the expected titles", ka >= 0 && kg >= 0 && lg >= 0 && find_table(t, n, "lr (other parameters averaged)") >= 0, "");
    if (ka >= 0 && kg >= 0 && lg >= 0) {
        const ReportTable* a = &t[ka];   // rows: linear, mlp; columns: train loss, val loss, accuracy
        printf("  kind averaged: %s %d runs loss %g acc %g | %s %d runs loss %g acc %g\n", a->row_labels[0], a->counts[0],
               a->cells[0], a->cells[2], a->row_labels[1], a->counts[1], a->cells[3], a->cells[5]);
        f += check_true("averaged: mlp = mean of its 3 runs (loss 7/3), accuracy over the 2 that have it (0.5)",
                        strcmp(a->row_labels[1], "mlp") == 0 && a->counts[1] == 3 && fabs(a->cells[3] - 7.0 / 3) < 1e-12 &&
                        a->cells[5] == 0.5, "");
        f += check_true("averaged best: linear's loss 1.5 < 2.33; accuracy tie 0.5 = 0.5 both marked",
                        a->best[0] && !a->best[3] && a->best[2] && a->best[5], "");
        const ReportTable* g = &t[kg];
        f += check_true("grouped (lr = 1e-3): mlp = mean of the two repeats (loss 1.5), 2 runs",
                        strcmp(g->row_labels[1], "mlp") == 0 && g->counts[1] == 2 && g->cells[3] == 1.5, "");
        const ReportTable* l = &t[lg];
        f += check_true("rows in value order: lr 3e-4 before 1e-3; missing accuracy is n/a and not best",
                        strcmp(l->row_labels[0], "3e-4") == 0 && isnan(l->cells[2]) && !l->best[2] && l->best[5], "");
    }
    report_tables_free(t, n);
    report_free(&r);
    free(dir);
    return f;
}

static int test_escaping(void) {
    int f = 0;
    make_run("evil", "r1", "<script>alert('x')</script>", "<img src=x onerror=alert(1)>", "a&b|c", 1.0, 1.0, NAN);
    char* dir = sweep_path("evil");
    Report r;
    Error e;
    int rc = report_load(dir, &r, &e);
    f += check_true("malicious sweep loads", rc == 0, rc ? e.msg : "");
    ReportPlots p = {0};
    p.skipped = xstrdup("not drawn in this test");
    char* html = rc == 0 ? report_html(&r, &p) : xstrdup("");
    char* md = rc == 0 ? report_markdown(&r, &p) : xstrdup("");
    f += check_true("html: no raw tag from run files", !strstr(html, "<script") && !strstr(html, "<img"), "");
    f += check_true("html: the run name escaped", strstr(html, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") != NULL, "");
    f += check_true("html: the parameter values escaped", strstr(html, "&lt;img src=x onerror=alert(1)&gt;") &&
                    strstr(html, "a&amp;b|c"), "");
    f += check_true("md: no raw tag; | escaped in a table cell", !strstr(md, "<script") && strstr(md, "a&amp;b\\|c"), "");
    f += check_true("the plots' skip reason is stated", strstr(html, "Plots skipped: not drawn in this test") != NULL, "");
    char* esc = report_html_escape("ok\n\"\x01\xff");
    printf("  escape(\"ok\\n\\\"\\x01\\xff\") = %s\n", esc);
    f += check_true("html escape: control bytes become spaces, invalid UTF-8 U+FFFD",
                    strcmp(esc, "ok &quot; \xEF\xBF\xBD") == 0, esc);
    free(esc);
    free(html);
    free(md);
    report_plots_free(&p);
    report_free(&r);
    free(dir);
    return f;
}

static int test_errors(void) {
    int f = 0;
    make_run("bad", "r1", "r1", "mlp", "1e-3", 1.0, 1.0, NAN);
    write_text("bad/r1/eval.json", "{\"metric\": 3}");
    char* dir = sweep_path("bad");
    Report r;
    Error e;
    int rc = report_load(dir, &r, &e);
    report_free(&r);
    f += expect_reject("eval.json without metric/value", rc, &e, "r1/eval.json", "\"metric\"");
    write_text("empty/notarun/readme.txt", "hello");
    free(dir);
    dir = sweep_path("empty");
    rc = report_load(dir, &r, &e);
    report_free(&r);
    f += expect_reject("a directory without runs", rc, &e, "empty", "no run directories");
    free(dir);
    return f;
}

int main(void) {
    snprintf(ROOT, sizeof ROOT, "/tmp/modrwkv-test-report.%d", (int)getpid());
    int f = 0;
    f += test_load();
    f += test_best();
    f += test_ablations();
    f += test_escaping();
    f += test_errors();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", ROOT);
    if (system(cmd) != 0) printf("  could not remove %s\n", ROOT);
    return test_summary("test_report", f);
}
