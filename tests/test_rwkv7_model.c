// test_rwkv7_model.c — the RWKV-7 model's structure: official LoRA-rank formulas and parameter count
// (reference/rwkv7.md §1.3-1.4), the official initialisation (§5.1-5.2), RWKV's optimizer groups (§5.3),
// checkpoint-import errors (missing / unexpected / wrong-shape / non-float tensors), activation memory
// linear in T, and parallel-mode logits with a carried state equal to RNN mode.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/rwkv7.h"
#include "trainer/rwkv7_init.h"
#include "trainer/rwkv7_io.h"
#include "tests/testutil.h"

static int check_lora_formulas(void) {
    // current train_temp formulas, table of reference/rwkv7.md §1.3
    int C[4] = {768, 1024, 2048, 4096};
    int want[4][4] = {{64, 64, 32, 128}, {64, 64, 64, 160}, {128, 128, 64, 224}, {160, 160, 96, 320}};
    int f = 0;
    for (int i = 0; i < 4; i++) {
        RWKV7Config c = {.n_embd = C[i]};
        rwkv7_default_lora(&c);
        char name[96], detail[96];
        snprintf(name, sizeof name, "LoRA ranks for C=%d are %d/%d/%d/%d", C[i], want[i][0], want[i][1], want[i][2],
                 want[i][3]);
        snprintf(detail, sizeof detail, "got %d/%d/%d/%d", c.d_decay, c.d_a, c.d_value, c.d_gate);
        f += check_true(name, c.d_decay == want[i][0] && c.d_a == want[i][1] && c.d_value == want[i][2] &&
                                  c.d_gate == want[i][3], detail);
    }
    return f;
}

static int check_param_count(Backend* be) {
    // #params = 2VC + 4C + L(19C + 12C^2 + 2C(Dw+Dv+Da+Dg)) with the published 0.1B LoRA ranks -> 191,084,544
    RWKV7Config c = {.n_layer = 12, .n_embd = 768, .vocab_size = 65536, .head_size = 64, .d_decay = 64, .d_a = 64,
                     .d_value = 32, .d_gate = 128};
    Error e = {{0}};
    RWKV7* m = rwkv7_create(&c, be, &e);
    if (!m) return check_true("create the 0.1B model", 0, e.msg);
    char detail[64];
    snprintf(detail, sizeof detail, "got %zu", m->n_params);
    int f = check_true("RWKV-7 0.1B has 191,084,544 parameters (RWKV-LM README formula)", m->n_params == 191084544,
                       detail);
    rwkv7_free(m);
    return f;
}

static RWKV7* small_model(Backend* be, RWKV7InitKind kind, int L, int C, int V) {
    RWKV7Config c = {.n_layer = L, .n_embd = C, .vocab_size = V, .head_size = 64};
    Error e = {{0}};
    RWKV7* m = rwkv7_create(&c, be, &e);
    if (!m) fatal("%s", e.msg);
    rwkv7_init(m, kind, 5);
    return m;
}

// max |W W^T - gain^2 I| over the rows of W (rows <= cols)
static double orthogonality_error(const float* W, int rows, int cols, double gain) {
    double worst = 0;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < rows; j++) {
            double dot = 0;
            for (int k = 0; k < cols; k++) dot += (double)W[(size_t)i * cols + k] * W[(size_t)j * cols + k];
            worst = fmax(worst, fabs(dot - (i == j ? gain * gain : 0.0)));
        }
    return worst;
}

static int all_equal(const float* x, size_t n, float v) {
    for (size_t i = 0; i < n; i++)
        if (x[i] != v) return 0;
    return 1;
}

