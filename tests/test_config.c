// test_config.c — the run configuration: documented defaults, nested YAML loading, every class of
// bad input (message and line number printed), --set overrides, exact round trip of the resolved YAML,
// cross-field validation and the --help key table.
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/testutil.h"
#include "trainer/config.h"

static int same_config(const Config* a, const Config* b) { return memcmp(a, b, sizeof *a) == 0; }

// Sets a string field the way the loader does: the whole field zeroed, then the text.
static void put(char* field, size_t size, const char* text) {
    memset(field, 0, size);
    memcpy(field, text, strlen(text));
}

static int check_defaults(void) {
    Config c;
    config_defaults(&c);
    int ok = strcmp(c.run_dir, "runs/default") == 0 && c.model.n_layer == 6 && c.model.n_embd == 256 &&
             c.model.vocab_size == 0 && c.model.head_size == 64 && c.model.lora_decay == 0 && c.model.lora_a == 0 &&
             c.model.lora_value == 0 && c.model.lora_gate == 0 && c.data.train[0] == 0 && c.data.val[0] == 0 &&
             strcmp(c.data.format, "auto") == 0 && strcmp(c.data.jsonl_key, "text") == 0 &&
             c.data.val_fraction == 0.05f && c.train.seed == 1 && c.train.ctx_len == 256 &&
             c.train.micro_batch == 4 && c.train.grad_accum == 1 && c.train.max_steps == 200 &&
             c.train.lr == 6e-4f && c.train.lr_final == 6e-5f && c.train.warmup_steps == 10 &&
             strcmp(c.train.schedule, "cosine") == 0 && c.train.wsd_decay_frac == 0.2f && c.train.beta1 == 0.9f &&
             c.train.beta2 == 0.99f && c.train.adam_eps == 1e-18f && c.train.weight_decay == 0.001f &&
             c.train.grad_clip == 1.0f && c.train.l2wrap == 1 && c.train.eval_every == 50 &&
             c.train.eval_batches == 8 && c.train.save_every == 100 && c.train.keep_checkpoints == 2 &&
             c.train.log_every == 1 && c.train.threads == 0;
    printf("defaults: init=%s tokenizer=%s\n", c.model.init, c.data.tokenizer);
    int fails = check_true("defaults match the documented values in config.h", ok, "a default differs");
    Error e;
    int rc = config_validate(&c, &e);
    printf("  validate(defaults): %s\n", rc ? e.msg : "ok");
    fails += check_true("defaults only lack data.train", rc == -1 && strstr(e.msg, "data.train") != NULL, e.msg);
    put(c.data.train, sizeof c.data.train, "corpus.txt");
    rc = config_validate(&c, &e);
    fails += check_true("defaults + data.train validate", rc == 0, e.msg);
    return fails;
}

static int check_nested_load(void) {
    const char* yaml =
        "# a comment\n"
        "run_dir: runs/exp1\n"
        "model:\n"
        "  n_layer: 12      # deeper\n"
        "  n_embd: 768\n"
        "data:\n"
        "  train: \"data/my corpus: v2.jsonl\"\n"
        "  format: jsonl\n"
        "  val_fraction: 0.1\n"
        "train:\n"
        "  lr: 3e-4\n"
        "  schedule: wsd\n"
        "  seed: 18446744073709551615\n"
        "  l2wrap: false\n"
        "train.ctx_len: 512\n";  // flat dotted keys address the same table
    Config c, want;
    config_defaults(&c);
    config_defaults(&want);
    Error e = {{0}};
    int rc = config_load_string(&c, yaml, "nested.yaml", &e);
    int fails = check_true("nested YAML loads", rc == 0, e.msg);
    put(want.run_dir, sizeof want.run_dir, "runs/exp1");
    want.model.n_layer = 12;
    want.model.n_embd = 768;
    put(want.data.train, sizeof want.data.train, "data/my corpus: v2.jsonl");
    put(want.data.format, sizeof want.data.format, "jsonl");
    want.data.val_fraction = 0.1f;
    want.train.lr = 3e-4f;
    put(want.train.schedule, sizeof want.train.schedule, "wsd");
    want.train.seed = UINT64_MAX;
    want.train.l2wrap = 0;
    want.train.ctx_len = 512;
    fails += check_true("nested YAML sets exactly the given keys", same_config(&c, &want), "config differs");

    // The same through a file, and layering: a second file only changes its own keys.
    const char* path = "/tmp/modrwkv_test_config.yaml";
    FILE* f = fopen(path, "w");
    fputs("train:\n  lr: 1e-3\n", f);
    fclose(f);
    rc = config_load(&c, path, &e);
    want.train.lr = 1e-3f;
    fails += check_true("config_load layers a file on top", rc == 0 && same_config(&c, &want), e.msg);
    rc = config_load(&c, "/nonexistent/x.yaml", &e);
    printf("  missing file: %s\n", e.msg);
    fails += check_true("missing config file is an error naming it", rc == -1 && strstr(e.msg, "/nonexistent/x.yaml"),
                        e.msg);
    f = fopen(path, "w");
    fputs("train:\n  lr: 1e-3\n  warmup: 5\n", f);
    fclose(f);
    rc = config_load(&c, path, &e);
    printf("  bad file: %s\n", e.msg);
    fails += check_true("errors in a file are reported as PATH:LINE",
                        rc == -1 && strncmp(e.msg, "/tmp/modrwkv_test_config.yaml:3: unknown key 'train.warmup'", 59) == 0,
                        e.msg);
    unlink(path);
    return fails;
}

