// test_adapter.c — Bone, Bat and LoRA adapters on RWKV-7 (trainer/adapter.h) and the backbone hooks they and
// the multimodal model use (rwkv7_rebase, frozen gradients, split embed/forward and backward).
//
// Checks, on the committed reference model (tests/reference/adapter_reference.py: L2, C64, head 16, V97,
// B2 T32, r 8, NONZERO adapters, all six targets, CE + L2Wrap):
//  1. logits, loss and the gradients of every adapter tensor, of the 12 adapted base weights (trained too)
//     and of the input x0 against the float64 PyTorch reference (dense dW form), for bone, bat and lora;
//  2. central finite differences of the loss on adapter coordinates through the whole model;
//  3. a freshly initialised adapter (published init) leaves the logits exactly unchanged;
//  4. merging (W += dW) reproduces the adapter's logits; the adapter left attached on top does not;
//  5. frozen base (NULL grads views): the gradient buffer's base part is untouched (sentinel), adapter
//     gradients and dx0 are bit-identical to the unfrozen run; partial freezing (rwkv7_point_grads flags)
//     and a frozen adapter too;
//  6. rwkv7_embed + rwkv7_forward_embedded and rwkv7_backward_to_x0 + rwkv7_embed_backward equal the one-call
//     passes bit for bit; dx0 matches finite differences on x0; the RNN mode (T = 1 steps, state passing)
//     matches the parallel pass with an adapter;
//  7. parameter counts against the formulas (RWKV-7 0.1B: Bone r64 = Bat r64 = LoRA r32 = 9 r C L);
//  8. adapter files: round trip, and clean rejections of mismatched files, names and configurations.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/testutil.h"
#include "trainer/adapter.h"
#include "trainer/rwkv7.h"
#include "trainer/rwkv7_io.h"
#include "trainer/safetensors.h"

static const char* const KINDS[3] = {"bone", "bat", "lora"};
static const float SENTINEL = 7777.0f;

typedef struct Fixture {
    Backend* be;
    RWKV7* m;            // parameters rebased into the current case's buffer
    size_t n_base;       // backbone floats
    int B, T;
    int32_t *tokens, *targets;
    ModelParams G;       // gradient views (blocks allocated once)
} Fixture;

typedef struct Case {
    const char* kind;
    char file[64];         // adapter-<kind>.safetensors
    TensorSet file_ts, expected;
    Adapter* a;
    float *params, *grads; // (n_base + adapter) each: backbone then adapter, one buffer (modrwkv's layout)
    size_t n_all;
} Case;

// ---------------------------------------------------------------------------------------------------- helpers

static void read_vectors(const char* name, TensorSet* ts) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/reference/vectors/%s", name);
    Error e = {{0}};
    if (safetensors_read(src_path(rel), ts, &e) != 0)
        fatal("%s (regenerate with tests/reference/adapter_reference.py)", e.msg);
}

static const NamedTensor* need(const TensorSet* ts, const char* name) {
    const NamedTensor* t = tensorset_find(ts, name);
    if (!t) fatal("reference vectors: tensor '%s' missing: regenerate with tests/reference/adapter_reference.py", name);
    return t;
}

// ||got - want||_2 / ||want||_2 <= tol, printed.
static int check_rel_l2(const char* name, const float* got, const float* want, size_t n, double tol) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    double rel = sqrt(num) / fmax(sqrt(den), 1e-30);
    int fail = !(rel <= tol) || den == 0;
    printf("%s: relative L2 error %.3e, tol %.1e %s\n", name, rel, tol, fail ? "FAIL" : "PASS");
    return fail;
}

// Reference comparison of one tensor: relative L2 < 1e-4 and every element within 1e-3 of its reference
// relative to max(|ref|, 1% of the tensor's largest entry).
static int check_ref(const char* what, const float* got, const NamedTensor* want) {
    size_t n = (size_t)tensor_numel(want);
    const float* w = want->data;
    return check_rel_l2(what, got, w, n, 1e-4) + check_rel_to_max(what, got, w, n, 1e-3);
}

static float* alloc_floats(Fixture* fx, size_t n) { return fx->be->alloc(fx->be, n * sizeof(float)); }

// Forward on tokens, loss (l2wrap on/off), and the backward into G when G != NULL. Returns the loss.
static float run(Fixture* fx, RWKV7Acts* a, const ModelParams* G, int l2wrap) {
    rwkv7_forward(fx->m, a, fx->tokens, NULL);
    float loss = rwkv7_loss(fx->m, a, fx->targets, 1.0f, l2wrap, NULL);
    if (G) rwkv7_backward(fx->m, a, G);
    return loss;
}

static float* copy_of(const float* x, size_t n) { return test_copy_floats(x, n); }

static int32_t* int32_copy(const NamedTensor* t) {
    int32_t* out = xmalloc((size_t)tensor_numel(t) * sizeof(int32_t));
    memcpy(out, t->data, (size_t)tensor_numel(t) * sizeof(int32_t));
    return out;
}

// ---------------------------------------------------------------------------------------------------- setup

static void fixture_open(Fixture* fx) {
    memset(fx, 0, sizeof *fx);
    fx->be = backend_cpu_create(2);
    TensorSet ts, ex;
    read_vectors("adapter-model.safetensors", &ts);
    Error e = {{0}};
    fx->m = rwkv7_from_tensors(&ts, "adapter-model.safetensors", fx->be, &e);
    if (!fx->m) fatal("%s", e.msg);
    tensorset_free(&ts);
    fx->n_base = fx->m->n_params;
    read_vectors("adapter-bone.expected.safetensors", &ex);
    const NamedTensor* tok = need(&ex, "tokens");
    fx->B = (int)tok->shape[0];
    fx->T = (int)tok->shape[1];
    fx->tokens = int32_copy(tok);
    fx->targets = int32_copy(need(&ex, "targets"));
    tensorset_free(&ex);
    fx->G.blocks = xcalloc((size_t)fx->m->cfg.n_layer, sizeof(BlockParams));
    const RWKV7Config* c = &fx->m->cfg;
    printf("model L%d C%d head %d V%d, batch B%d T%d\n", c->n_layer, c->n_embd, c->head_size, c->vocab_size, fx->B,
           fx->T);
}

