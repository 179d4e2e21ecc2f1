// test_wavenet.c — the WaveNet time-series encoder (trainer/wavenet.h) against the float64 PyTorch reference
// of tests/reference/wavenet_reference.py (vectors/wavenet.safetensors): forward, the gradient of every
// parameter and of the input, central finite differences, causality, frozen mode, inference activations,
// random init and the rejection of bad configurations.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "tests/testutil.h"
#include "trainer/safetensors.h"
#include "trainer/wavenet.h"

// the sizes of wavenet_reference.py CONFIG
static const WaveNetConfig CFG = {.in_channels = 3, .residual = 8, .skip = 12, .out_dim = 10, .n_layers = 5,
                                  .dilation_cycle = 3, .patch = 4};
enum { B = 2, T = 26 };
static const double REL_TOL = 1e-4;

static const float* ref(const TensorSet* s, const char* name) {
    const NamedTensor* t = tensorset_find(s, name);
    if (!t || t->dtype != DT_F32) fatal("wavenet.safetensors: no F32 tensor %s: rerun wavenet_reference.py", name);
    return t->data;
}

typedef struct Fixture {
    Backend* be;
    WaveNet* w;
    float *params, *grads;
    WaveNetActs* acts;
    size_t n_in, n_out;   // floats of input and output
} Fixture;

static void fixture_init(Fixture* f, const TensorSet* set) {
    Error e = {0};
    f->be = backend_cpu_create(2);
    f->w = wavenet_create(&CFG, f->be, &e);
    if (!f->w) fatal("%s", e.msg);
    f->params = xcalloc(f->w->table.n_params, sizeof(float));
    f->grads = xcalloc(f->w->table.n_params, sizeof(float));
    wavenet_bind(f->w, f->params, f->grads);
    if (wavenet_load(f->w, set, "wavenet.safetensors", &e) != 0) fatal("%s", e.msg);
    f->acts = wavenet_acts_create(f->w, B, T, 1);
    f->n_in = (size_t)B * T * CFG.in_channels;
    f->n_out = (size_t)B * wavenet_out_tokens(&CFG, T) * CFG.out_dim;
}

static void fixture_free(Fixture* f) {
    wavenet_acts_free(f->w, f->acts);
    wavenet_free(f->w);
    free(f->params);
    free(f->grads);
    backend_destroy(f->be);
}

// sum(out * dout) in double after a forward of x.
static double loss_of(Fixture* f, const float* x, const float* dout) {
    wavenet_forward(f->w, f->acts, x);
    double s = 0;
    for (size_t i = 0; i < f->n_out; i++) s += (double)f->acts->out[i] * dout[i];
    return s;
}

static int check_forward_backward(Fixture* f, const TensorSet* set) {
    int fail = check_true("6 output tokens from 26 steps with patch 4", wavenet_out_tokens(&CFG, T) == 6, NULL);
    wavenet_forward(f->w, f->acts, ref(set, "input"));
    fail += check_rel_to_max("forward out (2, 6, 10)", f->acts->out, ref(set, "out"), f->n_out, REL_TOL);
    float* dinput = test_poisoned_floats(f->n_in);
    memset(f->grads, 0, f->w->table.n_params * sizeof(float));
    wavenet_backward(f->w, f->acts, ref(set, "dout"), dinput);
    fail += check_rel_to_max("grad input (2, 26, 3)", dinput, ref(set, "grad.input"), f->n_in, REL_TOL);
    char name[PARAM_NAME_MAX + 32];
    for (int i = 0; i < f->w->table.n; i++) {
        const TensorSpec* s = &f->w->table.specs[i];
        snprintf(name, sizeof name, "grad.%s", s->name);
        if (s->unused) {
            float* zeros = xcalloc(s->numel, sizeof(float));
            snprintf(name, sizeof name, "grad.%s (unused: zero)", s->name);
            fail += check_close_abs(name, f->grads + s->offset, zeros, s->numel, 0.0);
            free(zeros);
        } else {
            fail += check_rel_to_max(name, f->grads + s->offset, ref(set, name), s->numel, REL_TOL);
        }
    }
    // a second backward accumulates: every weight gradient doubles
    float* once = test_copy_floats(f->grads, f->w->table.n_params);
    wavenet_backward(f->w, f->acts, ref(set, "dout"), NULL);
    for (size_t i = 0; i < f->w->table.n_params; i++) once[i] *= 2.0f;
    fail += check_close_abs("second backward accumulates (+=) into the weight grads", f->grads, once,
                            f->w->table.n_params, 1e-6);
    free(once);
    free(dinput);
    return fail;
}