typedef struct BadCase {
    const char* what;
    const char* yaml;
    const char* want;  // expected message prefix (file:line: ...)
} BadCase;

static const BadCase BAD[] = {
    {"unknown key, with suggestion", "train:\n  lrr: 3e-4\n",
     "bad.yaml:2: unknown key 'train.lrr' (did you mean 'train.lr'? `modrwkv train --help` lists all keys)"},
    {"unknown key, nothing close", "train:\n  lr: 1\n  colour: blue\n",
     "bad.yaml:3: unknown key 'train.colour' (`modrwkv train --help` lists all keys)"},
    {"key in the wrong section", "lr: 3e-4\n", "bad.yaml:1: unknown key 'lr' (did you mean 'train.lr'?"},
    {"misspelled section", "trian:\n  lr: 1\n", "bad.yaml:1: unknown key 'trian' (did you mean 'train'?"},
    {"not a number", "train:\n  lr: fast\n", "bad.yaml:2: key 'train.lr' expects a number, got 'fast'"},
    {"number with junk", "train:\n  lr: 3e-4x\n", "bad.yaml:2: key 'train.lr' expects a number, got '3e-4x'"},
    {"float for an integer", "train:\n\n  ctx_len: 256.5\n",
     "bad.yaml:3: key 'train.ctx_len' expects an integer, got '256.5'"},
    {"empty value", "train:\n  ctx_len:\n", "bad.yaml:2: key 'train.ctx_len' expects an integer, got ''"},
    {"negative size", "model:\n  n_layer: -2\n", "bad.yaml:2: key 'model.n_layer' = -2 is out of range: it must be >= 1"},
    {"zero batch", "train:\n  micro_batch: 0\n", "bad.yaml:2: key 'train.micro_batch' = 0 is out of range"},
    {"integer overflow", "train:\n  max_steps: 99999999999\n", "bad.yaml:2: key 'train.max_steps' = 99999999999 is out of range"},
    {"negative u64", "train:\n  seed: -1\n", "bad.yaml:2: key 'train.seed' expects a non-negative integer, got '-1'"},
    {"u64 overflow", "train:\n  seed: 18446744073709551616\n", "bad.yaml:2: key 'train.seed' = 18446744073709551616 does not fit"},
    {"beta out of [0,1)", "train:\n  beta2: 1.0\n", "bad.yaml:2: key 'train.beta2' = 1.0 is out of range: it must be >= 0 and < 1"},
    {"negative lr", "train:\n  lr: -1e-3\n", "bad.yaml:2: key 'train.lr' = -1e-3 is out of range"},
    {"float overflow", "train:\n  lr: 1e39\n", "bad.yaml:2: key 'train.lr' = 1e39 is out of range"},
    {"float underflow", "train:\n  adam_eps: 1e-50\n", "bad.yaml:2: key 'train.adam_eps' = 1e-50 is too small"},
    {"nan", "train:\n  lr: nan\n", "bad.yaml:2: key 'train.lr' expects a number, got 'nan'"},
    {"bad bool", "train:\n  l2wrap: maybe\n", "bad.yaml:2: key 'train.l2wrap' expects true or false, got 'maybe'"},
    {"bad enum", "train:\n  schedule: cosin\n", "bad.yaml:2: key 'train.schedule': 'cosin' is not one of cosine|wsd|constant"},
    {"mapping where a scalar is expected", "train:\n  lr:\n    peak: 1\n",
     "bad.yaml:3: key 'train.lr' expects a number, got a mapping"},
    {"sequence value", "train:\n  lr: [1, 2]\n", "bad.yaml:2: key 'train.lr' expects a number, got a sequence"},
    {"scalar where a section is expected", "train: 3\n", "bad.yaml:1: 'train' is a section"},
    {"sequence where a section is expected", "model:\n  - n_layer: 2\n", "bad.yaml:1: 'model' is a section"},
    {"duplicate key", "train:\n  lr: 1\n  beta1: 0.5\n  lr: 2\n", "bad.yaml:4: duplicate key 'lr' (first on line 2"},
    {"duplicate section", "train:\n  lr: 1\nmodel:\n  n_layer: 2\ntrain:\n  beta1: 0.5\n",
     "bad.yaml:5: duplicate key 'train' (first on line 1"},
    {"duplicate via dotted key", "train.lr: 1\ntrain:\n  lr: 2\n",
     "bad.yaml:3: duplicate key 'train.lr' (first set on line 1"},
    {"string too long", NULL, "bad.yaml:2: key 'data.jsonl_key': the value is 70 bytes, longer than the limit of 63"},
    {"NUL inside a string", "data:\n  train: \"a\\0b\"\n", "bad.yaml:2: key 'data.train': the value contains a NUL"},
    {"top level not a mapping", "- train\n- model\n", "bad.yaml:1: the top level must be a mapping"},
    {"bad indentation", "train:\n  lr: 1\n    beta1: 2\n", "bad.yaml:3: YAML syntax error"},
    {"unclosed quote", "run_dir: \"abc\ntrain:\n  lr: 1\n", "bad.yaml:4: YAML syntax error"},
    {"tab indentation", "train:\n\tlr: 1\n", "bad.yaml:2: YAML syntax error"},
    {"two documents", "train:\n  lr: 1\n---\nmodel:\n  n_layer: 2\n", "bad.yaml:3: a second YAML document"},
    {"non-scalar key", "? [a, b]\n: 1\n", "bad.yaml:1: keys must be plain names"},
};

