// sweep.c — see sweep.h. Parsing (libyaml document), expansion (grid x zip x random), run ids (SHA-256),
// and the local runner/status over the run directories.
#include "experiments/sweep.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "experiments/eval.h"
#include "kernels/kernels.h"
#include "sharding/comm.h"
#include "trainer/checkpoint.h"
#include "trainer/train.h"

// ---------------------------------------------------------------------------------------------------- lists

typedef struct Point {    // one assignment of values to axes
    SweepParam* p;
    int n;
} Point;

typedef struct PointList {
    Point* v;
    int n;
} PointList;

static void point_add(Point* pt, const char* key, const char* value) {
    pt->p = xrealloc(pt->p, (size_t)(pt->n + 1) * sizeof *pt->p);
    pt->p[pt->n].key = xstrdup(key);
    pt->p[pt->n].value = xstrdup(value);
    pt->n++;
}

static void point_free(Point* pt) {
    for (int i = 0; i < pt->n; i++) {
        free(pt->p[i].key);
        free(pt->p[i].value);
    }
    free(pt->p);
    pt->p = NULL;
    pt->n = 0;
}

static Point point_copy(const Point* a) {
    Point c = {NULL, 0};
    for (int i = 0; i < a->n; i++) point_add(&c, a->p[i].key, a->p[i].value);
    return c;
}

static void list_push(PointList* l, Point pt) {
    l->v = xrealloc(l->v, (size_t)(l->n + 1) * sizeof *l->v);
    l->v[l->n++] = pt;
}

