// modrwkv.c — the ModRWKV multimodal model (see modrwkv.h): module tables, trainable groups, sequence
// assembly, and the forward/backward of one micro-batch.
#include "trainer/modrwkv.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sharding/tensor_parallel.h"
#include "trainer/adapter.h"
#include "trainer/checkpoint.h"
#include "trainer/modrwkv_branch.h"

static const char* const MOD_NAME[MOD_COUNT] = {"vision", "audio", "ts"};

// ---------------------------------------------------------------------------------------------------- trainable

int modrwkv_parse_trainable(const char* list, int* flags, Error* e) {
    static const char* const names[] = {"backbone", "adapter", "projector", "vision", "audio", "ts"};
    *flags = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char* w = strtok(buf, ", "); w; w = strtok(NULL, ", ")) {
        int found = -1;
        for (int i = 0; i < 6; i++)
            if (strcmp(w, names[i]) == 0) found = i;
        if (found < 0)
            return errorf(e, "train.trainable: unknown group '%s': use a comma list of backbone, adapter, projector, "
                             "vision, audio, ts", w);
        *flags |= 1 << found;
    }
    return 0;
}

int modrwkv_default_trainable(const ModelConfig* mc, int stage) {
    if (stage == 0) return TRAIN_BACKBONE;
    if (stage == 1) return TRAIN_PROJECTOR;
    return TRAIN_PROJECTOR | (strcmp(mc->adapter.kind, "none") == 0 ? TRAIN_BACKBONE : TRAIN_ADAPTER);
}

// ---------------------------------------------------------------------------------------------------- creation

static void append_table(ModRWKV* m, const ParamTable* t, const char* prefix, int group, int* first, size_t* offset) {
    *first = m->table.n;
    *offset = m->table.n_params;
    for (int i = 0; i < t->n; i++) {
        const TensorSpec* s = &t->specs[i];
        TensorSpec* d = param_table_add(&m->table, s->ndim, s->shape, "%s%s", prefix, s->name);
        d->layer = s->layer;
        d->lr_scale = s->lr_scale;
        d->weight_decay = s->weight_decay;
        d->unused = s->unused;
        d->tp_dim = s->tp_dim;
        d->tp_partial = s->tp_partial;
        m->module_of = xrealloc(m->module_of, (size_t)m->table.cap);
        m->module_of[m->table.n - 1] = (uint8_t)group;
    }
}

static int make_adapter(ModRWKV* m, const AdapterYConfig* y, Error* e) {
    AdapterKind kind;
    if (adapter_parse_kind(y->kind, &kind, "model.adapter.kind", e) != 0) return -1;
    if (kind == ADAPTER_NONE) return 0;
    AdapterConfig c = adapter_config_default();
    c.kind = kind;
    c.r = y->r;
    c.alpha = y->alpha;
    if (adapter_parse_targets(y->targets, &c.targets, "model.adapter.targets", e) != 0) return -1;
    m->adapter = adapter_create_tp(&c, &m->lm->cfg, m->lm->tp_size, m->be, e);
    return m->adapter ? 0 : -1;
}

// Random init of the new modules (encoders and projectors get seeds derived from the run's seed).
static void init_modules(ModRWKV* m, uint64_t seed) {
    for (int i = 0; i < MOD_COUNT; i++)
        if (m->branch[i]) branch_init_random(m->branch[i], seed * 31 + 101 * (uint64_t)(i + 1));
    if (m->adapter) adapter_init_random(m->adapter, seed * 31 + 505);
}

static void bind_modules(ModRWKV* m) {
    for (int i = 0; i < MOD_COUNT; i++) {
        Branch* br = m->branch[i];
        if (!br) continue;
        int enc_trained = (m->trainable & br->group) != 0, proj_trained = (m->trainable & TRAIN_PROJECTOR) != 0;
        branch_bind(br, m->params, enc_trained ? m->grads : NULL, proj_trained ? m->grads : NULL);
    }
    if (m->adapter) {
        const TensorSpec* s = NULL;
        for (int i = 0; i < m->table.n && !s; i++)
            if (m->module_of[i] == TRAIN_ADAPTER) s = &m->table.specs[i];
        adapter_bind(m->adapter, m->params + s->offset,
                     (m->trainable & TRAIN_ADAPTER) && m->grads ? m->grads + s->offset : NULL);
    }
}

static int load_module_files(ModRWKV* m, const ModelConfig* mc, Error* e);

