// test_vit.c — the SigLIP and CLIP vision towers (trainer/vit.h) against the float64 PyTorch reference
// (tests/reference/encoders_reference.py: vit-siglip.*, vit-clip.*, vit-clip-llava.* in tests/reference/vectors):
// the forward, the gradient of every parameter and of the pixels, central finite differences, the hidden-layer
// and CLS options, the inference activations, a frozen backward, and the rejection of bad checkpoints and configs.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "tests/testutil.h"
#include "trainer/safetensors.h"
#include "trainer/vit.h"

static Backend* be;

static const double FWD_TOL = 1e-4;    // relative to the tensor's max |value| (check_rel_to_max)
static const double GRAD_TOL = 2e-4;   // fp32 round-off through the whole backward (measured max 8.7e-5)
static const double FD_TOL = 5e-3;     // fp32 central differences
static const int B = 2;                // the reference batch

// ---------------------------------------------------------------------------------------------------- fixtures

// The reference sizes: S 32, P 8 (16 patches), D 32, 2 heads, MLP 64; SigLIP 2 layers, CLIP 3.
static ViTConfig small_config(int kind) {
    ViTConfig c;
    if (kind == VIT_SIGLIP) vit_config_siglip2_base_384(&c);
    else vit_config_clip_large_336(&c);
    c.image_size = 32;
    c.patch_size = 8;
    c.dim = 32;
    c.n_layers = kind == VIT_SIGLIP ? 2 : 3;
    c.n_heads = 2;
    c.mlp_dim = 64;
    return c;
}

static void read_set(const char* rel, TensorSet* s) {
    Error e;
    if (safetensors_read(src_path(rel), s, &e) != 0) fatal("%s", e.msg);
}

// The F32 tensor `name` of s, which must hold n values.
static const float* ref(const TensorSet* s, const char* name, size_t n) {
    const NamedTensor* t = tensorset_find(s, name);
    if (!t || t->dtype != DT_F32 || (size_t)tensor_numel(t) != n)
        fatal("reference tensor %s missing or not %zu floats: rerun tests/reference/encoders_reference.py", name, n);
    return t->data;
}

// A ViT with its own parameter and gradient buffers, loaded from a reference weights file.
typedef struct Model {
    ViT* v;
    float *params, *grads;
} Model;

static Model model_load(const ViTConfig* c, const TensorSet* w) {
    Error e;
    Model m = {vit_create(c, be, &e), NULL, NULL};
    if (!m.v) fatal("%s", e.msg);
    m.params = xcalloc(m.v->table.n_params, sizeof(float));
    m.grads = xcalloc(m.v->table.n_params, sizeof(float));
    vit_bind(m.v, m.params, m.grads);
    if (vit_load(m.v, w, "weights", &e) != 0) fatal("%s", e.msg);
    return m;
}

static void model_free(Model* m) {
    vit_free(m->v);
    free(m->params);
    free(m->grads);
}

static size_t out_floats(const ViT* v) { return (size_t)B * vit_out_tokens(&v->cfg, 0) * v->cfg.dim; }
static size_t in_floats(const ViT* v) {
    return (size_t)B * v->cfg.channels * v->cfg.image_size * v->cfg.image_size;
}

// sum(out * dout) in double, from an inference forward.
static double loss_of(Model* m, const float* pixels, const float* dout) {
    ViTActs* a = vit_acts_create(m->v, B, 0, 0);
    vit_forward(m->v, a, pixels);
    double s = 0;
    for (size_t i = 0; i < out_floats(m->v); i++) s += (double)a->out[i] * dout[i];
    vit_acts_free(m->v, a);
    return s;
}

static size_t argmax_abs(const float* x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (fabsf(x[i]) > fabsf(x[best])) best = i;
    return best;
}

