// checkpoint.c — see checkpoint.h.
#include "trainer/checkpoint.h"

#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "trainer/checkpoint_sharded.h"
#include "trainer/pth.h"
#include "trainer/rwkv7_io.h"
#include "trainer/safetensors.h"

static const char* CKPT_FORMAT = "modrwkv-checkpoint";
static const char* CKPT_VERSION = "1";
static const char* M_PREFIX = "optimizer.exp_avg.";
static const char* V_PREFIX = "optimizer.exp_avg_sq.";

static int is_zip(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char b[4] = {0};
    size_t n = fread(b, 1, 4, f);
    fclose(f);
    return n == 4 && b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4;
}

int tensor_file_read(const char* path, TensorSet* ts, Error* e) {
    if (is_sharded_checkpoint(path)) return sharded_checkpoint_read(path, ts, e);
    tensorset_init(ts);
    FILE* f = fopen(path, "rb");
    if (!f) return errorf(e, "%s: cannot open: no such file or not readable", path);
    fclose(f);
    return is_zip(path) ? pth_read(path, ts, e) : safetensors_read(path, ts, e);
}

// Metadata value (string) of a native checkpoint, or NULL.
static const char* meta_get(json_t* meta, const char* key) {
    json_t* v = meta ? json_object_get(meta, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int checkpoint_is_module_tensor(const char* name) {
    static const char* const prefixes[] = {"vision.", "audio.", "ts.", "vision_proj.", "audio_proj.", "ts_proj."};
    static const char* const suffixes[] = {".bone", ".bat", ".lora_A", ".lora_B"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n > k && strcmp(name + n - k, suffixes[i]) == 0) return 1;
    }
    return 0;
}

RWKV7* model_load_file(const char* path, Backend* be, char** tokenizer, Error* e) {
    TensorSet ts;
    if (tokenizer) *tokenizer = NULL;
    if (tensor_file_read(path, &ts, e) != 0) {
        tensorset_free(&ts);
        return NULL;
    }
    // drop the optimizer state of native checkpoints: the weights alone define the model
    TensorSet w;
    tensorset_init(&w);
    for (int i = 0; i < ts.n; i++) {
        NamedTensor* t = &ts.t[i];
        if (strncmp(t->name, "optimizer.", 10) == 0 || checkpoint_is_module_tensor(t->name)) continue;
        tensorset_add(&w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    RWKV7* m = rwkv7_from_tensors(&w, path, be, e);
    if (m && ts.metadata) {
        json_t* meta = json_loads(ts.metadata, 0, NULL);
        const char* tok = meta_get(meta, "tokenizer");
        const char* vres = meta_get(meta, "has_block0_vres");
        if (tokenizer && tok) *tokenizer = xstrdup(tok);
        if (vres) m->has_block0_vres = strcmp(vres, "1") == 0;
        json_decref(meta);
    }
    tensorset_free(&w);
    tensorset_free(&ts);
    return m;
}

static void add_prefixed(TensorSet* ts, const RWKV7* m, const float* base, const char* prefix) {
    TensorSet tmp;
    tensorset_init(&tmp);
    rwkv7_to_tensors(m, base, DT_F32, &tmp);
    for (int i = 0; i < tmp.n; i++) {
        char name[RWKV7_NAME_MAX + 32];
        snprintf(name, sizeof name, "%s%s", prefix, tmp.t[i].name);
        tensorset_add(ts, name, DT_F32, tmp.t[i].ndim, tmp.t[i].shape, tmp.t[i].data);
    }
    tensorset_free(&tmp);
}

char* checkpoint_metadata(const RWKV7* m, const TrainState* st, const char* config_yaml, const char* tokenizer) {
    json_t* meta = json_object();
    char buf[160];
    json_object_set_new(meta, "format", json_string(CKPT_FORMAT));
    json_object_set_new(meta, "format_version", json_string(CKPT_VERSION));
    json_object_set_new(meta, "has_block0_vres", json_string(m->has_block0_vres ? "1" : "0"));
    if (tokenizer) json_object_set_new(meta, "tokenizer", json_string(tokenizer));
    if (config_yaml) json_object_set_new(meta, "config", json_string(config_yaml));
    if (st) {
        snprintf(buf, sizeof buf, "%d", st->step);
        json_object_set_new(meta, "step", json_string(buf));
        snprintf(buf, sizeof buf, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, st->rng.s[0], st->rng.s[1],
                 st->rng.s[2], st->rng.s[3]);
        json_object_set_new(meta, "rng", json_string(buf));
        snprintf(buf, sizeof buf, "%" PRIu64, st->loader_position);
        json_object_set_new(meta, "loader_position", json_string(buf));
        snprintf(buf, sizeof buf, "%" PRIu64, st->tokens_seen);
        json_object_set_new(meta, "tokens_seen", json_string(buf));
        snprintf(buf, sizeof buf, "%.17g", st->elapsed_s);
        json_object_set_new(meta, "elapsed_s", json_string(buf));
    }
    char* text = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(meta);
    return text;
}

// The tensors of `all` after the backbone's (all->specs[m->n_tensors ..]), from base + offset.
static void add_extra(TensorSet* ts, const RWKV7* m, const ParamTable* all, const float* base, const char* prefix) {
    char name[PARAM_NAME_MAX + 32];
    for (int i = all ? m->n_tensors : 0; all && i < all->n; i++) {
        const TensorSpec* s = &all->specs[i];
        snprintf(name, sizeof name, "%s%s", prefix, s->name);
        tensorset_add(ts, name, DT_F32, s->ndim, s->shape, base + s->offset);
    }
}

int checkpoint_save(const char* path, const RWKV7* m, const ParamTable* all, const Optimizer* opt,
                    const TrainState* st, const char* config_yaml, const char* tokenizer, Error* e) {
    TensorSet ts;
    tensorset_init(&ts);
    rwkv7_to_tensors(m, m->params_memory, DT_F32, &ts);
    add_extra(&ts, m, all, m->params_memory, "");
    if (opt) {
        add_prefixed(&ts, m, opt->m, M_PREFIX);
        add_extra(&ts, m, all, opt->m, M_PREFIX);
        add_prefixed(&ts, m, opt->v, V_PREFIX);
        add_extra(&ts, m, all, opt->v, V_PREFIX);
    }
    ts.metadata = checkpoint_metadata(m, st, config_yaml, tokenizer);
    int rc = safetensors_write(path, &ts, e);
    tensorset_free(&ts);
    return rc;
}

// Copies the tensors named prefix+<official name> into base (parameter layout). Returns 0 or -1.
static int restore_extra(const RWKV7* m, const ParamTable* all, const TensorSet* ts, const char* prefix, float* base,
                         const char* path, Error* e) {
    char name[PARAM_NAME_MAX + 32], want[96];
    for (int i = all ? m->n_tensors : 0; all && i < all->n; i++) {
        const TensorSpec* sp = &all->specs[i];
        snprintf(name, sizeof name, "%s%s", prefix, sp->name);
        const NamedTensor* t = tensorset_find(ts, name);
        if (!t) return errorf(e, "%s: checkpoint lacks '%s' (shape %s): it was written for a different model configuration",
                              path, name, param_shape_str(sp, want, sizeof want));
        if ((size_t)tensor_numel(t) != sp->numel || tensor_to_f32(t, base + sp->offset) != 0)
            return errorf(e, "%s: '%s' does not have the shape %s of the configured model", path, name,
                          param_shape_str(sp, want, sizeof want));
    }
    return 0;
}

static int restore_buffer(const RWKV7* m, const TensorSet* ts, const char* prefix, float* base, const char* path,
                          Error* e) {
    for (int i = 0; i < m->n_tensors; i++) {
        const TensorSpec* sp = &m->specs[i];
        char name[RWKV7_NAME_MAX + 32];
        snprintf(name, sizeof name, "%s%s", prefix, sp->name);
        const NamedTensor* t = tensorset_find(ts, name);
        if (!t && sp->unused && !m->has_block0_vres) continue;
        if (!t) return errorf(e, "%s: checkpoint lacks '%s': it was written for a different model or is not a training checkpoint", path, name);
        if ((size_t)tensor_numel(t) != sp->numel || tensor_to_f32(t, base + sp->offset) != 0)
            return errorf(e, "%s: '%s' has %lld values of dtype %s, expected %zu floats: the checkpoint belongs to a different model size", path,
                          name, (long long)tensor_numel(t), dtype_name(t->dtype), sp->numel);
    }
    return 0;
}

static int parse_state(json_t* meta, TrainState* st, const char* path, Error* e) {
    const char *step = meta_get(meta, "step"), *rng = meta_get(meta, "rng"), *pos = meta_get(meta, "loader_position"),
               *tok = meta_get(meta, "tokens_seen"), *el = meta_get(meta, "elapsed_s");
    if (!step || !rng || !pos || !tok || strlen(rng) != 64)
        return errorf(e, "%s: checkpoint metadata lacks the training state (step, rng, loader_position): it cannot be resumed; use it as model.init instead", path);
    memset(st, 0, sizeof *st);
    st->step = atoi(step);
    for (int i = 0; i < 4; i++) {
        char word[17];
        memcpy(word, rng + 16 * i, 16);
        word[16] = 0;
        st->rng.s[i] = strtoull(word, NULL, 16);
    }
    st->loader_position = strtoull(pos, NULL, 10);
    st->tokens_seen = strtoull(tok, NULL, 10);
    st->elapsed_s = el ? strtod(el, NULL) : 0.0;
    return 0;
}

int checkpoint_load(const char* path, RWKV7* m, const ParamTable* all, Optimizer* opt, TrainState* st,
                    char** config_yaml, Error* e) {
    TensorSet ts;
    if (tensor_file_read(path, &ts, e) != 0) {
        tensorset_free(&ts);
        return -1;
    }
    json_t* meta = ts.metadata ? json_loads(ts.metadata, 0, NULL) : NULL;
    int rc = -1;
    const char* fmt = meta_get(meta, "format");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0) {
        errorf(e, "%s: not a modrwkv training checkpoint (no '%s' metadata)", path, CKPT_FORMAT);
        goto done;
    }
    const char* vres = meta_get(meta, "has_block0_vres");
    m->has_block0_vres = vres && strcmp(vres, "1") == 0;
    if (restore_buffer(m, &ts, "", m->params_memory, path, e) != 0 ||
        restore_extra(m, all, &ts, "", m->params_memory, path, e) != 0)
        goto done;
    if (opt && (restore_buffer(m, &ts, M_PREFIX, opt->m, path, e) != 0 ||
                restore_extra(m, all, &ts, M_PREFIX, opt->m, path, e) != 0 ||
                restore_buffer(m, &ts, V_PREFIX, opt->v, path, e) != 0 ||
                restore_extra(m, all, &ts, V_PREFIX, opt->v, path, e) != 0))
        goto done;
    if (st && parse_state(meta, st, path, e) != 0) goto done;
    if (opt && st) opt->step = st->step;
    if (config_yaml) {
        const char* c = meta_get(meta, "config");
        *config_yaml = c ? xstrdup(c) : NULL;
    }
    rc = 0;
done:
    json_decref(meta);
    tensorset_free(&ts);
    return rc;
}

int model_export(const char* path, const RWKV7* m, const char* format, DType dt, Error* e) {
    TensorSet ts;
    tensorset_init(&ts);
    rwkv7_to_tensors(m, m->params_memory, dt, &ts);
    int rc;
    if (strcmp(format, "pth") == 0) rc = pth_write(path, &ts, e);
    else if (strcmp(format, "safetensors") == 0) rc = safetensors_write(path, &ts, e);
    else rc = errorf(e, "unknown export format '%s': use pth or safetensors", format);
    tensorset_free(&ts);
    return rc;
}

// ---------------------------------------------------------------------------------------------------- run directory

char* checkpoint_path(const char* run_dir, int step) {
    size_t n = strlen(run_dir) + 64;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/checkpoints/step-%08d.safetensors", run_dir, step);
    return p;
}

char* checkpoint_sharded_path(const char* run_dir, int step) {
    size_t n = strlen(run_dir) + 64;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/checkpoints/step-%08d.shards", run_dir, step);
    return p;
}

// The checkpoint of a step as it exists: the single file, else a complete sharded directory (malloc'ed), or
// NULL.
static char* existing_checkpoint(const char* run_dir, int step) {
    char* p = checkpoint_path(run_dir, step);
    struct stat st;
    if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) return p;
    free(p);
    p = checkpoint_sharded_path(run_dir, step);
    if (is_sharded_checkpoint(p)) return p;
    free(p);
    return NULL;
}

// Steps of the complete checkpoints in the run (single files, or sharded directories with their index),
// ascending and unique; returns the count (*steps malloc'ed).
static int list_steps(const char* run_dir, int** steps) {
    size_t n = strlen(run_dir) + 32;
    char* dir = xmalloc(n);
    snprintf(dir, n, "%s/checkpoints", run_dir);
    DIR* d = opendir(dir);
    free(dir);
    *steps = NULL;
    if (!d) return 0;
    int count = 0;
    struct dirent* ent;
    while ((ent = readdir(d))) {
        int step;
        char tail[32];
        // temp files of an interrupted save end in ".tmp.<pid>" and never match exactly; a sharded directory
        // counts once its index exists
        if (sscanf(ent->d_name, "step-%8d.%31s", &step, tail) != 2) continue;
        if (strcmp(tail, "safetensors") != 0 && strcmp(tail, "shards") != 0) continue;
        char* p = existing_checkpoint(run_dir, step);
        if (!p) continue;
        free(p);
        *steps = xrealloc(*steps, (size_t)(count + 1) * sizeof(int));
        (*steps)[count++] = step;
    }
    closedir(d);
    for (int i = 1; i < count; i++)  // insertion sort: a handful of entries
        for (int j = i; j > 0 && (*steps)[j - 1] > (*steps)[j]; j--) {
            int t = (*steps)[j];
            (*steps)[j] = (*steps)[j - 1];
            (*steps)[j - 1] = t;
        }
    int unique = 0;  // a step saved both ways is listed once
    for (int i = 0; i < count; i++)
        if (unique == 0 || (*steps)[unique - 1] != (*steps)[i]) (*steps)[unique++] = (*steps)[i];
    return unique;
}

char* checkpoint_latest(const char* run_dir) {
    int* steps;
    int n = list_steps(run_dir, &steps);
    char* p = n > 0 ? existing_checkpoint(run_dir, steps[n - 1]) : NULL;
    free(steps);
    return p;
}

void checkpoint_prune(const char* run_dir, int keep) {
    if (keep <= 0) return;
    int* steps;
    int n = list_steps(run_dir, &steps);
    for (int i = 0; i + keep < n; i++) {
        char* p = checkpoint_path(run_dir, steps[i]);
        remove(p);
        free(p);
        p = checkpoint_sharded_path(run_dir, steps[i]);
        sharded_checkpoint_remove(p);
        free(p);
    }
    free(steps);
}
