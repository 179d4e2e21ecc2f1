// test_projector.c — the ModRWKV projectors (trainer/projector.h) against the float64 PyTorch reference of
// tests/reference/projector_reference.py (vectors/projector.safetensors): for each kind the forward, the
// gradient of every parameter and of the input, central finite differences, frozen mode and inference
// activations; then the token counts of the paper's Table 7, parameter counts, random init, and the
// rejection of bad configurations.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "tests/testutil.h"
#include "trainer/projector.h"
#include "trainer/safetensors.h"

enum { B = 2, N_IN = 11, D_ENC = 6, C = 5 };   // projector_reference.py
static const double REL_TOL = 1e-4;
static const double FD_EPS = 3e-3;       // central-difference step (fp32 forward, loss summed in double)
static const double FD_REL_TOL = 1e-3;

typedef struct Case {
    const char* name;      // prefix in the vectors file
    ProjectorConfig cfg;
} Case;

static const Case CASES[] = {
    {"linear", {PROJ_LINEAR, D_ENC, C, 0, 0, 0, NULL}},
    {"mlp", {PROJ_MLP, D_ENC, C, 2, 0, 0, NULL}},
    {"conv_mlp_k3s2", {PROJ_CONV_MLP, D_ENC, C, 2, 3, 2, NULL}},
    {"conv_mlp_k5s4", {PROJ_CONV_MLP, D_ENC, C, 4, 5, 4, NULL}},
    {"pool_mlp_s3", {PROJ_POOL_MLP, D_ENC, C, 2, 0, 3, NULL}},
};

static const NamedTensor* ref_tensor(const TensorSet* s, const char* case_name, const char* name) {
    char full[256];
    snprintf(full, sizeof full, "%s.%s", case_name, name);
    const NamedTensor* t = tensorset_find(s, full);
    if (!t || t->dtype != DT_F32) fatal("projector.safetensors: no F32 tensor %s: rerun projector_reference.py", full);
    return t;
}

static const float* ref(const TensorSet* s, const char* case_name, const char* name) {
    return ref_tensor(s, case_name, name)->data;
}

typedef struct Fixture {
    const Case* c;
    const TensorSet* set;
    Backend* be;
    Projector* p;
    float *params, *grads;
    ProjectorActs* acts;
    size_t n_in, n_out;   // floats of input and output
} Fixture;

// Loads the case's parameters through projector_load from a set holding them under their plain names.
static void fixture_init(Fixture* f, const Case* c, const TensorSet* set, Backend* be) {
    Error e = {0};
    memset(f, 0, sizeof *f);
    f->c = c;
    f->set = set;
    f->be = be;
    f->p = projector_create(&c->cfg, be, &e);
    if (!f->p) fatal("%s", e.msg);
    f->params = xcalloc(f->p->table.n_params, sizeof(float));
    f->grads = xcalloc(f->p->table.n_params, sizeof(float));
    projector_bind(f->p, f->params, f->grads);
    TensorSet plain;
    tensorset_init(&plain);
    for (int i = 0; i < f->p->table.n; i++) {
        const NamedTensor* t = ref_tensor(set, c->name, f->p->table.specs[i].name);
        tensorset_add(&plain, f->p->table.specs[i].name, t->dtype, t->ndim, t->shape, t->data);
    }
    if (projector_load(f->p, &plain, c->name, &e) != 0) fatal("%s", e.msg);
    tensorset_free(&plain);
    f->acts = projector_acts_create(f->p, B, N_IN, 1);
    f->n_in = (size_t)B * N_IN * D_ENC;
    f->n_out = (size_t)B * f->acts->n_out * C;
}

static void fixture_free(Fixture* f) {
    projector_acts_free(f->p, f->acts);
    projector_free(f->p);
    free(f->params);
    free(f->grads);
}

