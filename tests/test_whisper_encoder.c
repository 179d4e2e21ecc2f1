// test_whisper_encoder.c — the Whisper audio encoder (trainer/whisper.h) against the float64 PyTorch reference
// (tests/reference/encoders_reference.py: whisper-enc.* in tests/reference/vectors): the forward and the gradient
// of every parameter and of the log-mel input in both length modes (truncate; pad30 with ModRWKV's truncation to
// real_frames // 2 + 1 rows), central finite differences, the inference activations, a frozen backward, the
// frozen embed_positions, prefix detection, and the rejection of bad checkpoints, configs and frame counts.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "tests/testutil.h"
#include "trainer/safetensors.h"
#include "trainer/whisper.h"

static Backend* be;

static const double FWD_TOL = 1e-4;    // relative to the tensor's max |value| (check_rel_to_max)
static const double GRAD_TOL = 2e-4;   // fp32 round-off through the whole backward (measured max 8.7e-5)
static const double FD_TOL = 5e-3;     // fp32 central differences
static const int B = 2;                // the reference batch
static const char* const WEIGHTS = "tests/reference/vectors/whisper-enc.weights.safetensors";

// ---------------------------------------------------------------------------------------------------- fixtures

// The reference sizes: 16 mels, D 32, 2 layers, 2 heads, MLP 64, 24 positions (pad30 = 48 frames).
static WhisperConfig small_config(int mode) {
    WhisperConfig c;
    whisper_config_small(&c);
    c.n_mels = 16;
    c.dim = 32;
    c.n_layers = 2;
    c.n_heads = 2;
    c.mlp_dim = 64;
    c.max_positions = 24;
    c.length_mode = mode;
    return c;
}

static void read_set(const char* rel, TensorSet* s) {
    Error e;
    if (safetensors_read(src_path(rel), s, &e) != 0) fatal("%s", e.msg);
}

// The tensor `name` of s (dtype dt), which must hold n values.
static const void* ref_typed(const TensorSet* s, const char* name, size_t n, DType dt) {
    const NamedTensor* t = tensorset_find(s, name);
    if (!t || t->dtype != dt || (size_t)tensor_numel(t) != n)
        fatal("reference tensor %s missing or not %zu values: rerun tests/reference/encoders_reference.py", name, n);
    return t->data;
}

static const float* ref(const TensorSet* s, const char* name, size_t n) { return ref_typed(s, name, n, DT_F32); }

// A Whisper encoder with its own parameter and gradient buffers, loaded from a weights set.
typedef struct Model {
    Whisper* w;
    float *params, *grads;
} Model;

static Model model_load(const WhisperConfig* c, const TensorSet* set) {
    Error e;
    Model m = {whisper_create(c, be, &e), NULL, NULL};
    if (!m.w) fatal("%s", e.msg);
    m.params = xcalloc(m.w->table.n_params, sizeof(float));
    m.grads = xcalloc(m.w->table.n_params, sizeof(float));
    whisper_bind(m.w, m.params, m.grads);
    if (whisper_load(m.w, set, "weights", &e) != 0) fatal("%s", e.msg);
    return m;
}

static void model_free(Model* m) {
    whisper_free(m->w);
    free(m->params);
    free(m->grads);
}

// One batch: the input, its frame count and the real frame counts (pad30).
typedef struct Batch {
    const float* mel;
    int n_frames;
    const int* real;   // (B) or NULL
} Batch;

static WhisperActs* run_forward(Model* m, const Batch* x, int with_backward) {
    WhisperActs* a = whisper_acts_create(m->w, B, x->n_frames, with_backward);
    for (int b = 0; x->real && b < B; b++) a->real_frames[b] = x->real[b];
    whisper_forward(m->w, a, x->mel);
    return a;
}