static void fixture_close(Fixture* fx, float* last_buffer) {
    rwkv7_free(fx->m);  // does not own its parameters any more: they are in last_buffer
    fx->be->free(fx->be, last_buffer);
    free(fx->tokens);
    free(fx->targets);
    free(fx->G.blocks);
    backend_destroy(fx->be);
}

// Loads adapter-<kind>.safetensors (self-describing) and moves the model into a fresh joint buffer.
static void case_open(Fixture* fx, const char* kind, Case* c) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    snprintf(c->file, sizeof c->file, "adapter-%s.safetensors", kind);
    read_vectors(c->file, &c->file_ts);
    char name[96];
    snprintf(name, sizeof name, "adapter-%s.expected.safetensors", kind);
    read_vectors(name, &c->expected);
    Error e = {{0}};
    AdapterConfig cfg;
    if (adapter_config_from_tensors(&c->file_ts, c->file, &cfg, &e) != 0) fatal("%s", e.msg);
    c->a = adapter_create(&cfg, &fx->m->cfg, fx->be, &e);
    if (!c->a) fatal("%s", e.msg);
    c->n_all = fx->n_base + c->a->table.n_params;
    c->params = alloc_floats(fx, c->n_all);
    c->grads = alloc_floats(fx, c->n_all);
    rwkv7_rebase(fx->m, c->params);  // the caller frees the previous buffer
    adapter_bind(c->a, c->params + fx->n_base, c->grads + fx->n_base);
    if (adapter_load(c->a, &c->file_ts, c->file, &e) != 0) fatal("%s", e.msg);
    fx->m->adapter = c->a;
    printf("\n==== %s adapter: r %d, alpha %g, %zu parameters\n", kind, cfg.r, (double)cfg.alpha, c->a->table.n_params);
}

// Frees everything but the parameter buffer, which the model lives in until the next case (returned).
static float* case_close(Fixture* fx, Case* c) {
    fx->m->adapter = NULL;
    adapter_free(c->a);
    fx->be->free(fx->be, c->grads);
    tensorset_free(&c->file_ts);
    tensorset_free(&c->expected);
    return c->params;
}

static void zero_grads(Fixture* fx, Case* c) { fx->be->k.zero(fx->be, c->grads, c->n_all); }

static void bind_all_grads(Fixture* fx, Case* c) {
    rwkv7_point_grads(fx->m, &fx->G, c->grads, NULL);
    adapter_bind(c->a, c->params + fx->n_base, c->grads + fx->n_base);
}

// ---------------------------------------------------------------------------------------------------- 1. reference

static int check_reference(Fixture* fx, Case* c) {
    int f = 0;
    char what[192];
    RWKV7Acts* a = rwkv7_acts_create(fx->m, fx->B, fx->T, 1);
    zero_grads(fx, c);
    bind_all_grads(fx, c);
    rwkv7_forward(fx->m, a, fx->tokens, NULL);
    snprintf(what, sizeof what, "%s: logits vs PyTorch float64", c->kind);
    f += check_ref(what, a->logits, need(&c->expected, "logits"));
    float loss = rwkv7_loss(fx->m, a, fx->targets, 1.0f, 1, NULL);
    snprintf(what, sizeof what, "%s: loss vs PyTorch", c->kind);
    f += check_close_rel(what, &loss, need(&c->expected, "loss")->data, 1, 1e-5, 1e-6);
    rwkv7_backward(fx->m, a, &fx->G);
    snprintf(what, sizeof what, "%s: grad x0 (input)", c->kind);
    f += check_ref(what, a->dx0, need(&c->expected, "grad.x0"));
    for (int i = 0; i < c->a->table.n; i++) {
        const TensorSpec* s = &c->a->table.specs[i];
        char ref[160];
        snprintf(ref, sizeof ref, "grad.%s", s->name);
        snprintf(what, sizeof what, "%s: grad %s", c->kind, s->name);
        f += check_ref(what, c->a->grads + s->offset, need(&c->expected, ref));
    }
    for (int l = 0; l < fx->m->cfg.n_layer; l++)
        for (int t = 0; t < ADAPTER_N_TARGETS; t++) {
            char wname[128], ref[160];
            snprintf(wname, sizeof wname, "blocks.%d.%s.weight", l, adapter_target_name((AdapterTarget)t));
            snprintf(ref, sizeof ref, "grad.%s", wname);
            snprintf(what, sizeof what, "%s: grad %s (base, trained)", c->kind, wname);
            f += check_ref(what, c->grads + rwkv7_find_spec(fx->m, wname)->offset, need(&c->expected, ref));
        }
    rwkv7_acts_free(fx->m, a);
    return f;
}

// ------------------------------------------------------------------------------------------ 2. finite differences

// Central difference of the loss (no L2Wrap) in parameter p[i]; restores p[i].
static double fd_param(Fixture* fx, RWKV7Acts* a, float* p, size_t i, float h) {
    float keep = p[i];
    p[i] = keep + h;
    double up = run(fx, a, NULL, 0);
    p[i] = keep - h;
    double down = run(fx, a, NULL, 0);
    p[i] = keep;
    return (up - down) / (2.0 * h);
}