ModRWKV* modrwkv_create(RWKV7* lm, const ModelConfig* mc, uint64_t seed, Error* e) {
    ModRWKV* m = xcalloc(1, sizeof *m);
    m->be = lm->be;
    m->lm = lm;
    param_table_init(&m->table);
    ParamTable lm_table = {.specs = lm->specs, .n = lm->n_tensors, .cap = lm->n_tensors, .n_params = lm->n_params};
    int first;
    size_t off;
    append_table(m, &lm_table, "", TRAIN_BACKBONE, &first, &off);
    if (make_adapter(m, &mc->adapter, e) != 0) goto fail;
    if (m->adapter) append_table(m, &m->adapter->table, "", TRAIN_ADAPTER, &first, &off);
    const char* kinds[MOD_COUNT] = {mc->vision.kind, mc->audio.kind, mc->ts.kind};
    for (int i = 0; i < MOD_COUNT; i++) {
        if (strcmp(kinds[i], "none") == 0) continue;
        Branch* br = m->branch[i] = branch_create((Modality)i, mc, lm->cfg.n_embd, m->be, lm->tp, e);
        if (!br) goto fail;
        append_table(m, branch_encoder_table(br), br->prefix, br->group, &br->enc_first, &br->enc_offset);
        br->enc_n = m->table.n_params - br->enc_offset;
        append_table(m, &br->proj->table, br->proj_prefix, TRAIN_PROJECTOR, &br->proj_first, &br->proj_offset);
        br->proj_n = m->table.n_params - br->proj_offset;
    }
    m->trained = xcalloc((size_t)m->table.n, 1);
    m->params = m->be->alloc(m->be, m->table.n_params * sizeof(float));
    rwkv7_rebase(lm, m->params);
    lm->adapter = m->adapter;
    m->lm_grads.blocks = xcalloc((size_t)lm->cfg.n_layer, sizeof(BlockParams));
    bind_modules(m);
    init_modules(m, seed);
    if (load_module_files(m, mc, e) != 0) goto fail;
    return m;
fail:
    modrwkv_free(m);
    return NULL;
}

ModRWKV* modrwkv_shard(const ModRWKV* full, const ModelConfig* mc, Comm* tp, Error* e) {
    RWKV7* lm = rwkv7_create_tp(&full->lm->cfg, full->be, tp, e);
    if (!lm) return NULL;
    lm->has_block0_vres = full->lm->has_block0_vres;
    ModelConfig local = *mc;  // every value comes from full: no module file is read into the slices
    local.vision.init[0] = local.audio.init[0] = local.ts.init[0] = local.projector.init[0] = 0;
    ModRWKV* m = modrwkv_create(lm, &local, 0, e);
    if (!m) return NULL;
    tp_slice_table(&m->table, m->params, &full->table, full->params, comm_rank(tp), comm_size(tp));
    return m;
}

void modrwkv_free(ModRWKV* m) {
    if (!m) return;
    for (int i = 0; i < MOD_COUNT; i++) branch_free(m->branch[i]);
    adapter_free(m->adapter);
    if (m->lm) m->lm->adapter = NULL;
    rwkv7_free(m->lm);
    if (m->params) m->be->free(m->be, m->params);
    if (m->grads) m->be->free(m->be, m->grads);
    free(m->lm_grads.blocks);
    free(m->module_of);
    free(m->trained);
    param_table_free(&m->table);
    free(m);
}

int modrwkv_set_trainable(ModRWKV* m, int flags, Error* e) {
    if ((flags & TRAIN_ADAPTER) && !m->adapter)
        return errorf(e, "train.trainable names the adapter but model.adapter.kind is none: configure an adapter or "
                         "drop 'adapter'");
    for (int i = 0; i < MOD_COUNT; i++) {
        int g = i == MOD_VISION ? TRAIN_VISION : i == MOD_AUDIO ? TRAIN_AUDIO : TRAIN_TS;
        if ((flags & g) && !m->branch[i])
            return errorf(e, "train.trainable names %s but model.%s.kind is none", MOD_NAME[i], MOD_NAME[i]);
    }
    if (!flags) return errorf(e, "train.trainable: nothing to train");
    m->trainable = flags;
    size_t n = 0;
    for (int i = 0; i < m->table.n; i++) {
        m->trained[i] = (m->module_of[i] & flags) && !m->table.specs[i].unused;
        n += m->trained[i];
    }
    if (!m->grads) m->grads = m->be->alloc(m->be, m->table.n_params * sizeof(float));
    rwkv7_point_grads(m->lm, &m->lm_grads, (flags & TRAIN_BACKBONE) ? m->grads : NULL, m->trained);
    bind_modules(m);
    return n ? 0 : errorf(e, "train.trainable: the chosen groups hold no parameters");
}

