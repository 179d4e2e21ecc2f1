// test_sweep.c — sweep files (experiments/sweep.h): expansion of grid, zip and random (fixed seed) into
// exact run lists, stable run ids that change when a value changes, the resolved config of a run, and
// one-line errors naming the file, line and key for bad sweep files.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "experiments/sweep.h"
#include "tests/testutil.h"

// The runs of a sweep as "id: k=v k=v" lines, for comparison with an expected listing.
static char* listing(const Sweep* s) {
    char* out = xcalloc(1, 1);
    size_t len = 0;
    for (int i = 0; i < s->n_runs; i++) {
        char line[1024];
        int n = snprintf(line, sizeof line, "%s:", s->runs[i].id);
        for (int k = 0; k < s->runs[i].n_params; k++)
            n += snprintf(line + n, sizeof line - (size_t)n, " %s=%s", s->runs[i].params[k].key, s->runs[i].params[k].value);
        snprintf(line + n, sizeof line - (size_t)n, "\n");
        out = xrealloc(out, len + strlen(line) + 1);
        memcpy(out + len, line, strlen(line) + 1);
        len += strlen(line);
    }
    return out;
}

// Loads `yaml` and compares the parameter lists (ids stripped) with `want` ("k=v k=v;k=v ..." per run).
static int check_expansion(const char* what, const char* yaml, const char* want) {
    Sweep s;
    Error e = {{0}};
    int rc = sweep_load_string(&s, yaml, "/tmp/sweep-test/s.yaml", &e);
    char got[4096] = "";
    for (int i = 0; rc == 0 && i < s.n_runs; i++) {
        if (i) strncat(got, ";", sizeof got - strlen(got) - 1);
        for (int k = 0; k < s.runs[i].n_params; k++) {
            char kv[256];
            snprintf(kv, sizeof kv, "%s%s=%s", k ? " " : "", s.runs[i].params[k].key, s.runs[i].params[k].value);
            strncat(got, kv, sizeof got - strlen(got) - 1);
        }
    }
    char* list = rc == 0 ? listing(&s) : xstrdup("");
    printf("%s:\n%s", what, list);
    free(list);
    char detail[8192];
    snprintf(detail, sizeof detail, "got  \"%s\"\n      want \"%s\" %s", got, want, rc ? e.msg : "");
    int fails = check_true(what, rc == 0 && strcmp(got, want) == 0, detail);
    sweep_free(&s);
    return fails;
}

static int check_grid_zip_random(void) {
    int fails = check_expansion("grid: cartesian product, first axis slowest",
        "name: g\nbase: base.yaml\ngrid:\n  model.projector.kind: [mlp, conv_mlp, linear]\n"
        "  model.adapter.kind: [none, bone]\n",
        "model.projector.kind=mlp model.adapter.kind=none;model.projector.kind=mlp model.adapter.kind=bone;"
        "model.projector.kind=conv_mlp model.adapter.kind=none;model.projector.kind=conv_mlp model.adapter.kind=bone;"
        "model.projector.kind=linear model.adapter.kind=none;model.projector.kind=linear model.adapter.kind=bone");
    fails += check_expansion("zip: parallel lists, run i takes the i-th values",
        "name: z\nbase: base.yaml\nzip:\n  model.projector.conv_kernel: [3, 4, 5]\n  model.projector.conv_stride: [2, 3, 4]\n",
        "model.projector.conv_kernel=3 model.projector.conv_stride=2;"
        "model.projector.conv_kernel=4 model.projector.conv_stride=3;"
        "model.projector.conv_kernel=5 model.projector.conv_stride=4");
    fails += check_expansion("grid x zip: every grid point with every zip row",
        "name: gz\nbase: base.yaml\ngrid: {train.lr: [1e-3, 2e-3]}\n"
        "zip: {model.projector.conv_kernel: [3, 4], model.projector.conv_stride: [2, 3]}\n",
        "train.lr=1e-3 model.projector.conv_kernel=3 model.projector.conv_stride=2;"
        "train.lr=1e-3 model.projector.conv_kernel=4 model.projector.conv_stride=3;"
        "train.lr=2e-3 model.projector.conv_kernel=3 model.projector.conv_stride=2;"
        "train.lr=2e-3 model.projector.conv_kernel=4 model.projector.conv_stride=3");
    // splitmix64 from seed 7, index = draw mod count, axes in file order, samples in order; the repeated
    // sample (a duplicate point) is run once.
    fails += check_expansion("random: n samples with seed 7 (exact draws; 3 repeated points dropped)",
        "name: r\nbase: base.yaml\nrandom:\n  n: 8\n  seed: 7\n  axes:\n    train.lr: [1e-3, 2e-3, 3e-3]\n"
        "    model.adapter.kind: [none, bone]\n",
        "train.lr=1e-3 model.adapter.kind=none;train.lr=1e-3 model.adapter.kind=bone;"
        "train.lr=2e-3 model.adapter.kind=bone;train.lr=2e-3 model.adapter.kind=none;"
        "train.lr=3e-3 model.adapter.kind=bone");
    fails += check_expansion("no axes: one run with the base config", "name: one\nbase: base.yaml\nset: {train.lr: 1e-3}\n", "");
    return fails;
}