// Central differences of sum(out * dout) against the analytic gradient at a few coordinates of parameters
// and input.
static int check_finite_differences(Fixture* f, const TensorSet* set) {
    const float* dout = ref(set, "dout");
    float* x = test_copy_floats(ref(set, "input"), f->n_in);
    float* dinput = test_poisoned_floats(f->n_in);
    memset(f->grads, 0, f->w->table.n_params * sizeof(float));
    wavenet_forward(f->w, f->acts, x);
    wavenet_backward(f->w, f->acts, dout, dinput);
    const struct { const char* name; size_t index; } coords[] = {
        {"ts_encoder.input.weight", 5},           {"ts_encoder.input.bias", 2},
        {"ts_encoder.layers.0.dilated.weight", 7}, {"ts_encoder.layers.2.dilated.weight", 200},
        {"ts_encoder.layers.2.dilated.bias", 11}, {"ts_encoder.layers.1.res.weight", 30},
        {"ts_encoder.layers.3.skip.weight", 50},  {"ts_encoder.layers.4.skip.bias", 3},
        {"ts_encoder.output.weight", 77},         {"ts_encoder.output.bias", 9},
    };
    const double eps = 1e-2;
    int n_coords = (int)(sizeof coords / sizeof coords[0]);
    float got[16], want[16];
    for (int i = 0; i < n_coords; i++) {
        const TensorSpec* s = param_table_find(&f->w->table, coords[i].name);
        float* p = f->params + s->offset + coords[i].index;
        float keep = *p;
        *p = keep + (float)eps;
        double up = loss_of(f, x, dout);
        *p = keep - (float)eps;
        double down = loss_of(f, x, dout);
        *p = keep;
        want[i] = (float)((up - down) / (2 * eps));
        got[i] = f->grads[s->offset + coords[i].index];
        printf("  d/d %s[%zu]: analytic %.6f, finite difference %.6f\n", coords[i].name, coords[i].index, got[i],
               want[i]);
    }
    const size_t xi[4] = {0, 17, 40, 70};
    for (int i = 0; i < 4; i++) {
        float keep = x[xi[i]];
        x[xi[i]] = keep + (float)eps;
        double up = loss_of(f, x, dout);
        x[xi[i]] = keep - (float)eps;
        double down = loss_of(f, x, dout);
        x[xi[i]] = keep;
        want[n_coords + i] = (float)((up - down) / (2 * eps));
        got[n_coords + i] = dinput[xi[i]];
        printf("  d/d input[%zu]: analytic %.6f, finite difference %.6f\n", xi[i], got[n_coords + i],
               want[n_coords + i]);
    }
    int fail = check_close_abs("analytic vs central finite differences (eps 1e-2, 14 coordinates, abs tol 5e-4)", got,
                               want, (size_t)n_coords + 4, 5e-4);
    free(x);
    free(dinput);
    return fail;
}

// Token n covers steps [4n, 4n + 4): changing steps >= 12 leaves tokens 0..2 bit-identical and moves 3..5.
static int check_causality(Fixture* f, const TensorSet* set) {
    float* x = test_copy_floats(ref(set, "input"), f->n_in);
    wavenet_forward(f->w, f->acts, x);
    float* before = test_copy_floats(f->acts->out, f->n_out);
    for (int b = 0; b < B; b++)
        for (int t = 12; t < T; t++)
            for (int c = 0; c < CFG.in_channels; c++) x[((size_t)b * T + t) * CFG.in_channels + c] += 1.0f;
    wavenet_forward(f->w, f->acts, x);
    int fail = 0, changed = 0;
    size_t row = (size_t)CFG.out_dim;
    for (int b = 0; b < B; b++) {
        const float* o0 = before + (size_t)b * 6 * row;
        const float* o1 = f->acts->out + (size_t)b * 6 * row;
        fail += memcmp(o0, o1, 3 * row * sizeof(float)) != 0;
        changed += memcmp(o0 + 3 * row, o1 + 3 * row, 3 * row * sizeof(float)) != 0;
    }
    int bad = check_true("causal: tokens 0..2 unchanged when steps >= 12 change", fail == 0, "a past token moved");
    bad += check_true("and tokens 3..5 do change (the check is not vacuous)", changed == B, "later tokens unchanged");
    free(x);
    free(before);
    return bad;
}