static size_t argmax_abs(const float* x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (fabsf(x[i]) > fabsf(x[best])) best = i;
    return best;
}

// At the largest-gradient coordinate of every adapter tensor: |fd - g| <= 2e-2 |g| + 1e-5.
static int check_finite_differences(Fixture* fx, Case* c) {
    RWKV7Acts* a = rwkv7_acts_create(fx->m, fx->B, fx->T, 1);
    zero_grads(fx, c);
    bind_all_grads(fx, c);
    run(fx, a, &fx->G, 0);
    double worst = 0;
    int fail = 0;
    for (int i = 0; i < c->a->table.n; i++) {
        const TensorSpec* s = &c->a->table.specs[i];
        size_t j = argmax_abs(c->a->grads + s->offset, s->numel);
        double g = c->a->grads[s->offset + j];
        double fd = fd_param(fx, a, c->a->params + s->offset, j, 4e-3f);
        double err = fabs(fd - g) / (fabs(g) + 1e-5 / 2e-2);
        worst = fmax(worst, err);
        if (!(err <= 2e-2)) {
            printf("  %s[%zu]: analytic %.6e, finite difference %.6e\n", s->name, j, g, fd);
            fail = 1;
        }
    }
    printf("%s: finite differences at the largest-gradient coordinate of each of %d adapter tensors: worst "
           "|fd - g| / (|g| + 5e-4) = %.3e, tol 2e-2 %s\n", c->kind, c->a->table.n, worst, fail ? "FAIL" : "PASS");
    rwkv7_acts_free(fx->m, a);
    return fail;
}

// ---------------------------------------------------------------------------------------------------- 3. zero init

static int check_zero_init(Fixture* fx, Case* c) {
    int f = 0;
    char what[160];
    adapter_init_random(c->a, 42);
    RWKV7Acts* a = rwkv7_acts_create(fx->m, fx->B, fx->T, 0);
    rwkv7_forward(fx->m, a, fx->tokens, NULL);
    float* with = copy_of(a->logits, (size_t)fx->B * fx->T * fx->m->cfg.vocab_size);
    rwkv7_acts_free(fx->m, a);
    fx->m->adapter = NULL;
    a = rwkv7_acts_create(fx->m, fx->B, fx->T, 0);
    rwkv7_forward(fx->m, a, fx->tokens, NULL);
    snprintf(what, sizeof what, "%s: published init (zero dW) leaves the logits exactly unchanged", c->kind);
    f += check_close_abs(what, with, a->logits, (size_t)fx->B * fx->T * fx->m->cfg.vocab_size, 0.0);
    if (!strcmp(c->kind, "lora")) {  // A ~ U(-1/sqrt(in), 1/sqrt(in)), not all zero; B zero
        const TensorSpec* A = param_table_find(&c->a->table, "blocks.0.att.key.lora_A");
        const float* p = c->a->params + A->offset;
        int nonzero = 0, inside = 1;
        for (size_t i = 0; i < A->numel; i++) {
            nonzero += p[i] != 0.0f;
            inside &= fabsf(p[i]) <= 1.0f / sqrtf((float)A->shape[1]);
        }
        f += check_true("lora: A is kaiming-uniform(a=sqrt 5): nonzero, inside 1/sqrt(in)", nonzero > 0 && inside,
                        NULL);
    }
    rwkv7_acts_free(fx->m, a);
    free(with);
    fx->m->adapter = c->a;
    return f;
}

// ---------------------------------------------------------------------------------------------------- 4. merge

static int check_merge(Fixture* fx, Case* c) {
    int f = 0;
    char what[160];
    size_t nl = (size_t)fx->B * fx->T * fx->m->cfg.vocab_size;
    RWKV7Acts* a = rwkv7_acts_create(fx->m, fx->B, fx->T, 0);
    rwkv7_forward(fx->m, a, fx->tokens, NULL);
    float* want = copy_of(a->logits, nl);
    float* saved = copy_of(fx->m->params_memory, fx->n_base);
    Error e = {{0}};
    f += check_true("adapter_merge succeeds", adapter_merge(c->a, fx->m, &e) == 0, e.msg);
    rwkv7_forward(fx->m, a, fx->tokens, NULL);  // adapter still attached: counted twice
    float* twice = copy_of(a->logits, nl);
    rwkv7_acts_free(fx->m, a);
    fx->m->adapter = NULL;
    a = rwkv7_acts_create(fx->m, fx->B, fx->T, 0);
    rwkv7_forward(fx->m, a, fx->tokens, NULL);
    snprintf(what, sizeof what, "%s: merged model logits vs adapter logits", c->kind);
    f += check_rel_to_max(what, a->logits, want, nl, 1e-4);
    double diff = 0;
    for (size_t i = 0; i < nl; i++) diff = fmax(diff, fabs((double)twice[i] - want[i]));
    printf("%s: merged model with the adapter still attached differs by %.3e (must exceed 1e-2)\n", c->kind, diff);
    f += check_true("negative control: a double-counted adapter is detected", diff > 1e-2, NULL);
    memcpy(fx->m->params_memory, saved, fx->n_base * sizeof(float));
    fx->m->adapter = c->a;
    rwkv7_acts_free(fx->m, a);
    free(want);
    free(twice);
    free(saved);
    return f;
}