// Central difference of the loss in x[i] (a parameter or a pixel) against the analytic gradient g.
static int check_fd(const char* label, Model* m, float* x, size_t i, float g, const float* pixels,
                    const float* dout) {
    const float h = 1e-2f;
    float keep = x[i];
    x[i] = keep + h;
    double lp = loss_of(m, pixels, dout);
    x[i] = keep - h;
    double lm = loss_of(m, pixels, dout);
    x[i] = keep;
    float fd = (float)((lp - lm) / (2.0 * h));
    char name[160];
    snprintf(name, sizeof name, "  finite difference %s[%zu]", label, i);
    return check_close_rel(name, &g, &fd, 1, FD_TOL, 1.0);
}

// A parameter gradient against the reference. The key bias's exact gradient is zero (softmax over keys ignores a
// shift that is the same for every key, and q . b_k is): there the check is absolute, against fp32 round-off.
static int check_grad(const char* name, const float* got, const float* want, size_t n) {
    if (strstr(name, "k_proj.bias")) return check_close_abs(name, got, want, n, 1e-5);
    return check_rel_to_max(name, got, want, n, GRAD_TOL);
}

// ---------------------------------------------------------------------------------------------------- checks

// Forward, every gradient, finite differences and the frozen backward of one reference case.
static int check_case(const char* title, ViTConfig cfg, const TensorSet* w, const char* io_file) {
    printf("-- %s\n", title);
    TensorSet io;
    read_set(io_file, &io);
    Model m = model_load(&cfg, w);
    ViT* v = m.v;
    const float* pixels = ref(&io, "input", in_floats(v));
    const float* dout = ref(&io, "dout", out_floats(v));
    int fails = 0;
    ViTActs* a = vit_acts_create(v, B, 0, 1);
    vit_forward(v, a, pixels);
    fails += check_rel_to_max("forward vs reference", a->out, ref(&io, "out", out_floats(v)), out_floats(v), FWD_TOL);
    ViTActs* inf = vit_acts_create(v, B, 0, 0);
    vit_forward(v, inf, pixels);
    fails += check_bitwise("inference activations give the same output", inf->out, a->out, out_floats(v) * 4);
    vit_acts_free(v, inf);

    float* dpix = test_poisoned_floats(in_floats(v));
    vit_backward(v, a, dout, dpix);
    fails += check_rel_to_max("grad pixels", dpix, ref(&io, "grad.input", in_floats(v)), in_floats(v), GRAD_TOL);
    for (int i = 0; i < v->table.n; i++) {
        const TensorSpec* s = &v->table.specs[i];
        char name[PARAM_NAME_MAX + 8];
        snprintf(name, sizeof name, "grad.%s", s->name);
        fails += check_grad(name, m.grads + s->offset, ref(&io, name, s->numel), s->numel);
    }

    // finite differences: the largest-gradient coordinate of a few tensors and of the pixels
    const char* fd_names[] = {"embeddings.patch_embedding.weight", "embeddings.position_embedding.weight",
                              "encoder.layers.0.self_attn.q_proj.weight", "encoder.layers.0.layer_norm1.bias",
                              "encoder.layers.1.mlp.fc2.weight", "encoder.layers.1.self_attn.v_proj.bias"};
    for (size_t k = 0; k < sizeof fd_names / sizeof fd_names[0]; k++) {
        char full[PARAM_NAME_MAX];
        snprintf(full, sizeof full, "%s%s", cfg.prefix, fd_names[k]);
        const TensorSpec* s = param_table_find(&v->table, full);
        if (!s) continue;   // a layer that this hidden-layer choice does not run
        size_t j = argmax_abs(m.grads + s->offset, s->numel);
        fails += check_fd(fd_names[k], &m, m.params + s->offset, j, m.grads[s->offset + j], pixels, dout);
    }
    float* pix = test_copy_floats(pixels, in_floats(v));
    size_t j = argmax_abs(dpix, in_floats(v));
    fails += check_fd("pixels", &m, pix, j, dpix[j], pix, dout);
    free(pix);

    // without a pixel gradient: the same weight gradients
    float* grads1 = test_copy_floats(m.grads, v->table.n_params);
    memset(m.grads, 0, v->table.n_params * sizeof(float));
    vit_backward(v, a, dout, NULL);
    fails += check_bitwise("backward without dpixels: same weight gradients", m.grads, grads1, v->table.n_params * 4);
    free(grads1);

    // frozen: the same pixel gradient, and the gradient buffer is not touched
    float* before = test_copy_floats(m.grads, v->table.n_params);
    vit_bind(v, m.params, NULL);
    float* dpix2 = test_poisoned_floats(in_floats(v));
    vit_forward(v, a, pixels);
    vit_backward(v, a, dout, dpix2);
    fails += check_bitwise("frozen backward: same pixel gradient", dpix2, dpix, in_floats(v) * 4);
    fails += check_bitwise("frozen backward: gradient memory untouched", m.grads, before, v->table.n_params * 4);
    free(before);
    free(dpix2);
    free(dpix);
    vit_acts_free(v, a);
    model_free(&m);
    tensorset_free(&io);
    return fails;
}