// sum(out * dout) in double over the kept rows, from an inference forward.
static double loss_of(Model* m, const Batch* x, const float* dout) {
    WhisperActs* a = run_forward(m, x, 0);
    double s = 0;
    const int T = a->n_out, D = m->w->cfg.dim;
    for (int b = 0; b < B; b++) {
        size_t end = ((size_t)b * T + a->n_valid[b]) * D;
        for (size_t i = (size_t)b * T * D; i < end; i++) s += (double)a->out[i] * dout[i];
    }
    whisper_acts_free(m->w, a);
    return s;
}

static size_t argmax_abs(const float* x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (fabsf(x[i]) > fabsf(x[best])) best = i;
    return best;
}

// Central difference of the loss in v[i] (a parameter or an input value) against the analytic gradient g.
static int check_fd(const char* label, Model* m, float* v, size_t i, float g, const Batch* x, const float* dout) {
    const float h = 1e-2f;
    float keep = v[i];
    v[i] = keep + h;
    double lp = loss_of(m, x, dout);
    v[i] = keep - h;
    double lm = loss_of(m, x, dout);
    v[i] = keep;
    float fd = (float)((lp - lm) / (2.0 * h));
    char name[160];
    snprintf(name, sizeof name, "  finite difference %s[%zu]", label, i);
    return check_close_rel(name, &g, &fd, 1, FD_TOL, 1.0);
}

// A parameter gradient against the reference. The key bias does not exist in Whisper; embed_positions is frozen
// (no reference gradient: the buffer must stay zero).
static int check_param_grad(const TensorSet* io, const TensorSpec* s, const float* got) {
    char name[PARAM_NAME_MAX + 8];
    snprintf(name, sizeof name, "grad.%s", s->name);
    if (s->unused) {
        float* zeros = xcalloc(s->numel, sizeof(float));
        int f = check_close_abs(name, got, zeros, s->numel, 0.0) +
                check_true("  the frozen tensor has no reference gradient either", !tensorset_find(io, name), name);
        free(zeros);
        return f;
    }
    return check_rel_to_max(name, got, ref(io, name, s->numel), s->numel, GRAD_TOL);
}

// ---------------------------------------------------------------------------------------------------- checks

static int check_fds(Model* m, const Batch* x, const float* dout, const float* dmel) {
    const char* names[] = {"conv1.weight", "conv2.bias", "layers.0.self_attn.k_proj.weight",
                           "layers.1.fc1.bias", "layers.1.self_attn_layer_norm.weight", "layer_norm.weight"};
    int fails = 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char full[PARAM_NAME_MAX];
        snprintf(full, sizeof full, "%s%s", m->w->cfg.prefix, names[k]);
        const TensorSpec* s = param_table_find(&m->w->table, full);
        size_t j = argmax_abs(m->grads + s->offset, s->numel);
        fails += check_fd(names[k], m, m->params + s->offset, j, m->grads[s->offset + j], x, dout);
    }
    size_t n_in = (size_t)B * x->n_frames * m->w->cfg.n_mels;
    float* mel = test_copy_floats(x->mel, n_in);
    Batch y = *x;
    y.mel = mel;
    size_t j = argmax_abs(dmel, n_in);
    fails += check_fd("log-mel input", m, mel, j, dmel[j], &y, dout);
    free(mel);
    return fails;
}