static int check_bad_inputs(void) {
    int fails = 0;
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        char long_key[256];
        const char* yaml = BAD[i].yaml;
        if (!yaml) {  // a 70-character jsonl_key (the field holds 63)
            snprintf(long_key, sizeof long_key, "data:\n  jsonl_key: %070d\n", 7);
            yaml = long_key;
        }
        Config c, before;
        config_defaults(&c);
        config_defaults(&before);
        Error e = {{0}};
        int rc = config_load_string(&c, yaml, "bad.yaml", &e);
        printf("  %-38s -> %s\n", BAD[i].what, e.msg);
        char name[128];
        snprintf(name, sizeof name, "rejects %s (message, line)", BAD[i].what);
        char detail[1200];
        snprintf(detail, sizeof detail, "want prefix \"%s\"", BAD[i].want);
        fails += check_true(name, rc == -1 && strncmp(e.msg, BAD[i].want, strlen(BAD[i].want)) == 0, detail);
        snprintf(name, sizeof name, "a failed load leaves the config unchanged (%s)", BAD[i].what);
        fails += check_true(name, same_config(&c, &before), "config was modified");
    }
    return fails;
}

static int check_set(void) {
    Config c, want;
    config_defaults(&c);
    config_defaults(&want);
    Error e = {{0}};
    int fails = 0;
    int rc = config_set(&c, "train.lr=3e-4", &e) | config_set(&c, " model.n_layer = 3 ", &e) |
             config_set(&c, "data.train=/data/a=b.txt", &e) | config_set(&c, "run_dir=\"runs/x y\"", &e) |
             config_set(&c, "data.val=", &e) | config_set(&c, "train.schedule=constant", &e) |
             config_set(&c, "data.jsonl_key='content'", &e);
    want.train.lr = 3e-4f;
    want.model.n_layer = 3;
    put(want.data.train, sizeof want.data.train, "/data/a=b.txt");
    put(want.run_dir, sizeof want.run_dir, "runs/x y");
    put(want.train.schedule, sizeof want.train.schedule, "constant");
    put(want.data.jsonl_key, sizeof want.data.jsonl_key, "content");
    fails += check_true("--set applies key=value (spaces trimmed, first '=' splits, YAML quotes removed)",
                        rc == 0 && same_config(&c, &want), e.msg);
    const struct { const char* set; const char* want; } bad[] = {
        {"train.lrr=3e-4", "--set train.lrr: unknown key 'train.lrr' (did you mean 'train.lr'? `modrwkv train --help` lists all keys)"},
        {"train.lr", "--set train.lr: expected key=value"},
        {"train.lr=abc", "--set train.lr: key 'train.lr' expects a number, got 'abc'"},
        {"model.n_embd=-256", "--set model.n_embd: key 'model.n_embd' = -256 is out of range"},
        {"train=1", "--set train: 'train' is a section"},
        {"train.schedule=linear", "--set train.schedule: key 'train.schedule': 'linear' is not one of"},
        {"run_dir=\"unterminated", "--set run_dir:1: YAML syntax error"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Config before = c;
        rc = config_set(&c, bad[i].set, &e);
        printf("  --set %-24s -> %s\n", bad[i].set, e.msg);
        char name[128];
        snprintf(name, sizeof name, "--set %s is rejected and changes nothing", bad[i].set);
        fails += check_true(name, rc == -1 && strncmp(e.msg, bad[i].want, strlen(bad[i].want)) == 0 &&
                                      same_config(&c, &before), bad[i].want);
    }
    return fails;
}

// A config in which every key differs from its default, with awkward strings and floats.
static void unusual_config(Config* c) {
    config_defaults(c);
    put(c->run_dir, sizeof c->run_dir, "runs/\"quoted\" #hash: colon\\back\tslash");
    put(c->model.init, sizeof c->model.init, "  leading spaces and ünïcödé");
    c->model.n_layer = 24;
    c->model.n_embd = 2048;
    c->model.vocab_size = 65536;
    c->model.head_size = 128;
    c->model.lora_decay = 96;
    c->model.lora_a = 80;
    c->model.lora_value = 64;
    c->model.lora_gate = 256;
    put(c->data.train, sizeof c->data.train, "null");
    put(c->data.val, sizeof c->data.val, "- not a list\nsecond line");
    put(c->data.format, sizeof c->data.format, "binidx");
    put(c->data.jsonl_key, sizeof c->data.jsonl_key, "true");
    c->data.val_fraction = 1.0f / 3.0f;
    put(c->data.tokenizer, sizeof c->data.tokenizer, "bytes");
    c->train.seed = 18446744073709551615ull;
    c->train.ctx_len = 4096;
    c->train.micro_batch = 30;
    c->train.grad_accum = 7;
    c->train.max_steps = 0;
    c->train.lr = 8e-4f;
    c->train.lr_final = 3e-5f;
    c->train.warmup_steps = 0;
    put(c->train.schedule, sizeof c->train.schedule, "wsd");
    c->train.wsd_decay_frac = 0.1f;
    c->train.beta1 = 0.99999994f;  // the largest float below 1
    c->train.beta2 = 0.95f;
    c->train.adam_eps = 1.4e-45f;  // the smallest denormal
    c->train.weight_decay = FLT_MAX;
    c->train.grad_clip = 0.0f;
    c->train.l2wrap = 0;
    c->train.eval_every = 0;
    c->train.eval_batches = 1;
    c->train.save_every = 0;
    c->train.keep_checkpoints = 1000;
    c->train.log_every = 10;
    c->train.threads = 16;
    c->parallel.dp = 8;          // parallel.tp has only its default value (1) so far
    c->parallel.zero = 1;
    c->parallel.timeout_s = 60;
}

static int check_round_trip(void) {
    Config a, b, d;
    unusual_config(&a);
    char* yaml = config_to_yaml(&a);
    Error e = {{0}};
    config_defaults(&b);
    int rc = config_load_string(&b, yaml, "resolved.yaml", &e);
    int fails = check_true("resolved YAML of an unusual config reads back identically (memcmp)",
                           rc == 0 && same_config(&a, &b), e.msg);
    if (rc != 0 || !same_config(&a, &b)) printf("%s\n", yaml);
    free(yaml);

    // Every key is written: loading the defaults' YAML over the unusual config restores every default.
    config_defaults(&d);
    yaml = config_to_yaml(&d);
    printf("--- resolved YAML of the defaults ---\n%s---\n", yaml);
    rc = config_load_string(&a, yaml, "defaults.yaml", &e);
    fails += check_true("resolved YAML lists every key (it overwrites every field)", rc == 0 && same_config(&a, &d),
                        e.msg);
    free(yaml);

    // Floats round-trip exactly over many magnitudes.
    TestRng r;
    test_rng_seed(&r, 7);
    int bad = 0;
    for (int i = 0; i < 20000 && !bad; i++) {
        float m = test_rng_uniform(&r, 1.0f, 2.0f);
        int ex = (int)test_rng_uniform(&r, -120.0f, 120.0f);
        config_defaults(&a);
        a.train.lr = ldexpf(m, ex);
        yaml = config_to_yaml(&a);
        config_defaults(&b);
        if (config_load_string(&b, yaml, "f.yaml", &e) != 0 || b.train.lr != a.train.lr) {
            printf("  float %.9g did not round-trip\n", (double)a.train.lr);
            bad = 1;
        }
        free(yaml);
    }
    fails += check_true("20000 random floats (2^-120..2^120) round-trip bit-exactly", !bad, "see above");
    return fails;
}

static int check_validate(void) {
    const struct { const char* set; const char* want; } cases[] = {
        {"model.n_embd=100", "model.n_embd = 100 is not a multiple of model.head_size = 64"},
        {"model.head_size=63", "model.head_size = 63 must be even"},
        {"data.train=", "data.train is empty"},
    };
    int fails = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Config c;
        config_defaults(&c);
        put(c.data.train, sizeof c.data.train, "x.txt");
        Error e = {{0}};
        int rc = config_set(&c, cases[i].set, &e);
        rc = rc == 0 ? config_validate(&c, &e) : 99;
        printf("  validate with %-20s -> %s\n", cases[i].set, e.msg);
        char name[96];
        snprintf(name, sizeof name, "validate rejects %s", cases[i].set);
        fails += check_true(name, rc == -1 && strstr(e.msg, cases[i].want) != NULL, cases[i].want);
    }
    // Fields set directly in C (not through the parser) are range-checked too.
    Config c;
    config_defaults(&c);
    put(c.data.train, sizeof c.data.train, "x.txt");
    c.train.beta1 = 1.0f;
    Error e = {{0}};
    int rc = config_validate(&c, &e);
    printf("  validate with beta1 = 1 (set in C) -> %s\n", e.msg);
    fails += check_true("validate re-checks per-key ranges", rc == -1 && strstr(e.msg, "train.beta1"), e.msg);
    config_defaults(&c);
    put(c.data.train, sizeof c.data.train, "x.txt");
    put(c.train.schedule, sizeof c.train.schedule, "linear");
    rc = config_validate(&c, &e);
    printf("  validate with schedule = linear (set in C) -> %s\n", e.msg);
    fails += check_true("validate re-checks enums", rc == -1 && strstr(e.msg, "train.schedule"), e.msg);
    config_defaults(&c);
    put(c.data.train, sizeof c.data.train, "x.txt");
    c.model.head_size = 32;
    c.model.n_embd = 96;
    fails += check_true("any even head_size dividing n_embd is valid (32 | 96)", config_validate(&c, &e) == 0, e.msg);
    return fails;
}

