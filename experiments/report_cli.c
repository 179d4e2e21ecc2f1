// report_cli.c — the `modrwkv report DIR [--out DIR]` command (experiments/report.h): reads every run of a
// sweep directory and writes report.md, report_files/ (plots as PNG, their data and gnuplot script) and a
// self-contained report.html, into DIR or --out. Errors are one line ("modrwkv: error: ...") with exit status 1.
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "experiments/report.h"

static const char* USAGE =
    "usage: modrwkv report DIR [--out DIR]\n"
    "\n"
    "Compares the runs of a sweep (DIR = runs/<sweep>: one subdirectory per run with metrics.jsonl,\n"
    "sweep.json, eval*.json, DONE) and writes report.md (plots as PNG in report_files/) and a self-contained\n"
    "report.html: every run with its varied parameters, final train/val loss, evaluation metrics, tokens/s,\n"
    "MFU, GPU- or CPU-hours and parameter counts (best per metric highlighted), one ablation table per varied\n"
    "parameter, the loss curves of all runs and metric-vs-cost plots (gnuplot; skipped with a note without it),\n"
    "and how every number was measured.\n"
    "\n"
    "  --out DIR   where to write the report (default: the sweep directory)\n"
    "  --help      this text\n";

int report_main(int argc, char** argv) {
    static const struct option opts[] = {{"out", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char* out = NULL;
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'o': out = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: fatal("report: unknown option or missing value in '%s': run `modrwkv report --help`", argv[optind - 1]);
        }
    }
    if (optind == argc) fatal("report: give the sweep directory: modrwkv report runs/<sweep> (see --help)");
    if (optind + 1 != argc) fatal("report: unexpected argument '%s' (see `modrwkv report --help`)", argv[optind + 1]);
    const char* dir = argv[optind];
    Report r;
    Error e;
    if (report_load(dir, &r, &e) != 0) {
        report_free(&r);
        fatal("%s", e.msg);
    }
    if (!out) out = dir;
    if (report_write(&r, out, &e) != 0) {
        report_free(&r);
        fatal("%s", e.msg);
    }
    printf("report: %s/report.md, %s/report.html (%d runs)\n", out, out, r.n_runs);
    report_free(&r);
    return 0;
}
