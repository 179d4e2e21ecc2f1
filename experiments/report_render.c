// report_render.c — report.md and report.html of a sweep (experiments/report.h): the table of every run, the
// ablation tables, the plots and how every number was measured. The two documents come from the same code: a
// Doc writes headings, paragraphs and table cells as markdown or as HTML, escaping every text it is given.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/report.h"

typedef struct Doc {
    FILE* f;
    int html;
} Doc;

static void doc_escaped(Doc* d, const char* s) {
    char* t = d->html ? report_html_escape(s) : report_md_escape(s);
    fputs(t, d->f);
    free(t);
}

static void doc_heading(Doc* d, int level, const char* text) {
    if (d->html) fprintf(d->f, "<h%d>", level);
    else fprintf(d->f, "\n%.*s ", level, "######");
    doc_escaped(d, text);
    fputs(d->html ? "" : "\n\n", d->f);
    if (d->html) fprintf(d->f, "</h%d>\n", level);
}

// A paragraph of plain text (escaped).
static void doc_para(Doc* d, const char* text) {
    fputs(d->html ? "<p>" : "", d->f);
    doc_escaped(d, text);
    fputs(d->html ? "</p>\n" : "\n\n", d->f);
}

static void table_start(Doc* d, const char* const* headers, int n) {
    fputs(d->html ? "<table>\n<thead><tr>" : "|", d->f);
    for (int i = 0; i < n; i++) {
        fputs(d->html ? "<th>" : " ", d->f);
        doc_escaped(d, headers[i]);
        fputs(d->html ? "</th>" : " |", d->f);
    }
    fputs(d->html ? "</tr></thead>\n<tbody>\n" : "\n|", d->f);
    for (int i = 0; i < n && !d->html; i++) fputs("---|", d->f);
    if (!d->html) fputs("\n", d->f);
}

static void row_start(Doc* d) { fputs(d->html ? "<tr>" : "|", d->f); }
static void row_end(Doc* d) { fputs(d->html ? "</tr>\n" : "\n", d->f); }
static void table_end(Doc* d) { fputs(d->html ? "</tbody>\n</table>\n" : "\n", d->f); }

static void cell(Doc* d, const char* text, int best) {
    if (d->html) fputs(best ? "<td class=\"best\">" : "<td>", d->f);
    else fputs(best ? " **" : " ", d->f);
    doc_escaped(d, text);
    if (d->html) fputs("</td>", d->f);
    else fputs(best ? "** |" : " |", d->f);
}

static void number_cell(Doc* d, double v, const char* missing, int best) {
    char s[64];
    if (isfinite(v) && fabs(v) >= 1e4 && fabs(v) < 1e15) snprintf(s, sizeof s, "%.0f", v);   // tokens/s
    else if (isfinite(v)) snprintf(s, sizeof s, "%.4g", v);
    else snprintf(s, sizeof s, "%s", missing);
    cell(d, s, best);
}

static void count_cell(Doc* d, double v) {
    char s[64];
    if (!isfinite(v)) snprintf(s, sizeof s, "n/a");
    else if (v >= 1e9) snprintf(s, sizeof s, "%.3gB", v / 1e9);
    else if (v >= 1e6) snprintf(s, sizeof s, "%.3gM", v / 1e6);
    else if (v >= 1e3) snprintf(s, sizeof s, "%.3gK", v / 1e3);
    else snprintf(s, sizeof s, "%.0f", v);
    cell(d, s, 0);
}

// ---------------------------------------------------------------------------------------------------- sections

static const char* const COST_HEADERS[] = {"tokens/s", "MFU", "GPU-hours", "CPU-hours", "params trainable", "params total"};

static void cost_cells(Doc* d, const ReportRun* run) {
    double hours = run->elapsed_s * run->devices / 3600.0;
    number_cell(d, run->tokens_per_s, "n/a", 0);
    if (run->gpu) {
        number_cell(d, run->mfu, "n/a", 0);
        number_cell(d, hours, "n/a", 0);
        cell(d, "-", 0);
    } else {
        cell(d, "n/a (CPU)", 0);
        cell(d, "n/a (CPU)", 0);
        number_cell(d, hours, "n/a", 0);
    }
    count_cell(d, run->params_trained);
    count_cell(d, run->params_total);
}