static int check_official_init(Backend* be) {
    int L = 3, C = 128, V = 300;
    RWKV7* m = small_model(be, RWKV7_INIT_OFFICIAL, L, C, V);
    const ModelParams* P = &m->params;
    int f = 0;
    float ea = 0;
    for (size_t i = 0; i < (size_t)V * C; i++) ea = fmaxf(ea, fabsf(P->emb[i]));
    f += check_true("emb.weight ~ U(-1e-4, 1e-4)", ea <= 1e-4f && ea > 0.5e-4f, NULL);
    f += check_true("att.output.weight and ffn.value.weight start at zero",
                    all_equal(P->blocks[1].Wo, (size_t)C * C, 0.0f) && all_equal(P->blocks[1].ffn_value, (size_t)C * 4 * C, 0.0f), NULL);
    f += check_true("LoRA down-projections w1/a1/v1/g1 start at zero",
                    all_equal(P->blocks[0].w1, (size_t)C * m->cfg.d_decay, 0.0f) &&
                        all_equal(P->blocks[2].g1, (size_t)C * m->cfg.d_gate, 0.0f), NULL);
    double e1 = orthogonality_error(P->blocks[0].Wr, C, C, 1.0), e2 = orthogonality_error(P->blocks[1].Wk, C, C, 0.1);
    double e3 = orthogonality_error(P->blocks[2].w2, m->cfg.d_decay, C, 0.1);
    printf("orthogonality errors: receptance %.2e, key (gain 0.1) %.2e, w2 (gain 0.1) %.2e\n", e1, e2, e3);
    f += check_true("receptance, key and LoRA up-projections are orthogonal with the official gains",
                    e1 < 1e-4 && e2 < 1e-6 && e3 < 1e-6, NULL);
    float lnx = P->blocks[1].lnx_w[7], want = powf(2.0f / 3.0f, 0.7f);
    f += check_close_abs("att.ln_x.weight of block 1 = ((l+1)/L)^0.7", &lnx, &want, 1, 1e-6);
    float got[3] = {P->blocks[0].k_a[5], P->blocks[0].r_k[9], P->blocks[2].x_r[0]}, exp[3] = {1.02f, -0.04f, 1.0f};
    f += check_close_abs("k_a = 1.02, r_k = -0.04, x_r[0] = 1", got, exp, 3, 1e-7);
    // decay bias w0 = www + 0.5 + 2.5 zigzag at channel 0 of layer 0: -6 + 0.5 - 2.5
    float w00 = P->blocks[0].w0[0], w00_want = -8.0f;
    f += check_close_abs("w0[0] of block 0 = -6 + 0.5 + 2.5 zigzag(0)", &w00, &w00_want, 1, 1e-5);
    rwkv7_free(m);
    return f;
}

static int check_groups(Backend* be) {
    RWKV7* m = small_model(be, RWKV7_INIT_RANDOM, 2, 64, 256);
    const char* decay[] = {"emb.weight", "head.weight", "blocks.1.att.receptance.weight", "blocks.0.ffn.value.weight"};
    const char* no_decay[] = {"blocks.0.att.w1", "blocks.1.att.r_k", "blocks.0.ln1.weight", "blocks.0.att.x_r",
                              "blocks.1.att.ln_x.weight"};
    int ok = 1;
    for (int i = 0; i < 4; i++) ok &= rwkv7_find_spec(m, decay[i])->weight_decay == 1;
    for (int i = 0; i < 5; i++) ok &= rwkv7_find_spec(m, no_decay[i])->weight_decay == 0;
    int f = check_true("weight decay only on 2-D *.weight tensors (emb, head, projections)", ok, NULL);
    f += check_true("att.w0 has 2x learning rate, others 1x",
                    rwkv7_find_spec(m, "blocks.1.att.w0")->lr_scale == 2.0f &&
                        rwkv7_find_spec(m, "blocks.1.att.a0")->lr_scale == 1.0f, NULL);
    f += check_true("block-0 att.v0/v1/v2 are marked unused, block-1's are not",
                    rwkv7_find_spec(m, "blocks.0.att.v1")->unused && !rwkv7_find_spec(m, "blocks.1.att.v1")->unused, NULL);
    rwkv7_free(m);
    return f;
}

// Imports the model's own tensors after `mutate` and expects failure with a message containing `want`.
static int expect_import_error(Backend* be, const char* what, void (*mutate)(TensorSet*), const char* want) {
    RWKV7* m = small_model(be, RWKV7_INIT_RANDOM, 2, 64, 256);
    TensorSet ts;
    tensorset_init(&ts);
    rwkv7_to_tensors(m, m->params_memory, DT_F32, &ts);
    mutate(&ts);
    Error e = {{0}};
    RWKV7* back = rwkv7_from_tensors(&ts, "model.pth", be, &e);
    printf("  %s -> %s\n", what, back ? "(accepted)" : e.msg);
    int ok = back == NULL && strstr(e.msg, want) != NULL && strstr(e.msg, "model.pth") != NULL && !strchr(e.msg, '\n');
    rwkv7_free(back);
    tensorset_free(&ts);
    rwkv7_free(m);
    return check_true(what, ok, "expected a one-line error naming the file and the tensor");
}