// Bone with r not dividing the input width (r 6 on C 64, F 256: x zero-padded in the segmented sum, the last
// column block of dW truncated in the merge): the efficient form equals the merged dense form.
static int check_bone_padding(Fixture* fx) {
    AdapterConfig cfg = {ADAPTER_BONE, 6, 6.0f, ADAPTER_TARGETS_ALL};
    Error e = {{0}};
    Adapter* ad = adapter_create(&cfg, &fx->m->cfg, fx->be, &e);
    float* mem = alloc_floats(fx, ad->table.n_params);
    adapter_bind(ad, mem, NULL);
    TestRng rng;
    test_rng_seed(&rng, 6);
    for (size_t i = 0; i < ad->table.n_params; i++) mem[i] = 0.05f * test_rng_normal(&rng);
    fx->m->adapter = ad;
    size_t nl = (size_t)fx->B * fx->T * fx->m->cfg.vocab_size;
    RWKV7Acts* a = rwkv7_acts_create(fx->m, fx->B, fx->T, 0);
    rwkv7_forward(fx->m, a, fx->tokens, NULL);
    float *want = copy_of(a->logits, nl), *saved = copy_of(fx->m->params_memory, fx->n_base);
    rwkv7_acts_free(fx->m, a);
    adapter_merge(ad, fx->m, &e);
    fx->m->adapter = NULL;
    a = rwkv7_acts_create(fx->m, fx->B, fx->T, 0);
    rwkv7_forward(fx->m, a, fx->tokens, NULL);
    int f = check_rel_to_max("bone r 6 (in % r != 0): merged logits vs segmented-sum logits", a->logits, want, nl, 1e-4);
    memcpy(fx->m->params_memory, saved, fx->n_base * sizeof(float));
    rwkv7_acts_free(fx->m, a);
    free(want);
    free(saved);
    fx->be->free(fx->be, mem);
    adapter_free(ad);
    return f;
}

// ---------------------------------------------------------------------------------------------------- 5. frozen base

static size_t count_not_sentinel(const float* x, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += x[i] != SENTINEL;
    return k;
}

static void fill_sentinel(float* x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = SENTINEL;
}

// Backbone gradient views from trained flags (NULL: all frozen); sentinel in the frozen base tensors, zero in
// the trained ones and the adapter's.
static void frozen_run(Fixture* fx, Case* c, RWKV7Acts* a, const uint8_t* trained, int adapter_trained) {
    fill_sentinel(c->grads, fx->n_base);
    for (int i = 0; trained && i < fx->m->n_tensors; i++)
        if (trained[i]) fx->be->k.zero(fx->be, c->grads + fx->m->specs[i].offset, fx->m->specs[i].numel);
    fx->be->k.zero(fx->be, c->grads + fx->n_base, c->n_all - fx->n_base);
    rwkv7_point_grads(fx->m, &fx->G, trained ? c->grads : NULL, trained);
    adapter_bind(c->a, c->params + fx->n_base, adapter_trained ? c->grads + fx->n_base : NULL);
    run(fx, a, &fx->G, 1);
}

static int check_partial_freeze(Fixture* fx, Case* c, RWKV7Acts* a, const float* full) {
    const char* names[] = {"blocks.0.att.x_k", "blocks.0.att.x_g", "blocks.1.ffn.x_k", "blocks.1.ln1.weight",
                           "blocks.0.att.key.weight", "blocks.1.att.r_k", "head.weight"};
    size_t n_names = sizeof names / sizeof names[0];
    uint8_t* trained = xcalloc((size_t)fx->m->n_tensors, 1);
    for (size_t i = 0; i < n_names; i++) trained[rwkv7_find_spec(fx->m, names[i]) - fx->m->specs] = 1;
    frozen_run(fx, c, a, trained, 1);
    int ok_trained = 1;
    size_t touched = 0;
    for (int i = 0; i < fx->m->n_tensors; i++) {
        const TensorSpec* s = &fx->m->specs[i];
        if (trained[i]) ok_trained &= memcmp(c->grads + s->offset, full + s->offset, s->numel * sizeof(float)) == 0;
        else touched += count_not_sentinel(c->grads + s->offset, s->numel);
    }
    printf("%s: partial freeze (%zu trained tensors incl. 2 of the 6 token-shift mixes): %zu frozen values touched\n",
           c->kind, n_names, touched);
    free(trained);
    return check_true("partial freeze: trained tensors bit-identical, frozen ones untouched", ok_trained && !touched,
                      NULL);
}

static int check_frozen_base(Fixture* fx, Case* c) {
    int f = 0;
    char what[160];
    RWKV7Acts* a = rwkv7_acts_create(fx->m, fx->B, fx->T, 1);
    size_t n_ad = c->n_all - fx->n_base, BTC = (size_t)fx->B * fx->T * fx->m->cfg.n_embd;
    zero_grads(fx, c);
    bind_all_grads(fx, c);
    run(fx, a, &fx->G, 1);
    float *full = copy_of(c->grads, c->n_all), *dx0 = copy_of(a->dx0, BTC);
    frozen_run(fx, c, a, NULL, 1);
    size_t touched = count_not_sentinel(c->grads, fx->n_base);
    printf("%s: frozen base: %zu of %zu base gradient values changed from the sentinel\n", c->kind, touched,
           fx->n_base);
    f += check_true("frozen base leaves the base gradients untouched", touched == 0, NULL);
    snprintf(what, sizeof what, "%s: adapter grads with frozen base == unfrozen run", c->kind);
    f += check_bitwise(what, c->grads + fx->n_base, full + fx->n_base, n_ad * sizeof(float));
    snprintf(what, sizeof what, "%s: dx0 with frozen base == unfrozen run", c->kind);
    f += check_bitwise(what, a->dx0, dx0, BTC * sizeof(float));
    f += check_partial_freeze(fx, c, a, full);
    frozen_run(fx, c, a, NULL, 0);  // adapter frozen too: nothing written, dx0 still flows
    size_t ad_touched = 0;
    for (size_t i = fx->n_base; i < c->n_all; i++) ad_touched += c->grads[i] != 0.0f;
    f += check_true("everything frozen: no gradient written", !count_not_sentinel(c->grads, fx->n_base) && !ad_touched,
                    NULL);
    snprintf(what, sizeof what, "%s: dx0 with everything frozen == unfrozen run", c->kind);
    f += check_bitwise(what, a->dx0, dx0, BTC * sizeof(float));
    bind_all_grads(fx, c);
    rwkv7_acts_free(fx->m, a);
    free(full);
    free(dx0);
    return f;
}