// hidden_layer k (and keep_cls) against HF's hidden_states of the reference.
static int check_hidden(ViTConfig cfg, const TensorSet* w, const TensorSet* io, int k, int keep_cls) {
    cfg.hidden_layer = k;
    cfg.keep_cls = keep_cls;
    Model m = model_load(&cfg, w);
    ViT* v = m.v;
    int idx = k >= 0 ? k : cfg.n_layers + 1 + k;
    const size_t T = (size_t)v->n_tokens, D = (size_t)cfg.dim;
    char name[32];
    snprintf(name, sizeof name, "hidden_states.%d", idx);
    const float* hs = ref(io, name, B * T * D);
    float* want = xmalloc(out_floats(v) * sizeof(float));
    size_t skip = cfg.kind == VIT_CLIP && !keep_cls ? 1 : 0;
    for (int b = 0; b < B; b++)
        memcpy(want + (size_t)b * (T - skip) * D, hs + ((size_t)b * T + skip) * D, (T - skip) * D * sizeof(float));
    ViTActs* a = vit_acts_create(v, B, 0, 0);
    vit_forward(v, a, ref(io, "input", in_floats(v)));
    char label[128];
    snprintf(label, sizeof label, "hidden_layer %d%s = hidden_states[%d] (%d layers run, %zu tensors)", k,
             cfg.kind == VIT_CLIP ? (keep_cls ? " with CLS" : " without CLS") : "", idx, v->n_run,
             (size_t)v->table.n);
    int fails = check_rel_to_max(label, a->out, want, out_floats(v), FWD_TOL);
    char unused[PARAM_NAME_MAX];
    snprintf(unused, sizeof unused, "%sencoder.layers.%d.mlp.fc1.weight", cfg.prefix, idx);
    fails += check_true("  layers after the requested one are not in the table",
                        param_table_find(&v->table, unused) == NULL, unused);
    vit_acts_free(v, a);
    free(want);
    model_free(&m);
    return fails;
}

static int check_hidden_layers(int kind, const char* weights, const char* io_file) {
    printf("-- hidden-layer option, %s\n", kind == VIT_SIGLIP ? "SigLIP" : "CLIP");
    TensorSet w, io;
    read_set(weights, &w);
    read_set(io_file, &io);
    ViTConfig cfg = small_config(kind);
    int L = cfg.n_layers, fails = 0;
    const int ks[] = {0, 1, L, -2, -(L + 1)};
    for (int i = 0; i < 5; i++) fails += check_hidden(cfg, &w, &io, ks[i], 1);
    if (kind == VIT_CLIP) fails += check_hidden(cfg, &w, &io, 1, 0);
    tensorset_free(&w);
    tensorset_free(&io);
    return fails;
}