// Forward, every gradient, finite differences and the frozen backward of one reference case.
static int check_case(const char* title, int mode, const char* io_file) {
    printf("-- %s\n", title);
    TensorSet w, io;
    read_set(WEIGHTS, &w);
    read_set(io_file, &io);
    WhisperConfig cfg = small_config(mode);
    Model m = model_load(&cfg, &w);
    const NamedTensor* in = tensorset_find(&io, "input");
    Batch x = {.mel = in->data, .n_frames = (int)in->shape[1], .real = NULL};
    if (mode == WHISPER_PAD30) x.real = ref_typed(&io, "real_frames", B, DT_I32);
    const int T = whisper_out_tokens(&cfg, x.n_frames), D = cfg.dim;
    const size_t n_out = (size_t)B * T * D, n_in = (size_t)B * x.n_frames * cfg.n_mels;
    const float* dout = ref(&io, "dout", n_out);
    int fails = 0;

    WhisperActs* a = run_forward(&m, &x, 1);
    printf("  %d frames -> %d tokens; kept rows %d and %d\n", x.n_frames, T, a->n_valid[0], a->n_valid[1]);
    if (mode == WHISPER_PAD30)
        fails += check_true("pad30 keeps real_frames // 2 + 1 rows",
                            a->n_valid[0] == x.real[0] / 2 + 1 && a->n_valid[1] == x.real[1] / 2 + 1, "wrong n_valid");
    fails += check_rel_to_max("forward vs reference", a->out, ref(&io, "out", n_out), n_out, FWD_TOL);
    WhisperActs* inf = run_forward(&m, &x, 0);
    fails += check_bitwise("inference activations give the same output", inf->out, a->out, n_out * 4);
    whisper_acts_free(m.w, inf);

    float* dmel = test_poisoned_floats(n_in);
    whisper_backward(m.w, a, dout, dmel);
    fails += check_rel_to_max("grad log-mel input", dmel, ref(&io, "grad.input", n_in), n_in, GRAD_TOL);
    for (int i = 0; i < m.w->table.n; i++)
        fails += check_param_grad(&io, &m.w->table.specs[i], m.grads + m.w->table.specs[i].offset);
    fails += check_fds(&m, &x, dout, dmel);

    // without an input gradient: the same weight gradients
    float* grads1 = test_copy_floats(m.grads, m.w->table.n_params);
    memset(m.grads, 0, m.w->table.n_params * sizeof(float));
    whisper_backward(m.w, a, dout, NULL);
    fails += check_bitwise("backward without dmel: same weight gradients", m.grads, grads1, m.w->table.n_params * 4);
    free(grads1);

    // frozen: the same input gradient, and the gradient buffer is not touched
    float* before = test_copy_floats(m.grads, m.w->table.n_params);
    whisper_bind(m.w, m.params, NULL);
    float* dmel2 = test_poisoned_floats(n_in);
    whisper_forward(m.w, a, x.mel);
    whisper_backward(m.w, a, dout, dmel2);
    fails += check_bitwise("frozen backward: same input gradient", dmel2, dmel, n_in * 4);
    fails += check_bitwise("frozen backward: gradient memory untouched", m.grads, before, m.w->table.n_params * 4);
    free(before);
    free(dmel2);
    free(dmel);
    whisper_acts_free(m.w, a);
    model_free(&m);
    tensorset_free(&w);
    tensorset_free(&io);
    return fails;
}

// src with every name's prefix "model.encoder." replaced by "encoder." (a WhisperModel checkpoint).
static void renamed_copy(TensorSet* dst, const TensorSet* src) {
    tensorset_init(dst);
    for (int i = 0; i < src->n; i++) {
        const NamedTensor* t = &src->t[i];
        tensorset_add(dst, t->name + strlen("model."), t->dtype, t->ndim, t->shape, t->data);
    }
}