// ------------------------------------------------------------------------------------------ 6. split passes, RNN

static int check_split_passes(Fixture* fx, Case* c) {
    int f = 0;
    size_t BTC = (size_t)fx->B * fx->T * fx->m->cfg.n_embd, nl = (size_t)fx->B * fx->T * fx->m->cfg.vocab_size;
    RWKV7Acts *one = rwkv7_acts_create(fx->m, fx->B, fx->T, 1), *two = rwkv7_acts_create(fx->m, fx->B, fx->T, 1);
    zero_grads(fx, c);
    bind_all_grads(fx, c);
    rwkv7_forward(fx->m, one, fx->tokens, NULL);
    float* logits = copy_of(one->logits, nl);  // the loss overwrites them with dlogits
    rwkv7_loss(fx->m, one, fx->targets, 1.0f, 1, NULL);
    rwkv7_backward(fx->m, one, &fx->G);
    float* g1 = copy_of(c->grads, c->n_all);
    zero_grads(fx, c);
    rwkv7_embed(fx->m, two, fx->tokens);
    rwkv7_forward_embedded(fx->m, two, NULL);
    f += check_bitwise("embed + forward_embedded == forward (logits)", two->logits, logits, nl * sizeof(float));
    free(logits);
    rwkv7_loss(fx->m, two, fx->targets, 1.0f, 1, NULL);
    rwkv7_backward_to_x0(fx->m, two, &fx->G);
    const TensorSpec* emb = rwkv7_find_spec(fx->m, "emb.weight");
    size_t emb_touched = 0;
    for (size_t i = 0; i < emb->numel; i++) emb_touched += c->grads[emb->offset + i] != 0.0f;
    f += check_true("backward_to_x0 leaves the embedding gradient alone", emb_touched == 0, NULL);
    rwkv7_embed_backward(fx->m, two, &fx->G);
    f += check_bitwise("backward_to_x0 + embed_backward == backward (all grads)", c->grads, g1,
                       c->n_all * sizeof(float));
    f += check_bitwise("dx0 of both", two->dx0, one->dx0, BTC * sizeof(float));
    free(g1);
    rwkv7_acts_free(fx->m, one);
    rwkv7_acts_free(fx->m, two);
    return f;
}

// Loss (no L2Wrap) of the embedded input with x0[i] += delta.
static double loss_x0_shifted(Fixture* fx, RWKV7Acts* a, size_t i, float delta) {
    rwkv7_embed(fx->m, a, fx->tokens);
    a->x0[i] += delta;
    rwkv7_forward_embedded(fx->m, a, NULL);
    return rwkv7_loss(fx->m, a, fx->targets, 1.0f, 0, NULL);
}

static int check_dx0_fd(Fixture* fx, Case* c) {
    size_t BTC = (size_t)fx->B * fx->T * fx->m->cfg.n_embd;
    RWKV7Acts* a = rwkv7_acts_create(fx->m, fx->B, fx->T, 1);
    bind_all_grads(fx, c);
    zero_grads(fx, c);
    run(fx, a, &fx->G, 0);
    float* dx0 = copy_of(a->dx0, BTC);
    size_t pick[4] = {argmax_abs(dx0, BTC), 5, BTC / 4 + 9, BTC / 2 + 17};
    double worst = 0, scale = fabs(dx0[pick[0]]);
    for (int k = 0; k < 4; k++) {
        float h = 2e-2f;
        double fd = (loss_x0_shifted(fx, a, pick[k], h) - loss_x0_shifted(fx, a, pick[k], -h)) / (2.0 * h);
        double err = fabs(fd - dx0[pick[k]]) / (fabs(dx0[pick[k]]) + 1e-2 * scale);
        printf("  dx0[%zu]: analytic %.6e, finite difference %.6e\n", pick[k], dx0[pick[k]], fd);
        worst = fmax(worst, err);
    }
    printf("%s: dx0 vs central differences on x0 (4 coordinates): worst |fd - g| / (|g| + 1%% max) = %.3e, tol 2e-2\n",
           c->kind, worst);
    free(dx0);
    rwkv7_acts_free(fx->m, a);
    return check_true("dx0 matches finite differences on x0", worst <= 2e-2, NULL);
}