// Frozen (grads NULL): the input gradient is unchanged, the weight gradients untouched. Inference activations
// (no backward) give the same output bit for bit.
static int check_frozen_and_inference(Fixture* f, const TensorSet* set) {
    float* dinput = test_poisoned_floats(f->n_in);
    float* sentinel = test_copy_floats(f->grads, f->w->table.n_params);
    wavenet_bind(f->w, f->params, NULL);
    wavenet_forward(f->w, f->acts, ref(set, "input"));
    wavenet_backward(f->w, f->acts, ref(set, "dout"), dinput);
    int fail = check_rel_to_max("frozen: grad input still computed", dinput, ref(set, "grad.input"), f->n_in, REL_TOL);
    fail += check_bitwise("frozen: the gradient buffer is untouched", f->grads, sentinel,
                          f->w->table.n_params * sizeof(float));
    wavenet_bind(f->w, f->params, f->grads);
    WaveNetActs* inf = wavenet_acts_create(f->w, B, T, 0);
    wavenet_forward(f->w, inf, ref(set, "input"));
    fail += check_bitwise("inference activations (shared buffers) give the same output", inf->out, f->acts->out,
                          f->n_out * sizeof(float));
    wavenet_acts_free(f->w, inf);
    free(dinput);
    free(sentinel);
    return fail;
}

static int check_init(void) {
    Backend* be = backend_cpu_create(1);
    Error e = {0};
    WaveNet* w = wavenet_create(&CFG, be, &e);
    size_t n = w->table.n_params;
    float* a = xcalloc(n, sizeof(float));
    float* b = xcalloc(n, sizeof(float));
    wavenet_bind(w, a, NULL);
    wavenet_init_random(w, 7);
    wavenet_bind(w, b, NULL);
    wavenet_init_random(w, 7);
    int fail = check_bitwise("init_random: same seed, same values", a, b, n * sizeof(float));
    wavenet_init_random(w, 8);
    fail += check_true("init_random: another seed, other values", memcmp(a, b, n * sizeof(float)) != 0, NULL);
    // every value within its PyTorch Conv1d bound 1/sqrt(fan_in) and the bound nearly reached
    const TensorSpec* s = param_table_find(&w->table, "ts_encoder.layers.1.dilated.weight");   // fan_in 16
    float max_abs = 0;
    for (size_t i = 0; i < s->numel; i++) max_abs = fmaxf(max_abs, fabsf(a[s->offset + i]));
    char detail[96];
    snprintf(detail, sizeof detail, "max |w| %.4f, bound 0.25", max_abs);
    fail += check_true("init_random: dilated weight ~ U(-1/sqrt(16), 1/sqrt(16))", max_abs <= 0.25f && max_abs > 0.2f,
                       detail);
    fail += check_true("receptive field 1 + (1+2+4+1+2) = 11", wavenet_receptive_field(&CFG) == 11, NULL);
    fail += check_true("parameter count: 3*8+8 + 5*(16*16+16 + 64+8 + 96+12) + 120+10 = 2422",
                       n == 2422, NULL);
    free(a);
    free(b);
    wavenet_free(w);
    backend_destroy(be);
    return fail;
}

static int check_rejections(void) {
    Error e = {0};
    int fail = 0;
    WaveNetConfig c = CFG;
    c.residual = 0;
    fail += expect_reject("residual 0 rejected", wavenet_config_check(&c, &e), &e, "residual 0", NULL);
    c = CFG;
    c.dilation_cycle = 17;
    fail += expect_reject("dilation_cycle 17 rejected", wavenet_config_check(&c, &e), &e, "dilation_cycle 17", NULL);
    c = CFG;
    c.patch = 0;
    fail += expect_reject("patch 0 rejected", wavenet_config_check(&c, &e), &e, "patch 0", NULL);
    fail +=
        expect_reject("3 steps with patch 4 rejected", wavenet_check_input(&CFG, 3, &e), &e, "3 steps", "patch of 4");
    Backend* be = backend_cpu_create(1);
    WaveNet* w = wavenet_create(&CFG, be, &e);
    float* p = xcalloc(w->table.n_params, sizeof(float));
    wavenet_bind(w, p, NULL);
    TensorSet empty;
    tensorset_init(&empty);
    fail += expect_reject("load from a file without the encoder", wavenet_load(w, &empty, "empty.safetensors", &e), &e,
                          "empty.safetensors", "ts_encoder.input.weight");
    tensorset_free(&empty);
    free(p);
    wavenet_free(w);
    backend_destroy(be);
    return fail;
}

int main(void) {
    TensorSet set;
    Error e = {0};
    if (safetensors_read(src_path("tests/reference/vectors/wavenet.safetensors"), &set, &e) != 0) fatal("%s", e.msg);
    Fixture f;
    fixture_init(&f, &set);
    int fail = check_forward_backward(&f, &set);
    fail += check_finite_differences(&f, &set);
    fail += check_causality(&f, &set);
    fail += check_frozen_and_inference(&f, &set);
    fixture_free(&f);
    fail += check_init();
    fail += check_rejections();
    tensorset_free(&set);
    return test_summary("test_wavenet", fail);
}
