// report.h — the comparison report of a sweep: `modrwkv report runs/<sweep>` reads every run directory and
// writes report.md (PNG plots in report_files/) and a self-contained report.html (inline CSS and SVG).
//
// Contract:
// - A run is a subdirectory of the sweep directory holding metrics.jsonl or sweep.json. sweep.json =
//   {"sweep", "run_id", "params": {key: value as string}, "overrides": [...]}; without it the run id is the
//   directory name and the run has no parameters. `DONE` marks a finished run. eval.json (experiments/eval.h:
//   "metric", "value", "n", "ci95"; a WER report also gives "cer") adds its metric; eval-NAME.json adds
//   "NAME metric". Runs are listed in run-id order.
// - metrics.jsonl: train lines {"step","loss","lr","grad_norm","tokens","tokens_per_s","elapsed_s", optional
//   "mfu", "device", "gpus", "world", "params_total", "params_trained"} and validation lines {"step","val_loss"}.
//   A line that is not a JSON object (a job killed mid-write) is skipped and counted; a step that does not
//   exceed the previous one (a resumed run replaying steps) replaces the curve from that step on.
// - Numbers (every one is explained in the report's "How the numbers were measured"): final train loss =
//   the last logged step's loss; final val loss = the last validation line; tokens/s = the median of the
//   logged tokens_per_s; a run is a GPU run when a line says "device": "cuda..." or carries "mfu"; GPU-hours =
//   last elapsed_s x GPUs ("gpus", else "world", else 1) / 3600; a CPU run reports MFU and GPU-hours as
//   "n/a (CPU)" and CPU-hours = last elapsed_s x processes ("world", else 1) / 3600; parameter counts come from
//   "params_total"/"params_trained" when logged, else n/a.
// - Metric columns: "train loss", "val loss", then every eval metric seen in any run (first-seen order).
//   Lower is better for losses, WER, CER and perplexity; higher for the rest (accuracy). In every table the
//   best value of each metric column is marked — every row that ties with it; missing values never are.
// - Ablation tables: for every varied parameter (the union of the runs' params keys, sorted), one table over
//   all runs whose rows are the parameter's values (numbers in value order, else text order), each cell the mean over the runs with that value (the
//   other parameters averaged, the run count shown), and, when other parameters vary too, one table per
//   combination of the other parameters that has at least two values of this one (rows = single runs or the
//   mean of repeats with identical parameters): the paper's layout, rows = one axis, columns = metrics.
// - Every text that comes from run files is escaped (report_html_escape / report_md_escape); plots get only
//   sanitised run labels and go to gnuplot through data and script files (never a shell).
// - Errors (unreadable directory, malformed sweep.json/eval*.json, a sweep without runs) return -1 with e
//   naming the file.
#pragma once
#include <stdint.h>

#include "kernels/common.h"

typedef struct ReportEval {
    char* metric;          // column name: "accuracy", "wer", "cer", "val_set perplexity", ...
    double value;
    int64_t n;             // -1 when not given
    double lo, hi;         // 95% interval (NaN when not given)
} ReportEval;

typedef struct ReportCurve {
    int n, cap;
    double* step;
    double* value;
} ReportCurve;

typedef struct ReportRun {
    char* id;              // run id (sweep.json "run_id" or the directory name)
    char* dir;             // the run directory
    int n_params;
    char** param_keys;     // the varied parameters of sweep.json, as given
    char** param_values;
    int done;              // DONE marker present
    int gpu;               // GPU run (see the contract)
    double train_loss, val_loss;      // NaN when not logged
    double tokens_per_s, mfu;         // NaN when not logged
    double elapsed_s;                 // last logged elapsed_s (NaN when none)
    double devices;                   // GPUs (GPU run) or processes (CPU run)
    double params_total, params_trained;  // NaN: n/a
    int skipped_lines;                // metrics.jsonl lines that were not JSON objects
    ReportCurve loss, val;            // (step, loss) and (step, val_loss)
    int n_evals;
    ReportEval* evals;
} ReportRun;

typedef struct Report {
    char* dir;             // the sweep directory
    char* sweep;           // sweep name (sweep.json "sweep", else the directory's base name)
    int n_runs;
    ReportRun* runs;
    int n_axes;
    char** axes;           // varied parameters, sorted
    int n_metrics;
    char** metrics;        // metric columns (see the contract)
} Report;

// Reads every run of a sweep directory. r is filled (free with report_free, also after a failure).
int report_load(const char* sweep_dir, Report* r, Error* e);
void report_free(Report* r);

// The value of a metric column for a run (NaN when the run has none).
double report_run_metric(const ReportRun* run, const char* metric);
// The run's value of a parameter, NULL when it has none.
const char* report_run_param(const ReportRun* run, const char* key);
// 1 when lower is better for the metric (losses, WER, CER, perplexity, MSE, MAE), 0 when higher is (accuracy, ...).
int report_lower_is_better(const char* metric);
// best[i] = 1 for every i whose value v[i] equals the best finite value (ties all marked); 0 otherwise.
void report_mark_best(const double* v, int n, int lower_is_better, unsigned char* best);

// A table of metric means: rows x n_metrics cells (NaN: no run has the metric), counts = runs per row.
typedef struct ReportTable {
    char* title;           // "model.projector.kind (other parameters averaged)" or "... with k = v, ..."
    char* axis;            // the parameter whose values are the rows
    int n_rows, n_cols;
    char** row_labels;     // the parameter's values
    int* counts;           // runs averaged into each row
    double* cells;         // (n_rows, n_cols) row-major; columns = Report.metrics
    unsigned char* best;   // (n_rows, n_cols)
} ReportTable;

// The ablation tables of the contract, in axis order. Returns the number of tables (*tables malloc'ed).
int report_ablation_tables(const Report* r, ReportTable** tables);
void report_tables_free(ReportTable* t, int n);

// Escaped copies (malloc'ed). HTML: & < > " ' become entities, control bytes a space, bytes that are not
// UTF-8 U+FFFD. Markdown (table cells): the HTML escapes plus a backslash before \ ` * _ [ ] | and #.
char* report_html_escape(const char* s);
char* report_md_escape(const char* s);

// ---- rendering (report_render.c) and plots (report_plot.c)

// The plots written for a report: SVG text for the HTML, PNG file names (relative to the report) for the
// markdown, or the reason they were skipped.
typedef struct ReportPlot {
    char* title;
    char* svg;             // the <svg> element (malloc'ed)
    char* png;             // "report_files/NAME.png"
} ReportPlot;

typedef struct ReportPlots {
    int n;
    ReportPlot* plots;
    char* skipped;         // NULL, or why no plot was made (gnuplot missing or failed)
} ReportPlots;

// Writes the loss curves of all runs and one metric-vs-cost plot per metric column with data: data and script
// files in files_dir, run by gnuplot (`gnuplot` on PATH, or $MODRWKV_GNUPLOT) in that directory. A missing or
// failing gnuplot is not an error: p->skipped says why. Returns -1 only when files_dir cannot be written.
int report_plots(const Report* r, const char* files_dir, ReportPlots* p, Error* e);
void report_plots_free(ReportPlots* p);

// report.md and report.html in out_dir (created), plots in out_dir/report_files/.
int report_write(const Report* r, const char* out_dir, Error* e);
// Only the documents, given the plots (tests).
char* report_markdown(const Report* r, const ReportPlots* p);
char* report_html(const Report* r, const ReportPlots* p);

// The `modrwkv report` command (report_cli.c).
int report_main(int argc, char** argv);