static int check_forward_backward(Fixture* f) {
    char label[256];
    const char* cn = f->c->name;
    const NamedTensor* want_out = ref_tensor(f->set, cn, "out");
    snprintf(label, sizeof label, "%s: %d output tokens (reference %lld)", cn, f->acts->n_out,
             (long long)want_out->shape[1]);
    int fail = check_true(label, f->acts->n_out == want_out->shape[1], NULL);
    projector_forward(f->p, f->acts, ref(f->set, cn, "input"));
    snprintf(label, sizeof label, "%s: forward out", cn);
    fail += check_rel_to_max(label, f->acts->out, want_out->data, f->n_out, REL_TOL);
    float* dinput = test_poisoned_floats(f->n_in);
    memset(f->grads, 0, f->p->table.n_params * sizeof(float));
    projector_backward(f->p, f->acts, ref(f->set, cn, "dout"), dinput);
    snprintf(label, sizeof label, "%s: grad input", cn);
    fail += check_rel_to_max(label, dinput, ref(f->set, cn, "grad.input"), f->n_in, REL_TOL);
    char name[PARAM_NAME_MAX + 8];
    for (int i = 0; i < f->p->table.n; i++) {
        const TensorSpec* s = &f->p->table.specs[i];
        snprintf(name, sizeof name, "grad.%s", s->name);
        snprintf(label, sizeof label, "%s: %s", cn, name);
        fail += check_rel_to_max(label, f->grads + s->offset, ref(f->set, cn, name), s->numel, REL_TOL);
    }
    free(dinput);
    return fail;
}

// sum(out * dout) in double after a forward of x.
static double loss_of(Fixture* f, const float* x, const float* dout) {
    projector_forward(f->p, f->acts, x);
    double s = 0;
    for (size_t i = 0; i < f->n_out; i++) s += (double)f->acts->out[i] * dout[i];
    return s;
}

// Signs of the ReLU inputs (mlp kinds) after the last forward, packed one per byte into signs (N * H).
static void relu_signs(const Fixture* f, unsigned char* signs) {
    size_t n = (size_t)f->acts->B * f->acts->n_out * f->p->hidden;
    for (size_t i = 0; i < n; i++) signs[i] = f->acts->h1[i] > 0.0f;
}

// Central difference of the loss in *v; *kink = 1 when a ReLU input changes sign between v - eps and v + eps
// (the loss is not smooth there, so the difference says nothing about the derivative).
static float central_difference(Fixture* f, float* v, float* x, const float* dout, int* kink) {
    size_t n_hidden = (size_t)f->acts->B * f->acts->n_out * f->p->hidden;
    unsigned char* up_signs = xcalloc(n_hidden + 1, 1);
    unsigned char* down_signs = xcalloc(n_hidden + 1, 1);
    float keep = *v;
    *v = keep + (float)FD_EPS;
    double up = loss_of(f, x, dout);
    relu_signs(f, up_signs);
    *v = keep - (float)FD_EPS;
    double down = loss_of(f, x, dout);
    relu_signs(f, down_signs);
    *v = keep;
    *kink = memcmp(up_signs, down_signs, n_hidden) != 0;
    free(up_signs);
    free(down_signs);
    return (float)((up - down) / (2 * FD_EPS));
}

// One coordinate of every parameter tensor (the middle one, or the next where the loss is smooth) and
// three of the input, compared with relative error |fd - analytic| / max(|fd|, 1).
static int check_finite_differences(Fixture* f) {
    const char* cn = f->c->name;
    const float* dout = ref(f->set, cn, "dout");
    float* x = test_copy_floats(ref(f->set, cn, "input"), f->n_in);
    float* dinput = test_poisoned_floats(f->n_in);
    memset(f->grads, 0, f->p->table.n_params * sizeof(float));
    projector_forward(f->p, f->acts, x);
    projector_backward(f->p, f->acts, dout, dinput);
    float got[16], want[16];
    int n = 0, kink = 0;
    for (int i = 0; i < f->p->table.n; i++) {
        const TensorSpec* s = &f->p->table.specs[i];
        for (size_t j = s->numel / 2; j < s->numel; j++) {
            want[n] = central_difference(f, f->params + s->offset + j, x, dout, &kink);
            got[n] = f->grads[s->offset + j];
            printf("  d/d %s[%zu]: analytic %.6f, finite difference %.6f%s\n", s->name, j, got[n], want[n],
                   kink ? " (a ReLU kink within eps: next coordinate)" : "");
            if (!kink) break;
        }
        n++;
    }
    const size_t xi[3] = {1, 29, 100};
    for (int i = 0; i < 3; i++) {
        for (size_t j = xi[i]; j < f->n_in; j++) {
            want[n] = central_difference(f, x + j, x, dout, &kink);
            got[n] = dinput[j];
            printf("  d/d input[%zu]: analytic %.6f, finite difference %.6f%s\n", j, got[n], want[n],
                   kink ? " (a ReLU kink within eps: next coordinate)" : "");
            if (!kink) break;
        }
        n++;
    }
    char label[128];
    snprintf(label, sizeof label, "%s: analytic vs central finite differences (eps %.0e, %d coordinates)", cn, FD_EPS,
             n);
    int fail = check_close_rel(label, got, want, (size_t)n, FD_REL_TOL, 1.0);
    free(x);
    free(dinput);
    return fail;
}