// T = 1 steps through a carried state, and two halves, against the parallel pass.
static int check_rnn_mode(Fixture* fx, Case* c) {
    int B = fx->B, T = fx->T, V = fx->m->cfg.vocab_size, f = 0;
    RWKV7Acts *par = rwkv7_acts_create(fx->m, B, T, 0), *step = rwkv7_acts_create(fx->m, B, 1, 0);
    RWKV7Acts* half = rwkv7_acts_create(fx->m, B, T / 2, 1);
    rwkv7_forward(fx->m, par, fx->tokens, NULL);
    RWKV7State* st = rwkv7_state_create(fx->m, B);
    float* seq = xmalloc((size_t)B * T * V * sizeof(float));  // (B, T, V) from the steps
    for (int t = 0; t < T; t++) {
        int32_t tok[16];
        for (int b = 0; b < B; b++) tok[b] = fx->tokens[b * T + t];
        rwkv7_forward(fx->m, step, tok, st);
        for (int b = 0; b < B; b++)
            memcpy(seq + ((size_t)b * T + t) * V, step->logits + (size_t)b * V, V * sizeof(float));
    }
    char what[128];
    snprintf(what, sizeof what, "%s: RNN mode (T = 1 steps) vs parallel logits", c->kind);
    f += check_rel_to_max(what, seq, par->logits, (size_t)B * T * V, 1e-4);
    rwkv7_state_reset(fx->m, st);
    int32_t* tok = xmalloc((size_t)B * (T / 2) * sizeof(int32_t));
    for (int h = 0; h < 2; h++) {
        for (int b = 0; b < B; b++)
            memcpy(tok + b * (T / 2), fx->tokens + b * T + h * (T / 2), (T / 2) * sizeof(int32_t));
        rwkv7_forward(fx->m, half, tok, st);
        for (int b = 0; b < B; b++)
            memcpy(seq + ((size_t)b * T + h * (T / 2)) * V, half->logits + (size_t)b * (T / 2) * V,
                   (size_t)(T / 2) * V * sizeof(float));
    }
    snprintf(what, sizeof what, "%s: state passing (two halves) vs parallel logits", c->kind);
    f += check_rel_to_max(what, seq, par->logits, (size_t)B * T * V, 1e-4);
    free(tok);
    free(seq);
    rwkv7_state_free(fx->m, st);
    rwkv7_acts_free(fx->m, par);
    rwkv7_acts_free(fx->m, step);
    rwkv7_acts_free(fx->m, half);
    return f;
}

// ---------------------------------------------------------------------------------------------------- 8. files

static int check_round_trip(Fixture* fx, Case* c) {
    int f = 0;
    char path[128];
    snprintf(path, sizeof path, "/tmp/modrwkv_test_adapter_%d_%s.safetensors", (int)getpid(), c->kind);
    TensorSet ts, back;
    tensorset_init(&ts);
    adapter_store(c->a, &ts);
    f += check_same_tensorsets("adapter_store holds the tensors of the reference script's file", &ts, &c->file_ts);
    Error e = {{0}};
    f += check_true("adapter file written", safetensors_write(path, &ts, &e) == 0, e.msg);
    f += check_true("adapter file read back", safetensors_read(path, &back, &e) == 0, e.msg);
    AdapterConfig cfg;
    f += check_true("configuration from the file's metadata", adapter_config_from_tensors(&back, path, &cfg, &e) == 0,
                    e.msg);
    f += check_true("same configuration", cfg.kind == c->a->cfg.kind && cfg.r == c->a->cfg.r &&
                                              cfg.alpha == c->a->cfg.alpha && cfg.targets == c->a->cfg.targets, NULL);
    Adapter* a2 = adapter_create(&cfg, &fx->m->cfg, fx->be, &e);
    float* p2 = alloc_floats(fx, a2->table.n_params);
    adapter_bind(a2, p2, NULL);
    f += check_true("adapter_load of the round-tripped file", adapter_load(a2, &back, path, &e) == 0, e.msg);
    f += check_bitwise("round-tripped adapter parameters", p2, c->a->params, a2->table.n_params * sizeof(float));
    fx->be->free(fx->be, p2);
    adapter_free(a2);
    tensorset_free(&ts);
    tensorset_free(&back);
    unlink(path);
    return f;
}

// A copy of src with tensor `drop` left out, `reshape` given shape (8, 64) and `extra` added (each may be NULL).
static void edited_copy(const TensorSet* src, TensorSet* out, const char* drop, const char* reshape,
                        const char* extra) {
    tensorset_init(out);
    for (int i = 0; i < src->n; i++) {
        const NamedTensor* t = &src->t[i];
        if (drop && !strcmp(t->name, drop)) continue;
        if (reshape && !strcmp(t->name, reshape)) {
            int64_t shape[2] = {8, 64};
            tensorset_add(out, t->name, DT_F32, 2, shape, NULL);
        } else {
            tensorset_add(out, t->name, t->dtype, t->ndim, t->shape, t->data);
        }
    }
    if (extra) {
        int64_t shape[2] = {8, 64};
        tensorset_add(out, extra, DT_F32, 2, shape, NULL);
    }
    out->metadata = src->metadata ? xstrdup(src->metadata) : NULL;
}

static int reject_load(const char* label, Adapter* a, const TensorSet* ts, const char* must_contain) {
    Error e = {{0}};
    return expect_reject(label, adapter_load(a, ts, "bad-adapter.safetensors", &e), &e, "bad-adapter.safetensors",
                         must_contain);
}

static Adapter* make_adapter(Fixture* fx, AdapterKind kind, int r, float alpha, float** mem) {
    AdapterConfig cfg = {kind, r, alpha, ADAPTER_TARGETS_ALL};
    Error e = {{0}};
    Adapter* a = adapter_create(&cfg, &fx->m->cfg, fx->be, &e);
    if (!a) fatal("%s", e.msg);
    *mem = alloc_floats(fx, a->table.n_params);
    adapter_bind(a, *mem, NULL);
    return a;
}