static void rename_tensor(TensorSet* ts, const char* from, const char* to) {
    NamedTensor* t = tensorset_find(ts, from);
    free(t->name);
    t->name = xstrdup(to);
}
static void drop_tensor(TensorSet* ts) { rename_tensor(ts, "blocks.1.att.key.weight", "blocks.1.att.kee.weight"); }
static void wrong_shape(TensorSet* ts) { tensorset_find(ts, "blocks.1.ffn.key.weight")->shape[0] = 128; }
static void extra_tensor(TensorSet* ts) {
    int64_t shape[1] = {4};
    tensorset_add(ts, "blocks.0.att.time_faaaa", DT_F32, 1, shape, NULL);
}
static void int_tensor(TensorSet* ts) { tensorset_find(ts, "ln_out.bias")->dtype = DT_I32; }
static void no_emb(TensorSet* ts) { rename_tensor(ts, "emb.weight", "embed.weight"); }

static int check_import_errors(Backend* be) {
    int f = 0;
    f += expect_import_error(be, "a missing tensor is named", drop_tensor, "blocks.1.att.key.weight");
    f += expect_import_error(be, "a wrong shape names the tensor and both shapes", wrong_shape, "blocks.1.ffn.key.weight");
    f += expect_import_error(be, "an unexpected tensor is named", extra_tensor, "time_faaaa");
    f += expect_import_error(be, "a non-float tensor is rejected", int_tensor, "ln_out.bias");
    f += expect_import_error(be, "no emb.weight: not an RWKV-7 checkpoint", no_emb, "emb.weight");
    return f;
}

static int check_memory_linear(Backend* be) {
    RWKV7* m = small_model(be, RWKV7_INIT_RANDOM, 2, 64, 256);
    size_t n[4];
    for (int i = 0; i < 4; i++) {
        RWKV7Acts* a = rwkv7_acts_create(m, 2, 64 * (i + 1), 1);
        n[i] = a->n_floats;
        rwkv7_acts_free(m, a);
    }
    printf("activation floats for T = 64, 128, 192, 256 (B=2): %zu %zu %zu %zu\n", n[0], n[1], n[2], n[3]);
    rwkv7_free(m);
    return check_true("activation memory grows linearly in T", n[1] - n[0] == n[2] - n[1] && n[3] - n[2] == n[2] - n[1],
                      NULL);
}

// Parallel mode over the first half with the state carried, then the second half, equals one pass.
static int check_state_passing(Backend* be) {
    RWKV7* m = small_model(be, RWKV7_INIT_RANDOM, 2, 128, 256);
    int T = 40, V = 256;
    int32_t tok[40];
    for (int t = 0; t < T; t++) tok[t] = (t * 37 + 11) % V;
    RWKV7Acts* full = rwkv7_acts_create(m, 1, T, 0);
    rwkv7_forward(m, full, tok, NULL);
    RWKV7Acts* half = rwkv7_acts_create(m, 1, T / 2, 0);
    RWKV7State* st = rwkv7_state_create(m, 1);
    rwkv7_forward(m, half, tok, st);
    rwkv7_forward(m, half, tok + T / 2, st);
    int f = check_close_abs("two halves with state passing == one parallel pass (second half's logits)", half->logits,
                            full->logits + (size_t)(T / 2) * V, (size_t)(T / 2) * V, 1e-4);
    rwkv7_state_free(m, st);
    rwkv7_acts_free(m, half);
    rwkv7_acts_free(m, full);
    rwkv7_free(m);
    return f;
}

int main(void) {
    Backend* be = backend_cpu_create(2);
    int f = 0;
    f += check_lora_formulas();
    f += check_param_count(be);
    f += check_official_init(be);
    f += check_groups(be);
    f += check_import_errors(be);
    f += check_memory_linear(be);
    f += check_state_passing(be);
    backend_destroy(be);
    return test_summary("test_rwkv7_model", f);
}