static void runs_table(Doc* d, const Report* r) {
    int n = 2 + r->n_axes + r->n_metrics + 6;
    const char** headers = xmalloc((size_t)n * sizeof *headers);
    int h = 0;
    headers[h++] = "run";
    for (int a = 0; a < r->n_axes; a++) headers[h++] = r->axes[a];
    headers[h++] = "status";
    for (int m = 0; m < r->n_metrics; m++) headers[h++] = r->metrics[m];
    for (int c = 0; c < 6; c++) headers[h++] = COST_HEADERS[c];
    table_start(d, headers, n);
    free(headers);
    unsigned char* best = xmalloc((size_t)(r->n_runs * r->n_metrics) + 1);
    double* col = xmalloc((size_t)r->n_runs * sizeof *col);
    for (int m = 0; m < r->n_metrics; m++) {
        for (int i = 0; i < r->n_runs; i++) col[i] = report_run_metric(&r->runs[i], r->metrics[m]);
        report_mark_best(col, r->n_runs, report_lower_is_better(r->metrics[m]), best + m * r->n_runs);
    }
    for (int i = 0; i < r->n_runs; i++) {
        const ReportRun* run = &r->runs[i];
        row_start(d);
        cell(d, run->id, 0);
        for (int a = 0; a < r->n_axes; a++) {
            const char* v = report_run_param(run, r->axes[a]);
            cell(d, v ? v : "(not set)", 0);
        }
        cell(d, run->done ? "done" : "not finished", 0);
        for (int m = 0; m < r->n_metrics; m++)
            number_cell(d, report_run_metric(run, r->metrics[m]), "n/a", best[m * r->n_runs + i]);
        cost_cells(d, run);
        row_end(d);
    }
    table_end(d);
    free(best);
    free(col);
}

static void ablation_table(Doc* d, const Report* r, const ReportTable* t) {
    doc_heading(d, 3, t->title);
    int n = 2 + t->n_cols;
    const char** headers = xmalloc((size_t)n * sizeof *headers);
    headers[0] = t->axis;
    headers[1] = "runs";
    for (int c = 0; c < t->n_cols; c++) headers[2 + c] = r->metrics[c];
    table_start(d, headers, n);
    free(headers);
    for (int i = 0; i < t->n_rows; i++) {
        row_start(d);
        cell(d, t->row_labels[i], 0);
        number_cell(d, t->counts[i], "0", 0);
        for (int c = 0; c < t->n_cols; c++) number_cell(d, t->cells[i * t->n_cols + c], "n/a", t->best[i * t->n_cols + c]);
        row_end(d);
    }
    table_end(d);
}

static void ablations(Doc* d, const Report* r) {
    doc_heading(d, 2, "Ablations");
    if (r->n_axes == 0) {
        doc_para(d, "No run has varied parameters (sweep.json \"params\"): there is no ablation to show.");
        return;
    }
    doc_para(d, "One table per varied parameter: rows are its values, columns the metrics. The first table of each "
                "parameter averages over all other parameters (\"runs\" = runs averaged per row); the tables "
                "\"with ...\" hold the other parameters fixed (runs with identical parameters are averaged). "
                "The best value of each column is highlighted.");
    ReportTable* tables;
    int n = report_ablation_tables(r, &tables);
    for (int i = 0; i < n; i++) ablation_table(d, r, &tables[i]);
    report_tables_free(tables, n);
}

static void plots(Doc* d, const ReportPlots* p) {
    doc_heading(d, 2, "Plots");
    if (p->skipped) {
        char msg[1200];
        snprintf(msg, sizeof msg, "Plots skipped: %s.", p->skipped);
        doc_para(d, msg);
        return;
    }
    for (int i = 0; i < p->n; i++) {
        if (d->html) {
            fputs("<figure>\n", d->f);
            fputs(p->plots[i].svg, d->f);   // gnuplot's own SVG: numbers and sanitised labels only
            fputs("\n<figcaption>", d->f);
            doc_escaped(d, p->plots[i].title);
            fputs("</figcaption>\n</figure>\n", d->f);
        } else {
            fputs("![", d->f);
            doc_escaped(d, p->plots[i].title);
            fprintf(d->f, "](%s)\n\n", p->plots[i].png);
        }
    }
}

static void notes(Doc* d, const Report* r) {
    for (int i = 0; i < r->n_runs; i++) {
        if (r->runs[i].skipped_lines == 0) continue;
        char msg[256];
        snprintf(msg, sizeof msg, "%d line(s) of metrics.jsonl that are not JSON objects were skipped in run ",
                 r->runs[i].skipped_lines);
        fputs(d->html ? "<p class=\"note\">" : "", d->f);
        doc_escaped(d, msg);
        doc_escaped(d, r->runs[i].id);
        fputs(d->html ? ".</p>\n" : ".\n\n", d->f);
    }
}