static void list_free(PointList* l) {
    for (int i = 0; i < l->n; i++) point_free(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

// Every point of a followed by every point of b (a's order slowest).
static PointList list_product(const PointList* a, const PointList* b) {
    PointList out = {NULL, 0};
    for (int i = 0; i < a->n; i++)
        for (int j = 0; j < b->n; j++) {
            Point pt = point_copy(&a->v[i]);
            for (int k = 0; k < b->v[j].n; k++) point_add(&pt, b->v[j].p[k].key, b->v[j].p[k].value);
            list_push(&out, pt);
        }
    return out;
}

static PointList list_unit(void) {
    PointList l = {NULL, 0};
    list_push(&l, (Point){NULL, 0});
    return l;
}

// ---------------------------------------------------------------------------------------------------- YAML

typedef struct Parser {
    const char* name;
    yaml_document_t doc;
    Error* e;
    char** seen_keys;    // axis keys of every block (a key may appear in one block only)
    int n_seen;
} Parser;

static size_t line_of(const yaml_node_t* n) { return n->start_mark.line + 1; }
static const char* text_of(const yaml_node_t* n) { return (const char*)n->data.scalar.value; }
static yaml_node_t* node(Parser* P, int id) { return yaml_document_get_node(&P->doc, id); }

static const char* kind_of(const yaml_node_t* n) {
    return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar";
}

static int want_scalar(Parser* P, yaml_node_t* v, const char* key, const char* what) {
    if (v->type == YAML_SCALAR_NODE && v->data.scalar.length > 0) return 0;
    return errorf(P->e, "%s:%zu: key '%s' expects %s, got %s", P->name, line_of(v), key, what,
                  v->type == YAML_SCALAR_NODE ? "nothing" : kind_of(v));
}

static int want_mapping(Parser* P, yaml_node_t* v, const char* key, const char* example) {
    if (v->type == YAML_MAPPING_NODE) return 0;
    return errorf(P->e, "%s:%zu: key '%s' expects a mapping (e.g. %s), got %s", P->name, line_of(v), key, example,
                  kind_of(v));
}

// Checks that `key=value` is a valid override of a config key (type, range, choices).
static int check_override(Parser* P, const yaml_node_t* at, const char* block, const char* key, const char* value) {
    if (strcmp(key, "run_dir") == 0)
        return errorf(P->e, "%s:%zu: %s key 'run_dir': the sweep sets each run's directory (remove it)", P->name,
                      line_of(at), block);
    Config* c = xmalloc(sizeof *c);
    config_defaults(c);
    size_t n = strlen(key) + strlen(value) + 2;
    char* set = xmalloc(n);
    snprintf(set, n, "%s=%s", key, value);
    Error inner;
    int rc = config_set(c, set, &inner);
    free(set);
    free(c);
    if (rc == 0) return 0;
    const char* msg = strncmp(inner.msg, "--set ", 6) == 0 ? strchr(inner.msg, ':') + 2 : inner.msg;
    return errorf(P->e, "%s:%zu: %s key '%s': %s", P->name, line_of(at), block, key, msg);
}

static int claim_key(Parser* P, const yaml_node_t* at, const char* key) {
    for (int i = 0; i < P->n_seen; i++)
        if (strcmp(P->seen_keys[i], key) == 0)
            return errorf(P->e, "%s:%zu: axis '%s' appears twice (a key may be varied in one block only)", P->name,
                          line_of(at), key);
    P->seen_keys = xrealloc(P->seen_keys, (size_t)(P->n_seen + 1) * sizeof *P->seen_keys);
    P->seen_keys[P->n_seen++] = xstrdup(key);
    return 0;
}

// An axis `key: [v1, v2, ...]`: checks every value; returns the value nodes' count (or -1).
static int read_axis(Parser* P, yaml_node_t* k, yaml_node_t* v, const char* block) {
    if (k->type != YAML_SCALAR_NODE)
        return errorf(P->e, "%s:%zu: %s: axis names must be config keys such as train.lr", P->name, line_of(k), block);
    const char* key = text_of(k);
    if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top == v->data.sequence.items.start)
        return errorf(P->e, "%s:%zu: %s axis '%s' expects a non-empty list of values (e.g. [1e-3, 3e-3]), got %s",
                      P->name, line_of(v), block, key, v->type == YAML_SEQUENCE_NODE ? "an empty list" : kind_of(v));
    if (claim_key(P, k, key) != 0) return -1;
    for (yaml_node_item_t* it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t* x = node(P, *it);
        if (x->type != YAML_SCALAR_NODE)
            return errorf(P->e, "%s:%zu: %s axis '%s': values must be scalars, got %s (pair keys with zip:)", P->name,
                          line_of(x), block, key, kind_of(x));
        if (check_override(P, x, block, key, text_of(x)) != 0) return -1;
    }
    return (int)(v->data.sequence.items.top - v->data.sequence.items.start);
}

static const char* axis_value(Parser* P, yaml_node_t* v, int i) { return text_of(node(P, v->data.sequence.items.start[i])); }

static int parse_grid(Parser* P, yaml_node_t* map, PointList* out) {
    if (want_mapping(P, map, "grid", "`grid: {train.lr: [1e-3, 3e-3]}`") != 0) return -1;
    *out = list_unit();
    for (yaml_node_pair_t* p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(P, p->key), *v = node(P, p->value);
        int n = read_axis(P, k, v, "grid");
        if (n < 0) return -1;
        PointList axis = {NULL, 0};
        for (int i = 0; i < n; i++) {
            Point pt = {NULL, 0};
            point_add(&pt, text_of(k), axis_value(P, v, i));
            list_push(&axis, pt);
        }
        PointList next = list_product(out, &axis);
        list_free(&axis);
        list_free(out);
        *out = next;
    }
    return 0;
}

static int parse_zip(Parser* P, yaml_node_t* map, PointList* out) {
    if (want_mapping(P, map, "zip", "`zip: {model.projector.conv_kernel: [3, 4], model.projector.conv_stride: [2, 3]}`") != 0)
        return -1;
    int len = -1;
    const char* first = NULL;
    for (yaml_node_pair_t* p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(P, p->key), *v = node(P, p->value);
        int n = read_axis(P, k, v, "zip");
        if (n < 0) return -1;
        if (len >= 0 && n != len)
            return errorf(P->e, "%s:%zu: zip axis '%s' has %d values but '%s' has %d (zip lists must have equal lengths)",
                          P->name, line_of(k), text_of(k), n, first, len);
        if (len < 0) {
            for (int i = 0; i < n; i++) list_push(out, (Point){NULL, 0});
            len = n;
            first = text_of(k);
        }
        for (int i = 0; i < n; i++) point_add(&out->v[i], text_of(k), axis_value(P, v, i));
    }
    if (len < 0) *out = list_unit();
    return 0;
}

static uint64_t splitmix64(uint64_t* state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int parse_count(Parser* P, yaml_node_t* v, const char* key, long long lo, long long hi, long long* out) {
    if (want_scalar(P, v, key, "an integer") != 0) return -1;
    char* end;
    errno = 0;
    long long x = strtoll(text_of(v), &end, 10);
    if (*end != 0 || errno != 0 || x < lo || x > hi)
        return errorf(P->e, "%s:%zu: key '%s' expects an integer from %lld to %lld, got '%s'", P->name, line_of(v), key,
                      lo, hi, text_of(v));
    *out = x;
    return 0;
}

static int parse_random(Parser* P, yaml_node_t* map, PointList* out) {
    if (want_mapping(P, map, "random", "`random: {n: 4, seed: 1, axes: {train.lr: [1e-3, 3e-3]}}`") != 0) return -1;
    long long n = -1, seed = 0;
    yaml_node_t* axes = NULL;
    for (yaml_node_pair_t* p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(P, p->key), *v = node(P, p->value);
        const char* key = k->type == YAML_SCALAR_NODE ? text_of(k) : "?";
        if (strcmp(key, "n") == 0) {
            if (parse_count(P, v, "random.n", 1, 100000, &n) != 0) return -1;
        } else if (strcmp(key, "seed") == 0) {
            if (parse_count(P, v, "random.seed", 0, INT64_MAX, &seed) != 0) return -1;
        } else if (strcmp(key, "axes") == 0) {
            if (want_mapping(P, v, "random.axes", "`axes: {train.lr: [1e-3, 3e-3]}`") != 0) return -1;
            axes = v;
        } else {
            return errorf(P->e, "%s:%zu: unknown key 'random.%s' (random takes n, seed and axes)", P->name, line_of(k), key);
        }
    }
    if (n < 0 || !axes)
        return errorf(P->e, "%s:%zu: random needs `n:` (samples) and `axes:` (e.g. `random: {n: 4, seed: 1, axes: "
                      "{train.lr: [1e-3, 3e-3]}}`)", P->name, line_of(map));
    for (long long i = 0; i < n; i++) list_push(out, (Point){NULL, 0});
    uint64_t state = (uint64_t)seed;
    int counts[256];
    int n_axes = 0;
    for (yaml_node_pair_t* p = axes->data.mapping.pairs.start; p < axes->data.mapping.pairs.top; p++, n_axes++) {
        if (n_axes == 256) return errorf(P->e, "%s:%zu: random: more than 256 axes", P->name, line_of(axes));
        counts[n_axes] = read_axis(P, node(P, p->key), node(P, p->value), "random");
        if (counts[n_axes] < 0) return -1;
    }
    for (long long i = 0; i < n; i++) {  // sample i: one draw per axis, in file order
        int a = 0;
        for (yaml_node_pair_t* p = axes->data.mapping.pairs.start; p < axes->data.mapping.pairs.top; p++, a++) {
            int pick = (int)(splitmix64(&state) % (uint64_t)counts[a]);
            point_add(&out->v[i], text_of(node(P, p->key)), axis_value(P, node(P, p->value), pick));
        }
    }
    return 0;
}

static int parse_set(Parser* P, yaml_node_t* map, Sweep* s) {
    if (want_mapping(P, map, "set", "`set: {train.max_steps: 50}`") != 0) return -1;
    for (yaml_node_pair_t* p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(P, p->key), *v = node(P, p->value);
        if (k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE)
            return errorf(P->e, "%s:%zu: set: expects `key: value` pairs of scalars", P->name, line_of(k));
        if (claim_key(P, k, text_of(k)) != 0 || check_override(P, v, "set", text_of(k), text_of(v)) != 0) return -1;
        s->fixed = xrealloc(s->fixed, (size_t)(s->n_fixed + 1) * sizeof *s->fixed);
        s->fixed[s->n_fixed].key = xstrdup(text_of(k));
        s->fixed[s->n_fixed].value = xstrdup(text_of(v));
        s->n_fixed++;
    }
    return 0;
}

static int parse_eval(Parser* P, yaml_node_t* map, Sweep* s) {
    if (want_mapping(P, map, "eval", "`eval: {data: runs/demo-data/digits_qa/test, metric: accuracy}`") != 0) return -1;
    for (yaml_node_pair_t* p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(P, p->key), *v = node(P, p->value);
        const char* key = k->type == YAML_SCALAR_NODE ? text_of(k) : "?";
        if (strcmp(key, "max_samples") == 0) {
            long long n;
            if (parse_count(P, v, "eval.max_samples", 0, INT64_MAX, &n) != 0) return -1;
            s->eval_max_samples = (int64_t)n;
            continue;
        }
        char** field = strcmp(key, "data") == 0 ? &s->eval_data : strcmp(key, "metric") == 0 ? &s->eval_metric : NULL;
        if (!field)
            return errorf(P->e, "%s:%zu: unknown key 'eval.%s' (eval takes data, metric and max_samples)", P->name,
                          line_of(k), key);
        if (want_scalar(P, v, key, "a value") != 0) return -1;
        free(*field);
        *field = xstrdup(text_of(v));
    }
    EvalMetric m;
    Error inner;
    if (!s->eval_data || !s->eval_metric)
        return errorf(P->e, "%s:%zu: eval needs data and metric (accuracy, wer, mc, mse, lambada or perplexity)", P->name, line_of(map));
    if (eval_parse_metric(s->eval_metric, &m, &inner) != 0)
        return errorf(P->e, "%s:%zu: key 'eval.metric': %s", P->name, line_of(map), inner.msg);
    return 0;
}

static char* resolve_relative(const char* file, const char* rel) {
    const char* slash = strrchr(file, '/');
    size_t n = strlen(file) + strlen(rel) + 2;
    char* out = xmalloc(n);
    if (rel[0] == '/' || !slash) snprintf(out, n, "%s", rel);
    else snprintf(out, n, "%.*s/%s", (int)(slash - file), file, rel);
    return out;
}

static int parse_top(Parser* P, yaml_node_t* root, Sweep* s, PointList blocks[3]) {
    static const char* const KNOWN = "name, base, runs_dir, set, grid, zip, random, eval";
    for (yaml_node_pair_t* p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(P, p->key), *v = node(P, p->value);
        const char* key = k->type == YAML_SCALAR_NODE ? text_of(k) : "?";
        for (yaml_node_pair_t* q = root->data.mapping.pairs.start; q < p; q++)
            if (node(P, q->key)->type == YAML_SCALAR_NODE && strcmp(text_of(node(P, q->key)), key) == 0)
                return errorf(P->e, "%s:%zu: duplicate key '%s' (keep one)", P->name, line_of(k), key);
        int rc;
        if (strcmp(key, "name") == 0 || strcmp(key, "base") == 0 || strcmp(key, "runs_dir") == 0) {
            rc = want_scalar(P, v, key, strcmp(key, "name") == 0 ? "a name" : "a path");
            if (rc == 0 && strcmp(key, "name") == 0) {
                if (strspn(text_of(v), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
                        strlen(text_of(v)) || text_of(v)[0] == '.')
                    return errorf(P->e, "%s:%zu: key 'name': '%s' must be a directory name of letters, digits, '.', "
                                  "'_' and '-'", P->name, line_of(v), text_of(v));
                s->name = xstrdup(text_of(v));
            }
            if (rc == 0 && strcmp(key, "base") == 0) s->base = resolve_relative(P->name, text_of(v));
            if (rc == 0 && strcmp(key, "runs_dir") == 0) {
                free(s->runs_dir);
                s->runs_dir = xstrdup(text_of(v));
            }
        } else if (strcmp(key, "set") == 0) rc = parse_set(P, v, s);
        else if (strcmp(key, "grid") == 0) rc = parse_grid(P, v, &blocks[0]);
        else if (strcmp(key, "zip") == 0) rc = parse_zip(P, v, &blocks[1]);
        else if (strcmp(key, "random") == 0) rc = parse_random(P, v, &blocks[2]);
        else if (strcmp(key, "eval") == 0) rc = parse_eval(P, v, s);
        else rc = errorf(P->e, "%s:%zu: unknown sweep key '%s' (a sweep file takes %s)", P->name, line_of(k), key, KNOWN);
        if (rc != 0) return -1;
    }
    if (!s->name) return errorf(P->e, "%s: the sweep has no `name:` (add e.g. `name: lr-sweep`)", P->name);
    if (!s->base) return errorf(P->e, "%s: the sweep has no `base:` (the config file every run starts from)", P->name);
    return 0;
}

// grid x zip x random; points with an id seen before are dropped.
static void expand(Sweep* s, PointList blocks[3]) {
    PointList all = list_unit();
    for (int b = 0; b < 3; b++) {
        if (blocks[b].n == 0) continue;
        PointList next = list_product(&all, &blocks[b]);
        list_free(&all);
        all = next;
    }
    s->runs = xcalloc((size_t)all.n, sizeof *s->runs);
    for (int i = 0; i < all.n; i++) {
        SweepRun r = {.params = all.v[i].p, .n_params = all.v[i].n};
        sweep_run_id(r.params, r.n_params, r.id, sizeof r.id);
        int dup = 0;
        for (int j = 0; j < s->n_runs && !dup; j++) dup = strcmp(s->runs[j].id, r.id) == 0;
        if (dup) point_free(&all.v[i]);
        else s->runs[s->n_runs++] = r;
    }
    free(all.v);
}

int sweep_load_string(Sweep* s, const char* yaml, const char* name, Error* e) {
    memset(s, 0, sizeof *s);
    s->path = xstrdup(name);
    s->runs_dir = xstrdup("runs");
    Parser P = {.name = name, .e = e};
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) fatal("out of memory initializing the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char*)yaml, strlen(yaml));
    if (!yaml_parser_load(&parser, &P.doc)) {
        size_t line = (parser.problem ? parser.problem_mark.line : parser.context_mark.line) + 1;
        errorf(e, "%s:%zu: YAML syntax error: %s (check indentation, colons and brackets)", name, line,
               parser.problem ? parser.problem : "unknown problem");
        yaml_parser_delete(&parser);
        return -1;
    }
    yaml_parser_delete(&parser);
    PointList blocks[3] = {{NULL, 0}, {NULL, 0}, {NULL, 0}};
    yaml_node_t* root = yaml_document_get_root_node(&P.doc);
    int rc;
    if (!root || root->type != YAML_MAPPING_NODE)
        rc = errorf(e, "%s:1: a sweep file is a mapping with name, base and axes (grid, zip, random)", name);
    else rc = parse_top(&P, root, s, blocks);
    if (rc == 0) expand(s, blocks);
    for (int b = 0; b < 3; b++) list_free(&blocks[b]);
    for (int i = 0; i < P.n_seen; i++) free(P.seen_keys[i]);
    free(P.seen_keys);
    yaml_document_delete(&P.doc);
    return rc;
}

int sweep_load(Sweep* s, const char* path, Error* e) {
    size_t len;
    memset(s, 0, sizeof *s);
    char* text = read_file(path, &len, e);
    if (!text) return -1;
    int rc = strlen(text) != len ? errorf(e, "%s: contains a NUL byte: not a YAML sweep file", path)
                                 : sweep_load_string(s, text, path, e);
    free(text);
    return rc;
}

void sweep_free(Sweep* s) {
    for (int i = 0; i < s->n_runs; i++) {
        Point pt = {s->runs[i].params, s->runs[i].n_params};
        point_free(&pt);
    }
    Point fixed = {s->fixed, s->n_fixed};
    point_free(&fixed);
    free(s->runs);
    free(s->path);
    free(s->name);
    free(s->base);
    free(s->runs_dir);
    free(s->eval_data);
    free(s->eval_metric);
    memset(s, 0, sizeof *s);
}

// ---------------------------------------------------------------------------------------------------- run ids

static int by_key(const void* a, const void* b) {
    return strcmp(((const SweepParam*)a)->key, ((const SweepParam*)b)->key);
}

// A value's part of the slug: a path by its file name without extension, at most 16 safe characters.
static void slug_part(const char* v, char* out, size_t size) {
    const char* base = strrchr(v, '/') ? strrchr(v, '/') + 1 : v;
    size_t n = strlen(base);
    const char* dot = strrchr(base, '.');
    if (strchr(v, '/') && dot && dot != base) n = (size_t)(dot - base);
    if (n == 0) { base = v; n = strlen(v); }
    size_t j = 0;
    for (size_t i = 0; i < n && j < 16 && j + 1 < size; i++) {
        char c = base[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        out[j++] = ok ? c : '_';
    }
    out[j] = 0;
}

void sweep_run_id(const SweepParam* params, int n, char* out, size_t size) {
    SweepParam* sorted = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *sorted);
    if (n > 0) memcpy(sorted, params, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, by_key);
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) fatal("sha256: libcrypto failed");
    for (int i = 0; i < n; i++) {
        EVP_DigestUpdate(md, sorted[i].key, strlen(sorted[i].key));
        EVP_DigestUpdate(md, "=", 1);
        EVP_DigestUpdate(md, sorted[i].value, strlen(sorted[i].value));
        EVP_DigestUpdate(md, "\n", 1);
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(md, digest, &len);
    EVP_MD_CTX_free(md);
    free(sorted);
    char slug[64] = "";
    for (int i = 0; i < n; i++) {
        char part[20];
        slug_part(params[i].value, part, sizeof part);
        if (strlen(slug) + strlen(part) + 2 > 49) break;
        if (slug[0]) strcat(slug, "-");
        strcat(slug, part);
    }
    if (!slug[0]) strcpy(slug, "base");
    char hex[11];
    for (int i = 0; i < 5; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    snprintf(out, size, "%s-%s", slug, hex);
}

void sweep_run_dir(const Sweep* s, const SweepRun* r, char* out, size_t size) {
    snprintf(out, size, "%s/%s/%s", s->runs_dir, s->name, r->id);
}

static int apply_params(Config* c, const SweepParam* p, int n, Error* e) {
    for (int i = 0; i < n; i++) {
        size_t len = strlen(p[i].key) + strlen(p[i].value) + 2;
        char* set = xmalloc(len);
        snprintf(set, len, "%s=%s", p[i].key, p[i].value);
        int rc = config_set(c, set, e);
        free(set);
        if (rc != 0) return -1;
    }
    return 0;
}

int sweep_run_config(const Sweep* s, const SweepRun* r, Config* c, Error* e) {
    config_defaults(c);
    if (config_load(c, s->base, e) != 0 || apply_params(c, s->fixed, s->n_fixed, e) != 0 ||
        apply_params(c, r->params, r->n_params, e) != 0)
        return -1;
    char dir[CONFIG_PATH_MAX + 256];
    sweep_run_dir(s, r, dir, sizeof dir);
    if (strlen(dir) >= sizeof c->run_dir) return errorf(e, "%s: the run directory %s is too long", s->path, dir);
    memset(c->run_dir, 0, sizeof c->run_dir);
    memcpy(c->run_dir, dir, strlen(dir));
    return config_validate(c, e);
}

// ---------------------------------------------------------------------------------------------------- running

typedef struct RunState {
    int last_step;
    double loss, val_loss, eval_value;
    char eval_metric[32];
} RunState;

static void read_run_state(const char* dir, RunState* st);

static int write_sweep_json(const Sweep* s, const SweepRun* r, const char* dir, Error* e) {
    json_t* root = json_object();
    json_object_set_new(root, "sweep", json_string(s->name));
    json_object_set_new(root, "sweep_file", json_string(s->path));
    json_object_set_new(root, "run_id", json_string(r->id));
    json_object_set_new(root, "base", json_string(s->base));
    json_t* params = json_object();
    json_t* overrides = json_array();
    for (int i = 0; i < s->n_fixed; i++)
        json_array_append_new(overrides, json_sprintf("%s=%s", s->fixed[i].key, s->fixed[i].value));
    for (int i = 0; i < r->n_params; i++) {
        json_object_set_new(params, r->params[i].key, json_string(r->params[i].value));
        json_array_append_new(overrides, json_sprintf("%s=%s", r->params[i].key, r->params[i].value));
    }
    json_object_set_new(root, "params", params);
    json_object_set_new(root, "overrides", overrides);
    char* text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    char path[CONFIG_PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/sweep.json", dir);
    int rc = write_file_atomic(path, text, strlen(text), e);
    free(text);
    return rc;
}

// eval: the newest checkpoint of the run on s->eval_data, eval.json in the run directory.
static int evaluate_run(const Sweep* s, const Config* c, Error* e) {
    EvalOptions o;
    eval_options_default(&o);
    if (eval_parse_metric(s->eval_metric, &o.metric, e) != 0) return -1;
    o.max_samples = s->eval_max_samples;
    char* ckpt = checkpoint_latest(c->run_dir);
    if (!ckpt) return errorf(e, "%s: the run wrote no checkpoint to evaluate", c->run_dir);
    Backend* be = backend_cpu_create(c->train.threads);
    char* spec = NULL;
    ModRWKV* m = modrwkv_load(ckpt, be, &spec, e);
    Tokenizer* tok = m ? tokenizer_from_spec(spec ? spec : c->data.tokenizer, e) : NULL;
    EvalResult r;
    memset(&r, 0, sizeof r);
    int rc = -1;
    if (tok) {
        rc = eval_run(m, tok, s->eval_data, &o, &r, e);
        char out[CONFIG_PATH_MAX + 32];
        snprintf(out, sizeof out, "%s/eval.json", c->run_dir);
        EvalReportInfo info = {.name = s->eval_data, .checkpoint = ckpt, .data_dir = s->eval_data,
                               .tokenizer = spec ? spec : c->data.tokenizer, .options = &o, .items_in_json = 20};
        if (rc == 0) rc = eval_write_json(&r, &info, out, e);
        if (rc == 0) eval_print_summary(&r, s->eval_data, stdout);
    }
    eval_result_free(&r);
    tokenizer_free(tok);
    free(spec);
    modrwkv_free(m);
    backend_destroy(be);
    free(ckpt);
    return rc;
}

static void marker_path(const char* dir, const char* name, char* out, size_t size) {
    snprintf(out, size, "%s/%s", dir, name);
}

// Sends stdout to <dir>/train.log (appended) until log_end; returns the saved stdout descriptor or -1.
static int log_begin(const char* dir, Error* e) {
    char path[CONFIG_PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/train.log", dir);
    fflush(stdout);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return errorf(e, "%s: cannot open (%s)", path, strerror(errno));
    int saved = dup(STDOUT_FILENO);
    if (saved < 0 || dup2(fd, STDOUT_FILENO) < 0) {
        close(fd);
        if (saved >= 0) close(saved);
        return errorf(e, "%s: cannot redirect the output (%s)", path, strerror(errno));
    }
    close(fd);
    return saved;
}

static void log_end(int saved) {
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
}

static int checkpoint_step(const char* dir);

// Training (and evaluation) of one run, its output in <dir>/train.log. A stop signal (SIGUSR1 before a Slurm
// time limit, SIGTERM) ends training early with a checkpoint and success: *stopped_at then receives the step
// (> 0) and the run is neither evaluated nor done.
// With several ranks (comm), every rank trains; rank 0 alone logs, evaluates and decides, and the others
// take its outcome.
static int train_and_eval(const Sweep* s, const Config* c, const char* dir, Comm* comm, int* stopped_at, Error* e) {
    int lead = comm_rank(comm) == 0;
    *stopped_at = 0;
    int saved = lead ? log_begin(dir, e) : -2;
    if (saved == -1) return -1;
    TrainOptions o = {.resume = "auto", .progress = 0, .comm = comm_size(comm) > 1 ? comm : NULL};
    int rc = train_run(c, &o, e);
    int step = rc == 0 ? checkpoint_step(c->run_dir) : 0;
    if (rc == 0 && step < c->train.max_steps) *stopped_at = step > 0 ? step : -1;
    if (lead && rc == 0 && !*stopped_at && s->eval_data) rc = evaluate_run(s, c, e);
    if (lead && rc != 0) printf("error: %s\n", e->msg);
    if (lead) log_end(saved);
    int outcome[2] = {rc, *stopped_at};  // rank 0's
    comm_broadcast(comm, outcome, sizeof outcome, 0);
    if (outcome[0] != 0 && rc == 0) errorf(e, "rank %d: the run failed on rank 0 (its train.log holds the error)",
                                           comm_rank(comm));
    *stopped_at = outcome[1];
    return outcome[0] != 0 ? -1 : 0;
}

// One run: trained, evaluated and marked DONE; or stopped early by a signal (*stopped_at, see train_and_eval).
// Rank 0 writes the run directory's files (sweep.json, DONE); the ranks agree on the outcome.
static int run_one(const Sweep* s, const SweepRun* r, const char* dir, Comm* comm, int* stopped_at, Error* e) {
    Config* c = xmalloc(sizeof *c);
    int lead = comm_rank(comm) == 0;
    *stopped_at = 0;
    int rc = sweep_run_config(s, r, c, e);
    if (rc == 0 && lead) rc = mkdir_p(dir, e);
    if (rc == 0 && lead) rc = write_sweep_json(s, r, dir, e);
    if ((int)comm_all_reduce_double(comm, rc != 0, COMM_MAX) != 0 && rc == 0)
        rc = errorf(e, "rank %d: rank 0 could not prepare the run directory %s", comm_rank(comm), dir);
    if (rc == 0) rc = train_and_eval(s, c, dir, comm, stopped_at, e);
    char done[CONFIG_PATH_MAX + 300];
    marker_path(dir, "DONE", done, sizeof done);
    if (rc == 0 && !*stopped_at && lead) rc = write_file_atomic(done, "done\n", 5, e);
    comm_barrier(comm);  // the next run's DONE check comes after this one's marker
    free(c);
    return rc;
}

// fprintf to log unless it is NULL (the ranks other than 0).
static void say(FILE* log, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(FILE* log, const char* fmt, ...) {
    if (!log) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log, fmt, ap);
    va_end(ap);
}

int sweep_run_all(const Sweep* s, FILE* log, Comm* comm_in) {
    Comm* own = comm_in ? NULL : comm_self_create();
    Comm* comm = comm_in ? comm_in : own;
    int lead = comm_rank(comm) == 0;
    if (!lead) log = NULL;  // rank 0 reports and writes the markers
    int failed = 0, skipped = 0;
    char** failures = xcalloc((size_t)s->n_runs + 1, sizeof *failures);
    for (int i = 0; i < s->n_runs; i++) {
        const SweepRun* r = &s->runs[i];
        char dir[CONFIG_PATH_MAX + 256], done[CONFIG_PATH_MAX + 300], fail[CONFIG_PATH_MAX + 300];
        sweep_run_dir(s, r, dir, sizeof dir);
        marker_path(dir, "DONE", done, sizeof done);
        marker_path(dir, "FAILED", fail, sizeof fail);
        if (access(done, F_OK) == 0) {
            say(log, "[%d/%d] %s: done, skipped\n", i + 1, s->n_runs, r->id);
            skipped++;
            continue;
        }
        say(log, "[%d/%d] %s: running in %s\n", i + 1, s->n_runs, r->id, dir);
        if (log) fflush(log);
        if (lead) unlink(fail);
        Error e = {{0}};
        int stopped_at = 0, rc = run_one(s, r, dir, comm, &stopped_at, &e);
        if (rc == 0 && stopped_at) {
            say(log, "[%d/%d] %s: stopped by a stop signal at step %d (checkpoint written); the sweep stops here: "
                         "run it again (or let Slurm requeue it) to continue\n", i + 1, s->n_runs, r->id, stopped_at);
            break;
        }
        if (rc == 0) {
            RunState st;
            read_run_state(dir, &st);
            say(log, "[%d/%d] %s: done (step %d, loss %.4f, val_loss %.4f%s%s", i + 1, s->n_runs, r->id,
                    st.last_step, st.loss, st.val_loss, st.eval_metric[0] ? ", " : "", st.eval_metric);
            if (st.eval_metric[0]) say(log, " %.4f", st.eval_value);
            say(log, "; log in %s/train.log)\n", dir);
            continue;
        }
        say(log, "[%d/%d] %s: FAILED: %s\n", i + 1, s->n_runs, r->id, e.msg);
        Error ignored;
        size_t n = strlen(e.msg);
        e.msg[n] = '\n';
        if (lead && mkdir_p(dir, &ignored) == 0) write_file_atomic(fail, e.msg, n + 1, &ignored);
        failures[failed++] = xstrdup(r->id);
    }
    say(log, "sweep %s: %d runs, %d skipped (already done), %d failed\n", s->name, s->n_runs, skipped, failed);
    for (int i = 0; i < failed; i++) {
        say(log, "  failed: %s\n", failures[i]);
        free(failures[i]);
    }
    free(failures);
    if (log) fflush(log);
    comm_free(own);
    return failed;
}

// ---------------------------------------------------------------------------------------------------- status

static void read_run_state(const char* dir, RunState* st) {
    st->last_step = 0;
    st->loss = st->val_loss = st->eval_value = NAN;
    st->eval_metric[0] = 0;
    char path[CONFIG_PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    size_t len = 0;
    char* text = read_file(path, &len, NULL);
    char* save = NULL;
    for (char* line = text ? strtok_r(text, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
        json_t* j = json_loads(line, 0, NULL);
        if (!j) continue;
        json_t* v;
        if ((v = json_object_get(j, "step")) && json_is_integer(v)) st->last_step = (int)json_integer_value(v);
        if ((v = json_object_get(j, "loss"))) st->loss = json_number_value(v);
        if ((v = json_object_get(j, "val_loss"))) st->val_loss = json_number_value(v);
        json_decref(j);
    }
    free(text);
    snprintf(path, sizeof path, "%s/eval.json", dir);
    json_t* ev = json_load_file(path, 0, NULL);
    if (ev) {
        st->eval_value = json_number_value(json_object_get(ev, "value"));
        const char* m = json_string_value(json_object_get(ev, "metric"));
        snprintf(st->eval_metric, sizeof st->eval_metric, "%s", m ? m : "?");
        json_decref(ev);
    }
}

// The step of the newest checkpoint of a run (0 when there is none).
static int checkpoint_step(const char* dir) {
    char* ckpt = checkpoint_latest(dir);
    const char* name = ckpt ? strrchr(ckpt, '/') : NULL;
    int step = 0;
    if (name && sscanf(name, "/step-%d", &step) != 1) step = 0;
    free(ckpt);
    return step;
}

static void format_number(char* out, size_t size, double v) {
    if (isnan(v)) snprintf(out, size, "-");
    else snprintf(out, size, "%.4f", v);
}

void sweep_print_status(const Sweep* s, FILE* f) {
    fprintf(f, "%-44s %-38s %-8s %-8s %-18s %s\n", "run", "state", "loss", "val_loss", "eval", "parameters");
    for (int i = 0; i < s->n_runs; i++) {
        const SweepRun* r = &s->runs[i];
        char dir[CONFIG_PATH_MAX + 256], path[CONFIG_PATH_MAX + 300], state[64], loss[32], val[32], ev[48];
        sweep_run_dir(s, r, dir, sizeof dir);
        RunState st;
        read_run_state(dir, &st);
        Config* c = xmalloc(sizeof *c);
        Error e;
        int max_steps = sweep_run_config(s, r, c, &e) == 0 ? c->train.max_steps : 0;
        free(c);
        snprintf(path, sizeof path, "%s/DONE", dir);
        int done = access(path, F_OK) == 0;
        snprintf(path, sizeof path, "%s/FAILED", dir);
        int failed = access(path, F_OK) == 0;
        snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
        if (done) snprintf(state, sizeof state, "done");
        else if (failed) snprintf(state, sizeof state, "failed (step %d of %d)", st.last_step, max_steps);
        else if (access(path, F_OK) == 0)
            snprintf(state, sizeof state, "partial step %d of %d (checkpoint %d)", st.last_step, max_steps,
                     checkpoint_step(dir));
        else snprintf(state, sizeof state, "not started");
        format_number(loss, sizeof loss, st.loss);
        format_number(val, sizeof val, st.val_loss);
        if (st.eval_metric[0]) snprintf(ev, sizeof ev, "%s %.4f", st.eval_metric, st.eval_value);
        else snprintf(ev, sizeof ev, "-");
        fprintf(f, "%-44s %-38s %-8s %-8s %-18s", r->id, state, loss, val, ev);
        for (int k = 0; k < r->n_params; k++) fprintf(f, " %s=%s", r->params[k].key, r->params[k].value);
        fprintf(f, "\n");
    }
}

void sweep_print_expansion(const Sweep* s, FILE* f) {
    for (int i = 0; i < s->n_runs; i++) {
        fprintf(f, "%s", s->runs[i].id);
        for (int k = 0; k < s->runs[i].n_params; k++)
            fprintf(f, " %s=%s", s->runs[i].params[k].key, s->runs[i].params[k].value);
        fprintf(f, "\n");
    }
}