size_t modrwkv_count(const ModRWKV* m, int trained_only) {
    size_t n = 0;
    for (int i = 0; i < m->table.n; i++)
        if (!trained_only || m->trained[i]) n += m->table.specs[i].numel;
    return n;
}

int modrwkv_has_media(const ModRWKV* m) { return m->branch[0] || m->branch[1] || m->branch[2]; }

// ---------------------------------------------------------------------------------------------------- loading

int modrwkv_load_tensors(ModRWKV* m, const TensorSet* set, int groups, const char* file, Error* e) {
    char want[96];
    for (int i = 0; i < m->table.n; i++) {
        const TensorSpec* s = &m->table.specs[i];
        if (m->module_of[i] == TRAIN_BACKBONE) continue;  // the backbone is loaded by rwkv7_from_tensors
        const NamedTensor* t = tensorset_find(set, s->name);
        if (!t) {
            if (groups & m->module_of[i])
                return errorf(e, "%s: tensor '%s' is missing (expected shape %s): the file lacks this module",
                              file, s->name, param_shape_str(s, want, sizeof want));
            continue;
        }
        int same = t->ndim == s->ndim;
        for (int d = 0; same && d < s->ndim; d++) same = t->shape[d] == s->shape[d];
        if (!same || tensor_to_f32(t, m->params + s->offset) != 0)
            return errorf(e, "%s: tensor '%s' does not match: expected float of shape %s (check the model.* sizes)",
                          file, s->name, param_shape_str(s, want, sizeof want));
    }
    return 0;
}

// An encoder's init file: Hugging Face safetensors (names without our prefix) or a modrwkv checkpoint (with it).
static int load_encoder_file(ModRWKV* m, Branch* br, const char* path, Error* e) {
    TensorSet set;
    if (tensor_file_read(path, &set, e) != 0) {
        tensorset_free(&set);
        return -1;
    }
    const ParamTable* t = branch_encoder_table(br);
    int prefixed = t->n > 0 && tensorset_find(&set, m->table.specs[br->enc_first].name) != NULL;
    int rc = param_table_load(t, m->params + br->enc_offset, &set, prefixed ? br->prefix : "", 0, path, e);
    tensorset_free(&set);
    return rc;
}

static int load_module_files(ModRWKV* m, const ModelConfig* mc, Error* e) {
    const char* inits[MOD_COUNT] = {mc->vision.init, mc->audio.init, mc->ts.init};
    for (int i = 0; i < MOD_COUNT; i++)
        if (m->branch[i] && inits[i][0] && load_encoder_file(m, m->branch[i], inits[i], e) != 0) return -1;
    if (!mc->projector.init[0]) return 0;
    TensorSet set;
    int rc = tensor_file_read(mc->projector.init, &set, e);
    for (int i = 0; rc == 0 && i < MOD_COUNT; i++) {
        Branch* br = m->branch[i];
        if (br) rc = param_table_load(&br->proj->table, m->params + br->proj_offset, &set, br->proj_prefix, 0,
                                      mc->projector.init, e);
    }
    tensorset_free(&set);
    return rc;
}

// ---------------------------------------------------------------------------------------------------- files

ModRWKV* modrwkv_load(const char* path, Backend* be, char** tokenizer, Error* e) {
    TensorSet set;
    if (tensor_file_read(path, &set, e) != 0) {
        tensorset_free(&set);
        return NULL;
    }
    Config c;
    config_defaults(&c);
    json_t* meta = set.metadata ? json_loads(set.metadata, 0, NULL) : NULL;
    json_t* yaml = meta ? json_object_get(meta, "config") : NULL;
    int rc = json_is_string(yaml) ? config_load_string(&c, json_string_value(yaml), path, e) : 0;
    json_decref(meta);
    ModRWKV* m = NULL;
    RWKV7* lm = rc == 0 ? model_load_file(path, be, tokenizer, e) : NULL;
    if (lm) {
        ModelConfig mc = c.model;  // the stored modules, their weights taken from this file
        mc.vision.init[0] = mc.audio.init[0] = mc.ts.init[0] = mc.projector.init[0] = 0;
        m = modrwkv_create(lm, &mc, c.train.seed, e);
        int present = 0;
        for (int i = 0; m && i < m->table.n; i++) present |= m->module_of[i];
        if (m && modrwkv_load_tensors(m, &set, present & ~TRAIN_BACKBONE, path, e) != 0) {
            modrwkv_free(m);
            m = NULL;
        }
    }
    tensorset_free(&set);
    return m;
}