static const char* const METHOD[] = {
    "train loss: the training loss (mean cross-entropy in nats per trained token) of the last step logged in "
    "metrics.jsonl; one step, so it is noisy.",
    "val loss: the last validation loss logged in metrics.jsonl (mean cross-entropy on the validation data).",
    "Evaluation metrics: the \"value\" of the run's eval.json (eval-NAME.json: the column \"NAME metric\"), as "
    "written by `modrwkv eval` on the held-out data: accuracy = exact-match rate (higher is better), wer/cer = "
    "corpus word/character error rate, perplexity = exp(mean NLL) (lower is better); their n and 95% intervals "
    "are in the eval files.",
    "Best: in each table the best value of every metric column is highlighted (every tied row); lower is better "
    "for losses, WER, CER and perplexity, higher for the others. Missing values (n/a) are never best.",
    "tokens/s: the median over logged steps of the job's training throughput (global batch tokens / step wall "
    "time), so warm-up steps and evaluation pauses do not count.",
    "MFU: the median of the \"mfu\" the trainer logs for GPU runs (model FLOPs per second / the GPUs' peak); "
    "CPU runs have none: n/a (CPU).",
    "GPU-hours: last logged elapsed_s (wall clock of the training loop) x GPUs / 3600, for GPU runs. CPU-hours: the "
    "same with processes (MPI ranks) instead of GPUs, for CPU runs; not multiplied by threads.",
    "params trainable / total: the parameter counts logged in metrics.jsonl (\"params_trained\", "
    "\"params_total\"), n/a when the run did not log them.",
    "status: done when the run directory holds the DONE marker of the sweep runner.",
};

static void methods(Doc* d) {
    doc_heading(d, 2, "How the numbers were measured");
    fputs(d->html ? "<ul>\n" : "", d->f);
    for (size_t i = 0; i < sizeof METHOD / sizeof *METHOD; i++) {
        fputs(d->html ? "<li>" : "- ", d->f);
        doc_escaped(d, METHOD[i]);
        fputs(d->html ? "</li>\n" : "\n", d->f);
    }
    fputs(d->html ? "</ul>\n" : "\n", d->f);
}

static void summary(Doc* d, const Report* r) {
    int done = 0;
    for (int i = 0; i < r->n_runs; i++) done += r->runs[i].done;
    char msg[256];
    snprintf(msg, sizeof msg, "%d runs (%d finished) in ", r->n_runs, done);
    fputs(d->html ? "<p>" : "", d->f);
    doc_escaped(d, msg);
    doc_escaped(d, r->dir);
    fputs(d->html ? ".</p>\n" : ".\n\n", d->f);
}

static void body(Doc* d, const Report* r, const ReportPlots* p) {
    char title[64];
    snprintf(title, sizeof title, "Sweep report: ");
    fputs(d->html ? "<h1>" : "# ", d->f);
    doc_escaped(d, title);
    doc_escaped(d, r->sweep);
    fputs(d->html ? "</h1>\n" : "\n\n", d->f);
    summary(d, r);
    doc_heading(d, 2, "Runs");
    runs_table(d, r);
    notes(d, r);
    ablations(d, r);
    plots(d, p);
    methods(d);
}

// ---------------------------------------------------------------------------------------------------- documents

char* report_markdown(const Report* r, const ReportPlots* p) {
    char* out = NULL;
    size_t len = 0;
    Doc d = {open_memstream(&out, &len), 0};
    body(&d, r, p);
    fclose(d.f);
    return out;
}

static const char* const CSS =
    "body{font-family:sans-serif;margin:2em;color:#222;max-width:1400px}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em 0;font-size:0.9em}"
    "th,td{border:1px solid #bbb;padding:0.25em 0.6em;text-align:left}"
    "th{background:#eef}td.best{font-weight:bold;background:#dfd}"
    "figure{margin:1em 0}figure svg{max-width:100%;height:auto}figcaption{font-style:italic}"
    "p.note{color:#a60}";

char* report_html(const Report* r, const ReportPlots* p) {
    char* out = NULL;
    size_t len = 0;
    Doc d = {open_memstream(&out, &len), 1};
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Sweep report: ", d.f);
    doc_escaped(&d, r->sweep);
    fprintf(d.f, "</title>\n<style>%s</style>\n</head>\n<body>\n", CSS);
    body(&d, r, p);
    fputs("</body>\n</html>\n", d.f);
    fclose(d.f);
    return out;
}

static int write_text(const char* dir, const char* name, const char* text, Error* e) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char* path = xmalloc(n);
    snprintf(path, n, "%s/%s", dir, name);
    int rc = write_file_atomic(path, text, strlen(text), e);
    free(path);
    return rc;
}

int report_write(const Report* r, const char* out_dir, Error* e) {
    if (mkdir_p(out_dir, e) != 0) return -1;
    size_t n = strlen(out_dir) + 16;
    char* files = xmalloc(n);
    snprintf(files, n, "%s/report_files", out_dir);
    ReportPlots p;
    int rc = report_plots(r, files, &p, e);
    free(files);
    if (rc != 0) return report_plots_free(&p), -1;
    char* md = report_markdown(r, &p);
    char* html = report_html(r, &p);
    rc = write_text(out_dir, "report.md", md, e);
    if (rc == 0) rc = write_text(out_dir, "report.html", html, e);
    free(md);
    free(html);
    report_plots_free(&p);
    return rc;
}