static int check_print_keys(void) {
    FILE* f = tmpfile();
    config_print_keys(f);
    long n = ftell(f);
    rewind(f);
    char* text = xcalloc((size_t)n + 1, 1);
    size_t got = fread(text, 1, (size_t)n, f);
    fclose(f);
    int lines = 0;
    for (size_t i = 0; i < got; i++) lines += text[i] == '\n';
    printf("%s", text);
    int ok = strstr(text, "train.lr ") && strstr(text, "peak learning rate") && strstr(text, "cosine|wsd|constant") &&
             strstr(text, "model.n_embd") && strstr(text, "data.jsonl_key") && lines == 1 + 81;
    free(text);
    return check_true("print_keys lists the header and all 81 keys with type, default and help", ok, "missing rows");
}

static void write_text(const char* path, const char* text) {
    FILE* f = fopen(path, "w");
    if (!f) fatal("cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

// `extends:`: the base file first (its path relative to the including file), then the including file's
// keys; chains are followed; a cycle, a missing base and an error inside a base are one-line errors.
static int check_extends(void) {
    char dir[] = "/tmp/modrwkv_extends_XXXXXX";
    if (!mkdtemp(dir)) fatal("mkdtemp failed");
    char sub[64], base[96], mid[96], top[96], a[96], b[96], bad[96], child[96], missing[96];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    if (mkdir_p(sub, NULL) != 0) fatal("mkdir failed");
    snprintf(base, sizeof base, "%s/base.yaml", dir);
    snprintf(mid, sizeof mid, "%s/sub/mid.yaml", dir);
    snprintf(top, sizeof top, "%s/sub/top.yaml", dir);
    write_text(base, "model:\n  n_layer: 2\n  n_embd: 64\ntrain:\n  lr: 1e-3\n  max_steps: 10\n");
    write_text(mid, "extends: ../base.yaml\ntrain:\n  lr: 2e-3\n");
    write_text(top, "train.max_steps: 30\nextends: mid.yaml\n");  // the position of extends does not matter
    Config c, want;
    config_defaults(&c);
    config_defaults(&want);
    want.model.n_layer = 2;
    want.model.n_embd = 64;
    want.train.lr = 2e-3f;
    want.train.max_steps = 30;
    Error e = {{0}};
    int rc = config_load(&c, top, &e);
    printf("  extends chain: n_layer %d n_embd %d lr %g max_steps %d\n", c.model.n_layer, c.model.n_embd,
           (double)c.train.lr, c.train.max_steps);
    int fails = check_true("extends chain: base, then mid, then top (paths relative to each file)",
                           rc == 0 && same_config(&c, &want), e.msg);

    snprintf(a, sizeof a, "%s/a.yaml", dir);
    snprintf(b, sizeof b, "%s/b.yaml", dir);
    write_text(a, "extends: b.yaml\ntrain:\n  lr: 1\n");
    write_text(b, "train:\n  lr: 2\nextends: ./a.yaml\n");
    Config before;
    config_defaults(&c);
    config_defaults(&before);
    rc = config_load(&c, a, &e);
    printf("  cycle: %s\n", e.msg);
    fails += check_true("an extends cycle is an error naming the files; nothing changes",
                        rc == -1 && strstr(e.msg, "extends cycle") && strstr(e.msg, "a.yaml -> ") &&
                            strstr(e.msg, "b.yaml -> ") && same_config(&c, &before),
                        e.msg);
    snprintf(missing, sizeof missing, "%s/missing.yaml", dir);
    write_text(missing, "extends: nowhere.yaml\n");
    rc = config_load(&c, missing, &e);
    printf("  missing base: %s\n", e.msg);
    fails += check_true("a missing base is an error naming the including file, line and the base",
                        rc == -1 && strstr(e.msg, "missing.yaml:1: extends: cannot read") && strstr(e.msg, "nowhere.yaml"),
                        e.msg);
    snprintf(bad, sizeof bad, "%s/bad.yaml", dir);
    snprintf(child, sizeof child, "%s/child.yaml", dir);
    write_text(bad, "train:\n  lrr: 1\n");
    write_text(child, "extends: bad.yaml\n");
    rc = config_load(&c, child, &e);
    printf("  error in base: %s\n", e.msg);
    fails += check_true("an error inside a base names the base file and line; nothing changes",
                        rc == -1 && strstr(e.msg, "bad.yaml:2: unknown key 'train.lrr'") && same_config(&c, &before),
                        e.msg);
    write_text(child, "extends: [a, b]\n");
    rc = config_load(&c, child, &e);
    printf("  extends list: %s\n", e.msg);
    fails += check_true("extends must be one path", rc == -1 && strstr(e.msg, "child.yaml:1: key 'extends' expects"),
                        e.msg);

    const char* files[] = {top, mid, base, a, b, missing, bad, child};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) unlink(files[i]);
    rmdir(sub);
    rmdir(dir);
    return fails;
}

int main(void) {
    int fails = 0;
    fails += check_extends();
    fails += check_defaults();
    fails += check_nested_load();
    fails += check_bad_inputs();
    fails += check_set();
    fails += check_round_trip();
    fails += check_validate();
    fails += check_print_keys();
    return test_summary("test_config", fails);
}