// A copy of src without `drop`, and with `reshape` (if not NULL) given the shape {d0, d1, d2}.
static void edited_copy(TensorSet* dst, const TensorSet* src, const char* drop, const char* reshape,
                        const int64_t* shape) {
    tensorset_init(dst);
    for (int i = 0; i < src->n; i++) {
        const NamedTensor* t = &src->t[i];
        if (drop && strcmp(t->name, drop) == 0) continue;
        if (reshape && strcmp(t->name, reshape) == 0) tensorset_add(dst, t->name, DT_F32, 3, shape, NULL);
        else tensorset_add(dst, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
}

static int check_checkpoints(void) {
    printf("-- prefixes, bad checkpoints, configs and frame counts\n");
    TensorSet w, renamed, bad;
    read_set(WEIGHTS, &w);
    renamed_copy(&renamed, &w);
    WhisperConfig cfg = small_config(WHISPER_TRUNCATE);
    Error e;
    int fails = 0;
    char prefix[WHISPER_PREFIX_MAX];
    int rc = whisper_detect_prefix(&w, prefix, sizeof prefix);
    fails += check_true("detect prefix: 'model.encoder.' (WhisperForConditionalGeneration)",
                        rc == 0 && strcmp(prefix, "model.encoder.") == 0, prefix);
    rc = whisper_detect_prefix(&renamed, prefix, sizeof prefix);
    fails += check_true("detect prefix: 'encoder.' (WhisperModel)", rc == 0 && strcmp(prefix, "encoder.") == 0, prefix);

    Whisper* wh = whisper_create(&cfg, be, &e);
    float* params = xcalloc(wh->table.n_params, sizeof(float));
    whisper_bind(wh, params, NULL);
    fails += expect_reject("other prefix: says which to configure", whisper_load(wh, &renamed, "wm.safetensors", &e),
                           &e, "wm.safetensors", "under the prefix 'encoder.'");
    edited_copy(&bad, &w, "model.encoder.layers.1.fc2.bias", NULL, NULL);
    fails += expect_reject("missing tensor", whisper_load(wh, &bad, "w.safetensors", &e), &e, "w.safetensors",
                           "'model.encoder.layers.1.fc2.bias' is missing (expected shape [32])");
    tensorset_free(&bad);
    const int64_t shape[3] = {32, 16, 5};
    edited_copy(&bad, &w, NULL, "model.encoder.conv1.weight", shape);
    fails += expect_reject("misshapen tensor", whisper_load(wh, &bad, "w.safetensors", &e), &e, "w.safetensors",
                           "'model.encoder.conv1.weight' has shape [32, 16, 5], expected [32, 16, 3]");
    tensorset_free(&bad);
    free(params);
    whisper_free(wh);

    // the same weights under "encoder." load with that prefix configured and give the same output
    WhisperConfig c2 = cfg;
    snprintf(c2.prefix, sizeof c2.prefix, "encoder.");
    Model m1 = model_load(&cfg, &w), m2 = model_load(&c2, &renamed);
    TestRng r;
    test_rng_seed(&r, 3);
    float* mel = test_random_floats(&r, (size_t)B * 20 * 16, -1, 1);
    Batch x = {mel, 20, NULL};
    WhisperActs *a1 = run_forward(&m1, &x, 0), *a2 = run_forward(&m2, &x, 0);
    fails += check_bitwise("prefix 'encoder.': same output", a1->out, a2->out, (size_t)B * a1->n_out * 32 * 4);
    whisper_acts_free(m1.w, a1);
    whisper_acts_free(m2.w, a2);
    model_free(&m1);
    model_free(&m2);
    free(mel);

    fails += expect_reject("pad30 with 40 frames", whisper_check_frames(&(WhisperConfig){.max_positions = 24,
                           .length_mode = WHISPER_PAD30}, 40, &e), &e, "whisper", "takes exactly 48");
    fails += expect_reject("truncate with 49 frames", whisper_check_frames(&cfg, 49, &e), &e, "whisper",
                           "outside [1, 48]");
    WhisperConfig c3 = cfg;
    c3.n_heads = 3;
    fails += expect_reject("dim not a multiple of the heads", whisper_create(&c3, be, &e) ? 0 : -1, &e, "whisper",
                           "not a multiple of n_heads 3");
    tensorset_free(&w);
    tensorset_free(&renamed);
    return fails;
}

// The demo size of a random encoder: deterministic init, sinusoidal positions, finite results; published sizes.
static int check_random_and_published(void) {
    printf("-- random init at the demo size; published sizes\n");
    WhisperConfig c = small_config(WHISPER_TRUNCATE);
    c.n_mels = 80;
    c.dim = 64;
    c.n_heads = 4;
    c.mlp_dim = 256;
    c.max_positions = 1500;
    Error e;
    Whisper* w = whisper_create(&c, be, &e);
    size_t n = w->table.n_params;
    float *p1 = xcalloc(n, sizeof(float)), *p2 = xcalloc(n, sizeof(float)), *g = xcalloc(n, sizeof(float));
    whisper_bind(w, p2, NULL);
    whisper_init_random(w, 7);
    whisper_bind(w, p1, g);
    whisper_init_random(w, 7);
    int fails = check_bitwise("init_random is deterministic", p1, p2, n * 4);
    const float* row = w->p.pos + 5 * 64;   // position 5: [sin(5 inv_i) | cos(5 inv_i)], inv_i = 1e4^(-i / 31)
    const double inv1 = exp(-log(1e4) / 31.0), inv31 = 1e-4;
    float want[4] = {(float)sin(5.0), (float)sin(5.0 * inv1), (float)cos(5.0), (float)cos(5.0 * inv31)};
    float got[4] = {row[0], row[1], row[32], row[63]};
    fails += check_close_abs("init_random: embed_positions are Whisper's sinusoids", got, want, 4, 1e-6);
    TestRng r;
    test_rng_seed(&r, 9);
    const int frames = 101, T = whisper_out_tokens(&c, frames);
    size_t n_in = (size_t)B * frames * 80, n_out = (size_t)B * T * 64;
    float* mel = test_random_floats(&r, n_in, -1, 1);
    float* dout = test_random_floats(&r, n_out, -1, 1);
    float* dmel = test_poisoned_floats(n_in);
    WhisperActs* a = whisper_acts_create(w, B, frames, 1);
    whisper_forward(w, a, mel);
    whisper_backward(w, a, dout, dmel);
    int finite = 1;
    for (size_t i = 0; i < n_out; i++) finite &= isfinite(a->out[i]);
    for (size_t i = 0; i < n_in; i++) finite &= isfinite(dmel[i]);
    for (size_t i = 0; i < n; i++) finite &= isfinite(g[i]);
    printf("  demo encoder: %d frames -> %d tokens, %zu parameters\n", frames, T, n);
    fails += check_true("demo encoder: 51 tokens, finite output and gradients", T == 51 && finite, "bad result");
    whisper_acts_free(w, a);
    whisper_free(w);
    free(p1), free(p2), free(g), free(mel), free(dout), free(dmel);

    WhisperConfig s, md, l;
    whisper_config_small(&s);
    whisper_config_medium(&md);
    whisper_config_large_v3(&l);
    Whisper *ws = whisper_create(&s, be, &e), *wm = whisper_create(&md, be, &e), *wl = whisper_create(&l, be, &e);
    printf("  encoder parameters: small %zu, medium %zu, large-v3 %zu\n", ws ? ws->table.n_params : 0,
           wm ? wm->table.n_params : 0, wl ? wl->table.n_params : 0);
    fails += check_true("published sizes: 3000 frames -> 1500 tokens; 1000 real frames keep 501; 3000 keep 1500",
                        ws && wm && wl && whisper_out_tokens(&s, 3000) == 1500 &&
                        whisper_valid_tokens(&s, 3000, 1000) == 501 && whisper_valid_tokens(&s, 3000, 3000) == 1500,
                        "wrong token counts");
    whisper_free(ws);
    whisper_free(wm);
    whisper_free(wl);
    return fails;
}

int main(void) {
    be = backend_cpu_create(0);
    int fails = 0;
    fails += check_case("truncate mode: 37 real frames", WHISPER_TRUNCATE,
                        "tests/reference/vectors/whisper-enc-truncate.io.safetensors");
    fails += check_case("pad30 mode: 48 frames (2 x 24 positions), output truncated to the real length",
                        WHISPER_PAD30, "tests/reference/vectors/whisper-enc-pad30.io.safetensors");
    fails += check_checkpoints();
    fails += check_random_and_published();
    backend_destroy(be);
    return test_summary("test_whisper_encoder", fails);
}
