// test_rwkv7_grad.c — forward logits, loss and the gradient of EVERY parameter of a randomly initialised
// RWKV-7 (L3, C128, head 64, vocab 256, T64, B2, ~10% masked targets, L2Wrap on) against the committed
// PyTorch autograd reference (tests/reference/rwkv7_reference.py, float64, written from the spec).
// Tolerance: per-tensor relative error ||g - g_ref||_2 / ||g_ref||_2 < 1e-4 (fp32 against float64; the
// acceptance bound is 1e-3, measured is ~3e-5), and every element within 1e-2 of its reference relative to
// max(|g_ref|, 1% of the tensor's largest entry). A negative control shows the check is sharp enough to
// see the L2Wrap term: without it, head.weight's gradient misses the reference by more than 1e-4.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/pth.h"
#include "trainer/rwkv7.h"
#include "trainer/rwkv7_io.h"
#include "tests/testutil.h"

static const char* PREFIX = "tests/reference/vectors/grad-L3-C128-V256-T64";

static void read_pth(const char* suffix, TensorSet* ts) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s.%s", PREFIX, suffix);
    Error e = {{0}};
    tensorset_init(ts);
    if (pth_read(src_path(rel), ts, &e) != 0) fatal("%s", e.msg);
}

static const NamedTensor* get(const TensorSet* ts, const char* name) {
    const NamedTensor* t = tensorset_find(ts, name);
    if (!t) fatal("reference vectors: tensor '%s' missing: regenerate with tests/reference/rwkv7_reference.py", name);
    return t;
}

static int32_t* int_tensor(const NamedTensor* t) {
    int64_t n = tensor_numel(t);
    int32_t* out = malloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++)
        out[i] = t->dtype == DT_I64 ? (int32_t)((const int64_t*)t->data)[i] : ((const int32_t*)t->data)[i];
    return out;
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
    int fail = !(rel <= tol);
    printf("%s: relative L2 error %.3e, tol %.1e %s\n", name, rel, tol, fail ? "FAIL" : "PASS");
    return fail;
}

int main(void) {
    Backend* be = backend_cpu_create(2);
    TensorSet model_ts, grads_ts, batch_ts;
    read_pth("model.pth", &model_ts);
    read_pth("grads.pth", &grads_ts);
    read_pth("batch.pth", &batch_ts);
    Error e = {{0}};
    RWKV7* m = rwkv7_from_tensors(&model_ts, "model.pth", be, &e);
    if (!m) fatal("%s", e.msg);
    const NamedTensor* tok = get(&batch_ts, "tokens");
    int B = (int)tok->shape[0], T = (int)tok->shape[1], V = m->cfg.vocab_size;
    int32_t* tokens = int_tensor(tok);
    int32_t* targets = int_tensor(get(&batch_ts, "targets"));
    printf("model L%d C%d V%d, batch B%d T%d\n", m->cfg.n_layer, m->cfg.n_embd, V, B, T);
    int f = 0;

    RWKV7Acts* a = rwkv7_acts_create(m, B, T, 1);
    rwkv7_forward(m, a, tokens, NULL);
    const NamedTensor* lt = get(&batch_ts, "logits");
    f += check_close_rel("logits vs PyTorch", a->logits, lt->data, (size_t)B * T * V, 1e-4, 1e-1);
    int n_valid = 0;
    float loss = rwkv7_loss(m, a, targets, 1.0f, 1, &n_valid);
    float want_loss = ((const float*)get(&batch_ts, "loss")->data)[0];
    f += check_close_rel("loss vs PyTorch", &loss, &want_loss, 1, 1e-5, 1e-6);
    printf("%d of %d targets trained\n", n_valid, B * T);

    float* grads = be->alloc(be, m->n_params * sizeof(float));
    ModelParams G;
    G.blocks = calloc((size_t)m->cfg.n_layer, sizeof(BlockParams));
    rwkv7_point(m, &G, grads);
    rwkv7_backward(m, a, &G);
    int checked = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const TensorSpec* s = &m->specs[i];
        const NamedTensor* want = get(&grads_ts, s->name);
        float* w = malloc(s->numel * sizeof(float));
        if ((size_t)tensor_numel(want) != s->numel || tensor_to_f32(want, w) != 0)
            fatal("grads.pth: %s has the wrong size or dtype", s->name);
        double scale = 0;
        for (size_t j = 0; j < s->numel; j++) scale = fmax(scale, fabs(w[j]));
        char name[PARAM_NAME_MAX + 8];
        snprintf(name, sizeof name, "grad %s", s->name);
        if (s->unused) {
            f += check_close_abs(name, grads + s->offset, w, s->numel, 0.0);  // block-0 v0/v1/v2: exactly zero
        } else {
            f += check_true("reference gradient is not all zero", scale > 0, s->name);
            f += check_rel_l2(name, grads + s->offset, w, s->numel, 1e-4);
            f += check_close_rel(name, grads + s->offset, w, s->numel, 1e-2, 1e-2 * scale);
        }
        checked++;
        free(w);
    }
    printf("%d parameter tensors checked\n", checked);

    // negative control: the same backward without L2Wrap must NOT match head.weight's reference gradient
    const TensorSpec* hs = rwkv7_find_spec(m, "head.weight");
    float* want_head = malloc(hs->numel * sizeof(float));
    tensor_to_f32(get(&grads_ts, "head.weight"), want_head);
    be->k.zero(be, grads, m->n_params);
    rwkv7_forward(m, a, tokens, NULL);
    rwkv7_loss(m, a, targets, 1.0f, 0, NULL);
    rwkv7_backward(m, a, &G);
    double num = 0, den = 0;
    for (size_t j = 0; j < hs->numel; j++) {
        double d = (double)grads[hs->offset + j] - want_head[j];
        num += d * d;
        den += (double)want_head[j] * want_head[j];
    }
    double rel = sqrt(num / den);
    printf("without L2Wrap, head.weight gradient relative L2 error %.3e (must exceed the 1e-4 tolerance)\n", rel);
    f += check_true("negative control: the gradient check detects a missing L2Wrap term", rel > 1e-4, NULL);
    free(want_head);
    free(G.blocks);
    be->free(be, grads);
    rwkv7_acts_free(m, a);
    rwkv7_free(m);
    free(tokens);
    free(targets);
    tensorset_free(&model_ts);
    tensorset_free(&grads_ts);
    tensorset_free(&batch_ts);
    backend_destroy(be);
    return test_summary("test_rwkv7_grad", f);
}