// Frozen (grads NULL): the input gradient is unchanged and the gradient buffer untouched; inference
// activations give the same output bit for bit.
static int check_frozen_and_inference(Fixture* f) {
    const char* cn = f->c->name;
    char label[128];
    float* dinput = test_poisoned_floats(f->n_in);
    float* sentinel = test_copy_floats(f->grads, f->p->table.n_params);
    projector_bind(f->p, f->params, NULL);
    projector_forward(f->p, f->acts, ref(f->set, cn, "input"));
    projector_backward(f->p, f->acts, ref(f->set, cn, "dout"), dinput);
    snprintf(label, sizeof label, "%s frozen: grad input still computed", cn);
    int fail = check_rel_to_max(label, dinput, ref(f->set, cn, "grad.input"), f->n_in, REL_TOL);
    snprintf(label, sizeof label, "%s frozen: the gradient buffer is untouched", cn);
    fail += check_bitwise(label, f->grads, sentinel, f->p->table.n_params * sizeof(float));
    projector_bind(f->p, f->params, f->grads);
    ProjectorActs* inf = projector_acts_create(f->p, B, N_IN, 0);
    projector_forward(f->p, inf, ref(f->set, cn, "input"));
    snprintf(label, sizeof label, "%s: inference activations give the same output", cn);
    fail += check_bitwise(label, inf->out, f->acts->out, f->n_out * sizeof(float));
    projector_acts_free(f->p, inf);
    free(dinput);
    free(sentinel);
    return fail;
}

// The paper's Table 7: 577 tokens -> 288 / 192 / 144 with (k, s) = (3,2) / (4,3) / (5,4).
static int check_token_counts(void) {
    ProjectorConfig c = {PROJ_CONV_MLP, 768, 2048, 4, 3, 2, NULL};
    int t32 = projector_out_tokens(&c, 577), t32_576 = projector_out_tokens(&c, 576);
    c.k = 4, c.s = 3;
    int t43 = projector_out_tokens(&c, 577);
    c.k = 5, c.s = 4;
    int t54 = projector_out_tokens(&c, 577);
    c.k = 6, c.s = 5;
    int t65 = projector_out_tokens(&c, 576);
    char detail[160];
    snprintf(detail, sizeof detail, "got %d / %d / %d", t32, t43, t54);
    int fail = check_true("Table 7: 577 tokens -> 288 (3,2), 192 (4,3), 144 (5,4)",
                          t32 == 288 && t43 == 192 && t54 == 144, detail);
    fail += check_true("576 tokens with (3,2) -> 287; the later (6,5) conv -> 115 per tile",
                       t32_576 == 287 && t65 == 115, NULL);
    ProjectorConfig pool = {PROJ_POOL_MLP, 768, 2048, 4, 0, 2, NULL}, mlp = {PROJ_MLP, 768, 2048, 4, 0, 0, NULL};
    fail += check_true("pool_mlp s 2: 577 -> 288; mlp and linear keep 577", projector_out_tokens(&pool, 577) == 288 &&
                       projector_out_tokens(&mlp, 577) == 577, NULL);
    fail += check_true("out_dim is n_embd", projector_out_dim(&mlp) == 2048, NULL);
    return fail;
}

static int check_param_counts(void) {
    ProjectorConfig lin = {PROJ_LINEAR, 768, 2048, 0, 0, 0, NULL}, mlp = {PROJ_MLP, 768, 2048, 4, 0, 0, NULL};
    ProjectorConfig conv = {PROJ_CONV_MLP, 768, 2048, 4, 3, 2, NULL}, pool = {PROJ_POOL_MLP, 768, 2048, 4, 0, 2, NULL};
    size_t n_mlp = 768u * 8192 + 8192 + 8192u * 2048 + 2048 + 2 * 2048;
    int fail = check_true("linear 768 -> 2048: 768*2048 + 2048 parameters",
                          projector_n_params(&lin) == 768u * 2048 + 2048, NULL);
    fail += check_true("mlp 768 -> 2048, ratio 4: 23,083,008 parameters",
                       projector_n_params(&mlp) == n_mlp && n_mlp == 23083008, NULL);
    fail += check_true("conv_mlp (3,2) adds 768*768*3 conv weights",
                       projector_n_params(&conv) == n_mlp + 768u * 768 * 3, NULL);
    fail += check_true("pool_mlp has the mlp's parameters", projector_n_params(&pool) == n_mlp, NULL);
    return fail;
}