static int check_file_rejections(Fixture* fx, const TensorSet* bone_file) {
    int f = 0;
    float *m_bone, *m_lora, *m_r4;
    Adapter* bone = make_adapter(fx, ADAPTER_BONE, 8, 8.0f, &m_bone);
    Adapter* lora = make_adapter(fx, ADAPTER_LORA, 8, 16.0f, &m_lora);
    Adapter* bone4 = make_adapter(fx, ADAPTER_BONE, 4, 4.0f, &m_r4);
    printf("\n==== adapter file rejections\n");
    f += reject_load("bone file into a lora adapter", lora, bone_file, "bone");
    f += reject_load("r 8 file into an r 4 adapter", bone4, bone_file, "r 8");
    TensorSet t;
    edited_copy(bone_file, &t, NULL, "blocks.1.ffn.key.bone", NULL);
    f += reject_load("tensor of the wrong shape", bone, &t,
                     "'blocks.1.ffn.key.bone' has shape [8, 64], expected [8, 256]");
    tensorset_free(&t);
    edited_copy(bone_file, &t, "blocks.0.att.value.bone", NULL, NULL);
    f += reject_load("missing tensor", bone, &t, "'blocks.0.att.value.bone' is missing (expected shape [8, 64])");
    tensorset_free(&t);
    edited_copy(bone_file, &t, NULL, NULL, "blocks.0.att.gate.bone");
    f += reject_load("unexpected tensor", bone, &t, "blocks.0.att.gate.bone");
    tensorset_free(&t);
    edited_copy(bone_file, &t, NULL, NULL, NULL);
    free(t.metadata);
    t.metadata = NULL;
    f += reject_load("no metadata", bone, &t, "metadata");
    t.metadata = xstrdup("{\"format\":\"modrwkv-adapter\",\"kind\":\"dora\",\"r\":\"8\",\"alpha\":\"8\","
                         "\"targets\":\"all\",\"n_layer\":\"2\",\"n_embd\":\"64\",\"dim_ffn\":\"256\"}");
    f += reject_load("unknown kind in metadata", bone, &t, "'dora'");
    free(t.metadata);
    t.metadata = xstrdup("{\"format\":\"modrwkv-adapter\",\"kind\":\"bone\",\"r\":\"8\",\"alpha\":\"8\","
                         "\"targets\":\"all\",\"n_layer\":\"2\",\"n_embd\":\"128\",\"dim_ffn\":\"256\"}");
    f += reject_load("adapter of another model size", bone, &t, "n_embd 128");
    free(t.metadata);
    t.metadata = xstrdup("{\"format\":\"modrwkv-adapter\",\"kind\":\"bone\",\"alpha\":\"8\",\"targets\":\"all\"}");
    f += reject_load("metadata without r", bone, &t, "'r'");
    tensorset_free(&t);
    fx->be->free(fx->be, m_bone);
    fx->be->free(fx->be, m_lora);
    fx->be->free(fx->be, m_r4);
    adapter_free(bone);
    adapter_free(lora);
    adapter_free(bone4);
    return f;
}

