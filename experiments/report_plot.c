// report_plot.c — the plots of a sweep report (experiments/report.h), drawn by gnuplot run as a child process:
// the training (and validation) loss curves of every run on one plot, and one metric-vs-cost plot per metric.
//
// Safety: gnuplot gets only files we write in the plot directory (data files of numbers and sanitised run
// labels, a script whose strings are sanitised labels in single quotes) and runs there with relative names,
// so no run name, parameter value or output path is ever interpreted by gnuplot or a shell. Every plot is
// drawn twice: SVG (embedded in the HTML; its ids made unique per plot) and PNG (pngcairo, for report.md).
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "experiments/report.h"

// A label gnuplot cannot misread: letters, digits and . _ + = : , - / (others become '_'), at most 40 bytes.
static void safe_label(const char* s, char* out, size_t cap) {
    size_t o = 0;
    for (; *s && o + 1 < cap && o < 40; s++) {
        unsigned char c = (unsigned char)*s;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("._+=:,-/", c);
        out[o++] = ok && c ? (char)c : '_';
    }
    out[o] = '\0';
}

static char* files_path(const char* dir, const char* name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int write_curve(const char* dir, const char* name, const ReportCurve* c, Error* e) {
    char* path = files_path(dir, name);
    FILE* f = fopen(path, "w");
    if (!f) {
        errorf(e, "%s: cannot write the plot data: %s", path, strerror(errno));
        return free(path), -1;
    }
    for (int i = 0; i < c->n; i++) fprintf(f, "%.9g %.9g\n", c->step[i], c->value[i]);
    int rc = fclose(f) == 0 ? 0 : errorf(e, "%s: cannot write the plot data: %s", path, strerror(errno));
    free(path);
    return rc;
}

static double run_hours(const ReportRun* run) { return run->elapsed_s * run->devices / 3600.0; }

static void plot_header(FILE* gp, const char* term, const char* out, const char* title, const char* xl, const char* yl) {
    fprintf(gp, "set terminal %s size 860,460 noenhanced font 'sans,11' background rgb 'white'\n", term);
    fprintf(gp, "set output '%s'\nset title '%s'\nset xlabel '%s'\nset ylabel '%s'\n", out, title, xl, yl);
    fprintf(gp, "set grid\nset key outside right top\n");
}

static void plot_footer(FILE* gp, const char* name) {
    fprintf(gp, "set terminal pngcairo size 860,460 noenhanced font 'sans,10' background rgb 'white'\n");
    fprintf(gp, "set output '%s.png'\nreplot\nunset output\n\n", name);
}

static void add_plot(ReportPlots* p, const char* title, const char* name) {
    p->plots = xrealloc(p->plots, (size_t)(p->n + 1) * sizeof *p->plots);
    ReportPlot* pl = &p->plots[p->n++];
    pl->title = xstrdup(title);
    pl->svg = NULL;
    size_t n = strlen(name) + 24;
    pl->png = xmalloc(n);
    snprintf(pl->png, n, "report_files/%s.png", name);
}

// Loss curves (which = 0: training, 1: validation) of every run that has one.
static int script_curves(const Report* r, int which, const char* dir, FILE* gp, ReportPlots* p, Error* e) {
    const char* name = which ? "val_loss" : "loss";
    int drawn = 0;
    for (int i = 0; i < r->n_runs; i++) {
        const ReportCurve* c = which ? &r->runs[i].val : &r->runs[i].loss;
        if (c->n == 0) continue;
        char file[64], label[64];
        snprintf(file, sizeof file, "%s_%d.dat", name, i);
        if (write_curve(dir, file, c, e) != 0) return -1;
        safe_label(r->runs[i].id, label, sizeof label);
        if (drawn == 0) {
            char svg[32];
            snprintf(svg, sizeof svg, "%s.svg", name);
            plot_header(gp, "svg", svg, which ? "Validation loss" : "Training loss", "step", "loss");
            fprintf(gp, "plot ");
        }
        fprintf(gp, "%s'%s' using 1:2 with %s lw 1.5 title '%s'", drawn ? ", \\\n     " : "", file,
                which ? "linespoints" : "lines", label);
        drawn++;
    }
    if (drawn == 0) return 0;
    fprintf(gp, "\n");
    plot_footer(gp, name);
    add_plot(p, which ? "Validation loss of every run" : "Training loss of every run", name);
    return 0;
}

// One metric against the compute hours of every run that has both.
static int script_cost(const Report* r, int m, const char* dir, FILE* gp, ReportPlots* p, Error* e) {
    char name[32], file[48], metric[64];
    snprintf(name, sizeof name, "cost_%d", m);
    snprintf(file, sizeof file, "%s.dat", name);
    safe_label(r->metrics[m], metric, sizeof metric);
    char* path = files_path(dir, file);
    FILE* f = fopen(path, "w");
    if (!f) {
        errorf(e, "%s: cannot write the plot data: %s", path, strerror(errno));
        return free(path), -1;
    }
    int points = 0, gpu = 0;
    for (int i = 0; i < r->n_runs; i++) {
        double y = report_run_metric(&r->runs[i], r->metrics[m]), x = run_hours(&r->runs[i]);
        if (!isfinite(x) || !isfinite(y)) continue;
        char label[64];
        safe_label(r->runs[i].id, label, sizeof label);
        fprintf(f, "%.9g %.9g %s\n", x, y, label);
        points++;
        gpu |= r->runs[i].gpu;
    }
    int rc = fclose(f) == 0 ? 0 : errorf(e, "%s: cannot write the plot data: %s", path, strerror(errno));
    free(path);
    if (rc != 0 || points == 0) return rc;
    char svg[48], title[128];
    snprintf(svg, sizeof svg, "%s.svg", name);
    snprintf(title, sizeof title, "%s vs compute", metric);
    plot_header(gp, "svg", svg, title, gpu ? "GPU-hours (CPU-hours for CPU runs)" : "CPU-hours", metric);
    fprintf(gp, "set offsets graph 0.05, graph 0.2, graph 0.1, graph 0.1\n");
    fprintf(gp, "plot '%s' using 1:2 with points pt 7 ps 1.2 notitle, \\\n     '' using 1:2:3 with labels "
                "left offset 0.8,0.6 notitle\n", file);
    plot_footer(gp, name);
    fprintf(gp, "set offsets\n");
    snprintf(title, sizeof title, "%s against compute (%s)", r->metrics[m], gpu ? "GPU-hours" : "CPU-hours");
    add_plot(p, title, name);
    return 0;
}

// ---------------------------------------------------------------------------------------------------- gnuplot

// Runs gnuplot on script in dir (stdout and stderr to dir/gnuplot.log). Returns NULL or why it failed.
static char* run_gnuplot(const char* dir, const char* script) {
    const char* exe = getenv("MODRWKV_GNUPLOT");
    if (!exe || !*exe) exe = "gnuplot";
    pid_t pid = fork();
    if (pid < 0) return xstrdup("cannot start gnuplot (fork failed)");
    if (pid == 0) {
        int fd = chdir(dir) == 0 ? open("gnuplot.log", O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
        if (fd < 0) _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        execlp(exe, exe, script, (char*)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return NULL;
    char msg[512];
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        snprintf(msg, sizeof msg, "gnuplot was not found (%s): install the Debian package gnuplot-nox", exe);
    else
        snprintf(msg, sizeof msg, "gnuplot failed (status %d): see %s/gnuplot.log", status, dir);
    return xstrdup(msg);
}

// The SVG element of path, with every id prefixed by "p<k>_" so that several plots can share one page.
static char* load_svg(const char* path, int k) {
    char* text = read_file(path, NULL, NULL);
    if (!text) return NULL;
    char* start = strstr(text, "<svg");
    if (!start) return free(text), NULL;
    char prefix[16];
    snprintf(prefix, sizeof prefix, "p%d_", k);
    char* out = NULL;
    size_t len = 0;
    FILE* f = open_memstream(&out, &len);
    static const char* marks[] = {"id=\"", "href=\"#", "url(#"};
    for (const char* s = start; *s;) {
        int hit = -1;
        for (int i = 0; i < 3 && hit < 0; i++)
            if (strncmp(s, marks[i], strlen(marks[i])) == 0) hit = i;
        if (hit < 0) {
            fputc(*s++, f);
            continue;
        }
        fputs(marks[hit], f);
        fputs(prefix, f);
        s += strlen(marks[hit]);
    }
    fclose(f);
    free(text);
    return out;
}

int report_plots(const Report* r, const char* dir, ReportPlots* p, Error* e) {
    memset(p, 0, sizeof *p);
    if (mkdir_p(dir, e) != 0) return -1;
    char* script = files_path(dir, "plots.gp");
    FILE* gp = fopen(script, "w");
    if (!gp) {
        errorf(e, "%s: cannot write the plot script: %s", script, strerror(errno));
        return free(script), -1;
    }
    fprintf(gp, "# plots of the sweep report, written by `modrwkv report`; run `gnuplot plots.gp` here\n");
    int rc = script_curves(r, 0, dir, gp, p, e);
    if (rc == 0) rc = script_curves(r, 1, dir, gp, p, e);
    for (int m = 0; m < r->n_metrics && rc == 0; m++) rc = script_cost(r, m, dir, gp, p, e);
    if (fclose(gp) != 0 && rc == 0) rc = errorf(e, "%s: cannot write the plot script: %s", script, strerror(errno));
    free(script);
    if (rc != 0 || p->n == 0) {
        if (rc == 0) p->skipped = xstrdup("no run has logged a loss or a metric yet");
        return rc;
    }
    p->skipped = run_gnuplot(dir, "plots.gp");
    for (int i = 0; i < p->n && !p->skipped; i++) {
        char svg[64];
        snprintf(svg, sizeof svg, "%s", strrchr(p->plots[i].png, '/') + 1);
        memcpy(strrchr(svg, '.'), ".svg", 5);
        char* path = files_path(dir, svg);
        p->plots[i].svg = load_svg(path, i);
        if (!p->plots[i].svg) {
            char msg[512];
            snprintf(msg, sizeof msg, "gnuplot did not write %s: see %s/gnuplot.log", svg, dir);
            p->skipped = xstrdup(msg);
        }
        free(path);
    }
    return 0;
}

void report_plots_free(ReportPlots* p) {
    for (int i = 0; i < p->n; i++) free(p->plots[i].title), free(p->plots[i].svg), free(p->plots[i].png);
    free(p->plots);
    free(p->skipped);
    memset(p, 0, sizeof *p);
}