static int check_init(Backend* be) {
    Error e = {0};
    Projector* p = projector_create(&CASES[2].cfg, be, &e);
    size_t n = p->table.n_params;
    float* a = xcalloc(n, sizeof(float));
    float* b = xcalloc(n, sizeof(float));
    projector_bind(p, a, NULL);
    projector_init_random(p, 11);
    projector_bind(p, b, NULL);
    projector_init_random(p, 11);
    int fail = check_bitwise("init_random: same seed, same values", a, b, n * sizeof(float));
    const TensorSpec* lw = param_table_find(&p->table, "pre_norm.weight");
    const TensorSpec* lb = param_table_find(&p->table, "pre_norm.bias");
    const TensorSpec* cw = param_table_find(&p->table, "conv.weight");   // fan_in 6 * 3
    int ln_ok = 1;
    for (size_t i = 0; i < lw->numel; i++) ln_ok &= a[lw->offset + i] == 1.0f && a[lb->offset + i] == 0.0f;
    fail += check_true("init_random: LayerNorm weight 1, bias 0", ln_ok, NULL);
    float max_abs = 0;
    for (size_t i = 0; i < cw->numel; i++) max_abs = fmaxf(max_abs, fabsf(a[cw->offset + i]));
    float bound = 1.0f / sqrtf(18.0f);
    char detail[96];
    snprintf(detail, sizeof detail, "max |w| %.4f, bound %.4f", max_abs, bound);
    fail += check_true("init_random: conv weight ~ U(-1/sqrt(18), 1/sqrt(18))",
                       max_abs <= bound && max_abs > 0.8f * bound, detail);
    free(a);
    free(b);
    projector_free(p);
    return fail;
}

static int check_rejections(Backend* be) {
    Error e = {0};
    ProjectorKind kind;
    int fail =
        expect_reject("unknown kind 'qformer'", projector_kind_parse("qformer", &kind, &e), &e, "qformer", "conv_mlp");
    fail += check_true("kind names parse back",
                       projector_kind_parse("pool_mlp", &kind, &e) == 0 && kind == PROJ_POOL_MLP &&
                           strcmp(projector_kind_name(PROJ_CONV_MLP), "conv_mlp") == 0,
                       e.msg);
    ProjectorConfig c = {PROJ_MLP, 768, 2048, 0, 0, 0, NULL};
    fail += expect_reject("mlp with ratio 0", projector_config_check(&c, &e), &e, "ratio 0", NULL);
    fail += check_true("projector_create rejects it too", projector_create(&c, be, &e) == NULL, NULL);
    c = (ProjectorConfig){PROJ_CONV_MLP, 768, 2048, 4, 0, 2, NULL};
    fail += expect_reject("conv_mlp with k 0", projector_config_check(&c, &e), &e, "k = 0", NULL);
    c = (ProjectorConfig){PROJ_POOL_MLP, 768, 2048, 4, 0, 0, NULL};
    fail += expect_reject("pool_mlp with s 0", projector_config_check(&c, &e), &e, "s = 0", NULL);
    c = (ProjectorConfig){PROJ_LINEAR, 0, 2048, 0, 0, 0, NULL};
    fail += expect_reject("linear with d_enc 0", projector_config_check(&c, &e), &e, "d_enc 0", NULL);
    c = (ProjectorConfig){PROJ_CONV_MLP, 768, 2048, 4, 5, 4, NULL};
    fail +=
        expect_reject("4 tokens into a (5,4) conv", projector_check_input(&c, 4, &e), &e, "4 input tokens", "k = 5");
    fail += check_true("... and it reports 0 output tokens", projector_out_tokens(&c, 4) == 0, NULL);
    c = (ProjectorConfig){PROJ_POOL_MLP, 768, 2048, 4, 0, 3, NULL};
    fail += expect_reject("2 tokens into a pool of 3", projector_check_input(&c, 2, &e), &e, "2 input tokens", "s = 3");
    return fail;
}

int main(void) {
    TensorSet set;
    Error e = {0};
    if (safetensors_read(src_path("tests/reference/vectors/projector.safetensors"), &set, &e) != 0) fatal("%s", e.msg);
    Backend* be = backend_cpu_create(2);
    int fail = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        Fixture f;
        fixture_init(&f, &CASES[i], &set, be);
        fail += check_forward_backward(&f);
        fail += check_finite_differences(&f);
        fail += check_frozen_and_inference(&f);
        fixture_free(&f);
    }
    fail += check_token_counts();
    fail += check_param_counts();
    fail += check_init(be);
    fail += check_rejections(be);
    backend_destroy(be);
    tensorset_free(&set);
    return test_summary("test_projector", fail);
}