static int check_ids(void) {
    SweepParam a[] = {{"model.projector.kind", "conv_mlp"}, {"model.adapter.kind", "bone"}};
    SweepParam b[] = {{"model.adapter.kind", "bone"}, {"model.projector.kind", "conv_mlp"}};
    SweepParam c[] = {{"model.projector.kind", "conv_mlp"}, {"model.adapter.kind", "lora"}};
    SweepParam d[] = {{"model.init", "runs/demo/stage0-text/checkpoints/step-00000400.safetensors"}};
    char ia[96], ia2[96], ib[96], ic[96], id[96], none[96];
    sweep_run_id(a, 2, ia, sizeof ia);
    sweep_run_id(a, 2, ia2, sizeof ia2);
    sweep_run_id(b, 2, ib, sizeof ib);
    sweep_run_id(c, 2, ic, sizeof ic);
    sweep_run_id(d, 1, id, sizeof id);
    sweep_run_id(NULL, 0, none, sizeof none);
    printf("ids: %s | %s | %s | %s | %s\n", ia, ib, ic, id, none);
    // sha256("model.adapter.kind=bone\nmodel.projector.kind=conv_mlp\n")[:10], computed with Python's hashlib
    int fails = check_true("run id = readable slug + the first 10 hex of SHA-256 of the sorted key=value lines",
                           strcmp(ia, "conv_mlp-bone-1de6bba4ec") == 0, ia);
    fails += check_true("run id is stable (same parameters, same id)", strcmp(ia, ia2) == 0, ia2);
    fails += check_true("the hash ignores axis order", strcmp(ia + strlen(ia) - 10, ib + strlen(ib) - 10) == 0, ib);
    fails += check_true("the id changes when a value changes", strcmp(ia + strlen(ia) - 10, ic + strlen(ic) - 10) != 0, ic);
    fails += check_true("a path value appears as its file name without extension",
                        strncmp(id, "step-00000400-", 14) == 0, id);
    fails += check_true("no varied parameters: id base-<hash>", strncmp(none, "base-", 5) == 0 && strlen(none) == 15, none);

    // The same sweep text expands to the same ids twice; changing one value changes only its runs' ids.
    const char* y1 = "name: g\nbase: b.yaml\ngrid:\n  train.lr: [1e-3, 2e-3]\n  model.adapter.kind: [none, bone]\n";
    const char* y2 = "name: g\nbase: b.yaml\ngrid:\n  train.lr: [1e-3, 5e-3]\n  model.adapter.kind: [none, bone]\n";
    Sweep s1, s1b, s2;
    Error e;
    int rc = sweep_load_string(&s1, y1, "g.yaml", &e) | sweep_load_string(&s1b, y1, "g.yaml", &e) |
             sweep_load_string(&s2, y2, "g.yaml", &e);
    int same = rc == 0 && s1.n_runs == 4 && s1b.n_runs == 4 && s2.n_runs == 4;
    for (int i = 0; same && i < 4; i++) same = strcmp(s1.runs[i].id, s1b.runs[i].id) == 0;
    int changed = rc == 0 && strcmp(s1.runs[0].id, s2.runs[0].id) == 0 && strcmp(s1.runs[1].id, s2.runs[1].id) == 0 &&
                  strcmp(s1.runs[2].id, s2.runs[2].id) != 0 && strcmp(s1.runs[3].id, s2.runs[3].id) != 0;
    fails += check_true("re-expanding a sweep gives the same run ids", same, e.msg);
    fails += check_true("changing lr 2e-3 -> 5e-3 changes exactly the two runs that use it", changed, e.msg);
    sweep_free(&s1);
    sweep_free(&s1b);
    sweep_free(&s2);
    return fails;
}

typedef struct BadSweep {
    const char* what;
    const char* yaml;
    const char* want;   // expected message prefix
} BadSweep;