static int check_config_rejections(Fixture* fx) {
    int f = 0;
    Error e = {{0}};
    AdapterKind k;
    unsigned mask = 0;
    printf("\n==== names and configurations\n");
    f += expect_reject("unknown kind", adapter_parse_kind("dora", &k, "adapter.kind", &e), &e, "adapter.kind",
                       "'dora'");
    f += expect_reject("unknown target", adapter_parse_targets("att.key,ffn.gate", &mask, "adapter.targets", &e), &e,
                       "adapter.targets", "'ffn.gate'");
    f += expect_reject("empty target list", adapter_parse_targets(" , ", &mask, "adapter.targets", &e), &e,
                       "adapter.targets", NULL);
    int ok = adapter_parse_targets("att.key, ffn.value", &mask, "x", &e) == 0 &&
             mask == ((1u << ADAPT_ATT_KEY) | (1u << ADAPT_FFN_VALUE));
    ok &= adapter_parse_targets("all", &mask, "x", &e) == 0 && mask == ADAPTER_TARGETS_ALL;
    ok &= adapter_parse_kind("bat", &k, "x", &e) == 0 && k == ADAPTER_BAT;
    char buf[128];
    unsigned kv = (1u << ADAPT_ATT_KEY) | (1u << ADAPT_FFN_VALUE);
    ok &= !strcmp(adapter_targets_str(kv, buf, sizeof buf), "att.key,ffn.value");
    f += check_true("parse 'att.key, ffn.value', 'all', 'bat'; print the mask back", ok, NULL);
    struct { AdapterConfig c; const char* must; } bad[] = {
        {{ADAPTER_BAT, 7, 7.0f, ADAPTER_TARGETS_ALL}, "divide"},
        {{ADAPTER_BONE, 0, 1.0f, ADAPTER_TARGETS_ALL}, "r 0"},
        {{ADAPTER_LORA, 8, 0.0f, ADAPTER_TARGETS_ALL}, "alpha"},
        {{ADAPTER_BONE, 8, 8.0f, 0}, "targets"},
        {{ADAPTER_NONE, 8, 8.0f, ADAPTER_TARGETS_ALL}, "kind"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Adapter* a = adapter_create(&bad[i].c, &fx->m->cfg, fx->be, &e);
        printf("  config %zu -> %s\n", i, e.msg);
        f += check_true("bad adapter configuration rejected", !a && strstr(e.msg, bad[i].must), bad[i].must);
        adapter_free(a);
    }
    RWKV7Config small = {.n_layer = 2, .n_embd = 32, .vocab_size = 97, .head_size = 16};
    RWKV7* other = rwkv7_create(&small, fx->be, &e);
    float* mem;
    Adapter* a = make_adapter(fx, ADAPTER_BONE, 8, 8.0f, &mem);
    f += check_true("merge into a model of another size is rejected", adapter_merge(a, other, &e) == -1 &&
                                                                          strstr(e.msg, "n_embd 64"), e.msg);
    fx->be->free(fx->be, mem);
    adapter_free(a);
    rwkv7_free(other);
    return f;
}

// ---------------------------------------------------------------------------------------------------- 7. counts

static int check_count(const char* what, AdapterKind kind, int r, unsigned targets, const RWKV7Config* m, size_t want) {
    AdapterConfig c = {kind, r, 2.0f * r, targets};
    size_t got = adapter_param_count(&c, m);
    Error e = {{0}};
    Backend* be = backend_cpu_create(1);
    Adapter* a = adapter_create(&c, m, be, &e);
    int ok = a && got == want && a->table.n_params == want;
    printf("%s: %zu parameters (formula %zu, table %zu)\n", what, got, want, a ? a->table.n_params : 0);
    adapter_free(a);
    backend_destroy(be);
    return check_true(what, ok, e.msg);
}

static int check_param_counts(void) {
    printf("\n==== parameter counts\n");
    RWKV7Config m = {.n_layer = 12, .n_embd = 768, .vocab_size = 65536, .head_size = 64, .dim_ffn = 3072};
    size_t L = 12, C = 768, F = 3072;
    int f = 0;
    f += check_count("bone r64 on RWKV-7 0.1B = 9 r C L (5.3M)", ADAPTER_BONE, 64, ADAPTER_TARGETS_ALL, &m,
                     9 * 64 * C * L);
    f += check_count("bat r64 on RWKV-7 0.1B = 9 r C L", ADAPTER_BAT, 64, ADAPTER_TARGETS_ALL, &m, 9 * 64 * C * L);
    f += check_count("lora r32 = r (in + out) per target = 18 r C L", ADAPTER_LORA, 32, ADAPTER_TARGETS_ALL, &m,
                     32 * (4 * 2 * C + 2 * (C + F)) * L);
    unsigned kv = (1u << ADAPT_ATT_KEY) | (1u << ADAPT_FFN_VALUE);
    f += check_count("bone r16 on att.key, ffn.value = r (C + C) L", ADAPTER_BONE, 16, kv, &m, 16 * 2 * C * L);
    f += check_count("bat r16 on att.key, ffn.value = r (C + F) L", ADAPTER_BAT, 16, kv, &m, 16 * (C + F) * L);
    // names and shapes of the table
    AdapterConfig c = {ADAPTER_BAT, 64, 64.0f, ADAPTER_TARGETS_ALL};
    Error e = {{0}};
    Backend* be = backend_cpu_create(1);
    Adapter* a = adapter_create(&c, &m, be, &e);
    const TensorSpec* s = param_table_find(&a->table, "blocks.11.ffn.value.bat");
    f += check_true("bat tensor blocks.11.ffn.value.bat is (F/r, r, r)",
                    s && s->ndim == 3 && s->shape[0] == 48 && s->shape[1] == 64 && s->shape[2] == 64 && s->layer == 11,
                    NULL);
    adapter_free(a);
    c.kind = ADAPTER_LORA;
    a = adapter_create(&c, &m, be, &e);
    s = param_table_find(&a->table, "blocks.3.ffn.key.lora_B");
    const TensorSpec* s2 = param_table_find(&a->table, "blocks.3.ffn.key.lora_A");
    f += check_true("lora tensors blocks.3.ffn.key.lora_A (r, C) and lora_B (F, r)",
                    s && s2 && s2->shape[0] == 64 && s2->shape[1] == 768 && s->shape[0] == 3072 && s->shape[1] == 64,
                    NULL);
    adapter_free(a);
    backend_destroy(be);
    return f;
}

// ---------------------------------------------------------------------------------------------------- main

// Leaves the model in caller memory *moved_to (the caller frees it).
static int check_rebase(Fixture* fx, float** moved_to) {
    RWKV7Acts* a = rwkv7_acts_create(fx->m, fx->B, fx->T, 0);
    rwkv7_forward(fx->m, a, fx->tokens, NULL);
    size_t nl = (size_t)fx->B * fx->T * fx->m->cfg.vocab_size;
    float* before = copy_of(a->logits, nl);
    float* base = alloc_floats(fx, fx->n_base + 100);
    rwkv7_rebase(fx->m, base + 100);  // anywhere inside a larger caller buffer
    rwkv7_forward(fx->m, a, fx->tokens, NULL);
    int f = check_bitwise("logits after rwkv7_rebase into caller memory", a->logits, before, nl * sizeof(float));
    int moved = !fx->m->owns_params && fx->m->params_memory == base + 100;
    f += check_true("the model no longer owns its parameters", moved, NULL);
    *moved_to = alloc_floats(fx, fx->n_base);  // move again so the larger buffer can be freed
    rwkv7_rebase(fx->m, *moved_to);
    fx->be->free(fx->be, base);
    rwkv7_acts_free(fx->m, a);
    free(before);
    return f;
}

int main(void) {
    Fixture fx;
    fixture_open(&fx);
    float* last = NULL;
    int f = check_rebase(&fx, &last);
    f += check_param_counts();
    f += check_config_rejections(&fx);
    f += check_bone_padding(&fx);
    TensorSet bone_file;
    tensorset_init(&bone_file);
    for (int k = 0; k < 3; k++) {
        Case c;
        case_open(&fx, KINDS[k], &c);
        fx.be->free(fx.be, last);
        f += check_reference(&fx, &c);
        f += check_finite_differences(&fx, &c);
        f += check_frozen_base(&fx, &c);
        f += check_split_passes(&fx, &c);
        f += check_dx0_fd(&fx, &c);
        f += check_rnn_mode(&fx, &c);
        f += check_merge(&fx, &c);
        f += check_round_trip(&fx, &c);
        f += check_zero_init(&fx, &c);
        if (k == 0) edited_copy(&c.file_ts, &bone_file, NULL, NULL, NULL);
        last = case_close(&fx, &c);
    }
    f += check_file_rejections(&fx, &bone_file);
    tensorset_free(&bone_file);
    fixture_close(&fx, last);
    return test_summary("test_adapter", f);
}