// A copy of src without `drop`, and with `reshape` (if not NULL) given the shape {rows, cols}.
static void edited_copy(TensorSet* dst, const TensorSet* src, const char* drop, const char* reshape, int64_t rows,
                        int64_t cols) {
    tensorset_init(dst);
    for (int i = 0; i < src->n; i++) {
        const NamedTensor* t = &src->t[i];
        if (drop && strcmp(t->name, drop) == 0) continue;
        if (reshape && strcmp(t->name, reshape) == 0) {
            int64_t shape[2] = {rows, cols};
            tensorset_add(dst, t->name, DT_F32, 2, shape, NULL);
        } else {
            tensorset_add(dst, t->name, t->dtype, t->ndim, t->shape, t->data);
        }
    }
}

static int check_rejections(void) {
    printf("-- bad checkpoints and configs are rejected\n");
    TensorSet w, bad;
    read_set("tests/reference/vectors/vit-siglip.weights.safetensors", &w);
    ViTConfig cfg = small_config(VIT_SIGLIP);
    Error e;
    ViT* v = vit_create(&cfg, be, &e);
    float* params = xcalloc(v->table.n_params, sizeof(float));
    vit_bind(v, params, NULL);
    int fails = 0;
    edited_copy(&bad, &w, "vision_model.encoder.layers.1.mlp.fc2.bias", NULL, 0, 0);
    fails += expect_reject("missing tensor", vit_load(v, &bad, "siglip.safetensors", &e), &e, "siglip.safetensors",
                           "'vision_model.encoder.layers.1.mlp.fc2.bias' is missing (expected shape [32])");
    tensorset_free(&bad);
    edited_copy(&bad, &w, NULL, "vision_model.embeddings.position_embedding.weight", 15, 32);
    fails += expect_reject("misshapen tensor", vit_load(v, &bad, "siglip.safetensors", &e), &e, "siglip.safetensors",
                           "'vision_model.embeddings.position_embedding.weight' has shape [15, 32], expected [16, 32]");
    tensorset_free(&bad);
    free(params);
    vit_free(v);

    ViTConfig c = cfg;
    c.hidden_layer = 3;
    fails += expect_reject("hidden layer out of range", vit_create(&c, be, &e) ? 0 : -1, &e, "vit", "[-3, 2]");
    c = cfg;
    c.image_size = 30;
    fails += expect_reject("image size not a multiple of the patch", vit_create(&c, be, &e) ? 0 : -1, &e, "vit",
                           "multiple of the patch size 8");
    c = cfg;
    c.n_heads = 5;
    fails += expect_reject("dim not a multiple of the heads", vit_create(&c, be, &e) ? 0 : -1, &e, "vit",
                           "not a multiple of n_heads 5");

    char prefix[VIT_PREFIX_MAX];
    int rc = vit_detect_prefix(&w, prefix, sizeof prefix);
    fails += check_true("vit_detect_prefix finds 'vision_model.'", rc == 0 && strcmp(prefix, "vision_model.") == 0,
                        prefix);
    tensorset_free(&w);
    return fails;
}