static const BadSweep BAD[] = {
    {"unknown top-level key", "name: a\nbase: b.yaml\ngird:\n  train.lr: [1]\n",
     "bad.yaml:3: unknown sweep key 'gird' (a sweep file takes name, base, runs_dir, set, grid, zip, random, eval)"},
    {"unknown config key in an axis", "name: a\nbase: b.yaml\ngrid:\n  train.lrr: [1e-3]\n",
     "bad.yaml:4: grid key 'train.lrr': unknown key 'train.lrr' (did you mean 'train.lr'?"},
    {"wrong type in an axis", "name: a\nbase: b.yaml\ngrid:\n  train.lr: [1e-3, fast]\n",
     "bad.yaml:4: grid key 'train.lr': key 'train.lr' expects a number, got 'fast'"},
    {"bad enum value", "name: a\nbase: b.yaml\ngrid:\n  model.projector.kind: [mlp, cnn]\n",
     "bad.yaml:4: grid key 'model.projector.kind': key 'model.projector.kind': 'cnn' is not one of"},
    {"axis not a list", "name: a\nbase: b.yaml\ngrid:\n  train.lr: 1e-3\n",
     "bad.yaml:4: grid axis 'train.lr' expects a non-empty list of values"},
    {"empty axis", "name: a\nbase: b.yaml\ngrid:\n  train.lr: []\n", "bad.yaml:4: grid axis 'train.lr' expects a non-empty list"},
    {"list value", "name: a\nbase: b.yaml\ngrid:\n  model.projector.conv_kernel: [[3, 2]]\n",
     "bad.yaml:4: grid axis 'model.projector.conv_kernel': values must be scalars, got a list (pair keys with zip:)"},
    {"zip lengths differ", "name: a\nbase: b.yaml\nzip:\n  model.projector.conv_kernel: [3, 4]\n  model.projector.conv_stride: [2]\n",
     "bad.yaml:5: zip axis 'model.projector.conv_stride' has 1 values but 'model.projector.conv_kernel' has 2"},
    {"key in two blocks", "name: a\nbase: b.yaml\ngrid: {train.lr: [1]}\nrandom: {n: 2, axes: {train.lr: [2, 3]}}\n",
     "bad.yaml:4: axis 'train.lr' appears twice"},
    {"run_dir as an axis", "name: a\nbase: b.yaml\ngrid: {run_dir: [x, y]}\n", "bad.yaml:3: grid key 'run_dir': the sweep sets"},
    {"random without n", "name: a\nbase: b.yaml\nrandom:\n  axes: {train.lr: [1]}\n", "bad.yaml:4: random needs `n:`"},
    {"random n not a number", "name: a\nbase: b.yaml\nrandom: {n: many, axes: {train.lr: [1]}}\n",
     "bad.yaml:3: key 'random.n' expects an integer from 1 to 100000, got 'many'"},
    {"unknown random key", "name: a\nbase: b.yaml\nrandom: {n: 2, sed: 1, axes: {train.lr: [1]}}\n",
     "bad.yaml:3: unknown key 'random.sed'"},
    {"bad eval metric", "name: a\nbase: b.yaml\neval: {data: d, metric: bleu}\n", "bad.yaml:3: key 'eval.metric':"},
    {"bad set value", "name: a\nbase: b.yaml\nset:\n  train.max_steps: -3\n",
     "bad.yaml:4: set key 'train.max_steps': key 'train.max_steps' = -3 is out of range"},
    {"missing name", "base: b.yaml\ngrid: {train.lr: [1]}\n", "bad.yaml: the sweep has no `name:`"},
    {"missing base", "name: a\n", "bad.yaml: the sweep has no `base:`"},
    {"name with a slash", "name: a/b\nbase: b.yaml\n", "bad.yaml:1: key 'name': 'a/b' must be a directory name"},
    {"duplicate key", "name: a\nbase: b.yaml\nname: c\n", "bad.yaml:3: duplicate key 'name'"},
    {"syntax error", "name: a\n  base: [b\n", "bad.yaml:2: YAML syntax error"},
    {"not a mapping", "- a\n- b\n", "bad.yaml:1: a sweep file is a mapping"},
};

static int check_bad_files(void) {
    int fails = 0;
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        Sweep s;
        Error e = {{0}};
        int rc = sweep_load_string(&s, BAD[i].yaml, "bad.yaml", &e);
        printf("  %-32s -> %s\n", BAD[i].what, e.msg);
        char name[128], detail[600];
        snprintf(name, sizeof name, "rejects %s (file, line, key)", BAD[i].what);
        snprintf(detail, sizeof detail, "want prefix \"%s\"", BAD[i].want);
        fails += check_true(name, rc == -1 && strncmp(e.msg, BAD[i].want, strlen(BAD[i].want)) == 0, detail);
        sweep_free(&s);
    }
    Sweep s;
    Error e;
    int rc = sweep_load(&s, "/nonexistent/sweep.yaml", &e);
    fails += check_true("a missing sweep file is an error naming it", rc == -1 && strstr(e.msg, "/nonexistent/sweep.yaml"), e.msg);
    sweep_free(&s);
    return fails;
}

static void write_text(const char* path, const char* text) {
    FILE* f = fopen(path, "w");
    if (!f) fatal("cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

// The resolved config of a run (base relative to the sweep file, with extends; set:; the run's values;
// run_dir), and a sweep whose runs all have DONE runs nothing and says so.
static int check_run_config_and_skip(void) {
    char dir[] = "/tmp/modrwkv_sweep_XXXXXX";
    if (!mkdtemp(dir)) fatal("mkdtemp failed");
    char sub[64], common[96], base[96], sweep[96], runs[96];
    snprintf(sub, sizeof sub, "%s/cfg", dir);
    snprintf(runs, sizeof runs, "%s/runs", dir);
    mkdir_p(sub, NULL);
    snprintf(common, sizeof common, "%s/common.yaml", dir);
    snprintf(base, sizeof base, "%s/cfg/base.yaml", dir);
    snprintf(sweep, sizeof sweep, "%s/cfg/s.yaml", dir);
    write_text(common, "model: {n_layer: 2, n_embd: 64}\ndata: {train: corpus.txt, tokenizer: bytes}\n");
    write_text(base, "extends: ../common.yaml\ntrain: {max_steps: 100, lr: 1e-3}\n");
    char text[512];
    snprintf(text, sizeof text, "name: t\nbase: base.yaml\nruns_dir: %s\nset: {train.max_steps: 3}\n"
             "grid: {model.adapter.kind: [none, bone], train.lr: [2e-3]}\n", runs);
    write_text(sweep, text);
    Sweep s;
    Error e = {{0}};
    int rc = sweep_load(&s, sweep, &e);
    Config c;
    if (rc == 0) rc = sweep_run_config(&s, &s.runs[1], &c, &e);
    char want_dir[256];
    snprintf(want_dir, sizeof want_dir, "%s/t/%s", runs, rc == 0 ? s.runs[1].id : "");
    printf("  run 1: %s n_layer %d max_steps %d lr %g adapter %s\n", rc == 0 ? c.run_dir : e.msg, c.model.n_layer,
           c.train.max_steps, (double)c.train.lr, c.model.adapter.kind);
    int fails = check_true("run config = base (extends, relative to the sweep file) + set + the run's values + run_dir",
                           rc == 0 && c.model.n_layer == 2 && c.train.max_steps == 3 && c.train.lr == 2e-3f &&
                               strcmp(c.model.adapter.kind, "bone") == 0 && strcmp(c.run_dir, want_dir) == 0,
                           e.msg);
    // Every run marked DONE: the runner skips all of them (no training, no data needed).
    for (int i = 0; rc == 0 && i < s.n_runs; i++) {
        char d[512], done[600];
        sweep_run_dir(&s, &s.runs[i], d, sizeof d);
        mkdir_p(d, NULL);
        snprintf(done, sizeof done, "%s/DONE", d);
        write_text(done, "done\n");
    }
    char log[4096] = "";
    FILE* f = fmemopen(log, sizeof log - 1, "w");
    int failed = rc == 0 ? sweep_run_all(&s, f, NULL) : -1;
    fclose(f);
    printf("%s", log);
    fails += check_true("runs with DONE are skipped (resume skips finished runs)",
                        failed == 0 && strstr(log, "[1/2]") && strstr(log, "done, skipped") &&
                            strstr(log, "2 runs, 2 skipped (already done), 0 failed"),
                        log);
    f = fmemopen(log, sizeof log - 1, "w");
    if (rc == 0) sweep_print_status(&s, f);
    fclose(f);
    printf("%s", log);
    fails += check_true("status lists every run as done", rc == 0 && strstr(log, s.runs[0].id) && strstr(log, s.runs[1].id) &&
                        strstr(log, " done "), log);
    sweep_free(&s);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return fails;
}

int main(void) {
    int fails = 0;
    fails += check_grid_zip_random();
    fails += check_ids();
    fails += check_bad_files();
    fails += check_run_config_and_skip();
    return test_summary("test_sweep", fails);
}