// The demo size of a random tower: deterministic init, finite outputs and gradients; the published sizes.
static int check_random_and_published(void) {
    printf("-- random init at the demo size; published sizes\n");
    ViTConfig c = small_config(VIT_SIGLIP);
    c.patch_size = 4;   // 64 tokens
    c.dim = 64;
    c.n_heads = 4;
    c.mlp_dim = 256;
    Error e;
    ViT* v = vit_create(&c, be, &e);
    size_t n = v->table.n_params;
    float *p1 = xcalloc(n, sizeof(float)), *p2 = xcalloc(n, sizeof(float)), *g = xcalloc(n, sizeof(float));
    vit_bind(v, p2, NULL);
    vit_init_random(v, 42);
    vit_bind(v, p1, g);
    vit_init_random(v, 42);
    int fails = check_bitwise("init_random is deterministic", p1, p2, n * 4);
    TestRng r;
    test_rng_seed(&r, 5);
    size_t n_in = (size_t)B * 3 * 32 * 32, n_out = (size_t)B * 64 * 64;
    float* pix = test_random_floats(&r, n_in, -1, 1);
    float* dout = test_random_floats(&r, n_out, -1, 1);
    float* dpix = test_poisoned_floats(n_in);
    ViTActs* a = vit_acts_create(v, B, 0, 1);
    vit_forward(v, a, pix);
    vit_backward(v, a, dout, dpix);
    int finite = 1;
    double rms = 0;
    for (size_t i = 0; i < n_out; i++) finite &= isfinite(a->out[i]), rms += (double)a->out[i] * a->out[i];
    for (size_t i = 0; i < n_in; i++) finite &= isfinite(dpix[i]);
    for (size_t i = 0; i < n; i++) finite &= isfinite(g[i]);
    rms = sqrt(rms / (double)n_out);
    printf("  demo tower: %d tokens, %zu parameters, output rms %.3f\n", vit_out_tokens(&c, 0), n, rms);
    fails += check_true("demo tower: finite output and gradients, output rms near 1", finite && rms > 0.5 && rms < 2,
                        "non-finite values or a degenerate output");
    vit_acts_free(v, a);
    vit_free(v);
    free(p1), free(p2), free(g), free(pix), free(dout), free(dpix);

    ViTConfig s, l;
    vit_config_siglip2_base_384(&s);
    vit_config_clip_large_336(&l);
    ViT* vs = vit_create(&s, be, &e);
    ViT* vl = vit_create(&l, be, &e);
    printf("  siglip2-base-patch16-384: %d tokens, %zu parameters; clip-vit-large-patch14-336: %d tokens, %zu "
           "parameters\n", vit_out_tokens(&s, 0), vs ? vs->table.n_params : 0, vit_out_tokens(&l, 0),
           vl ? vl->table.n_params : 0);
    fails += check_true("published sizes: SigLIP2 576 tokens, CLIP 577", vs && vl && vit_out_tokens(&s, 0) == 576 &&
                        vit_out_tokens(&l, 0) == 577, "wrong token counts");
    l.keep_cls = 0;
    fails += check_true("CLIP without CLS: 576 tokens", vit_out_tokens(&l, 0) == 576, "wrong token count");
    vit_free(vs);
    vit_free(vl);
    return fails;
}

int main(void) {
    be = backend_cpu_create(0);
    int fails = 0;
    TensorSet ws, wc;
    read_set("tests/reference/vectors/vit-siglip.weights.safetensors", &ws);
    read_set("tests/reference/vectors/vit-clip.weights.safetensors", &wc);
    fails += check_case("SigLIP, last_hidden_state (post_layernorm)", small_config(VIT_SIGLIP), &ws,
                        "tests/reference/vectors/vit-siglip.io.safetensors");
    fails += check_case("CLIP, last_hidden_state with CLS", small_config(VIT_CLIP), &wc,
                        "tests/reference/vectors/vit-clip.io.safetensors");
    ViTConfig llava = small_config(VIT_CLIP);
    llava.hidden_layer = -2;
    llava.keep_cls = 0;
    fails += check_case("CLIP as LLaVA: hidden_layer -2, CLS dropped", llava, &wc,
                        "tests/reference/vectors/vit-clip-llava.io.safetensors");
    tensorset_free(&ws);
    tensorset_free(&wc);
    fails += check_hidden_layers(VIT_SIGLIP, "tests/reference/vectors/vit-siglip.weights.safetensors",
                                 "tests/reference/vectors/vit-siglip.io.safetensors");
    fails += check_hidden_layers(VIT_CLIP, "tests/reference/vectors/vit-clip.weights.safetensors",
                                 "tests/reference/vectors/vit-clip.io.safetensors");
    fails += check_rejections();
    fails += check_random_and_published();
    backend_destroy(be);
    return test_summary("test_vit", fails);
}
