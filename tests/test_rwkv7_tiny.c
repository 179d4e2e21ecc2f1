// test_rwkv7_tiny.c — the real tiny pretrained RWKV-7 (tests/data, from rwkv.cpp, MIT) reproduces its
// expected logits after the bytes 34, 105, 110 in parallel mode and in RNN mode, from the fp32 and the
// bf16 checkpoint (max |diff| < 1e-4), and longer texts agree between the two modes to 1e-4.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/pth.h"
#include "trainer/rwkv7.h"
#include "trainer/rwkv7_io.h"
#include "tests/testutil.h"

static RWKV7* load(Backend* be, const char* rel) {
    TensorSet ts;
    tensorset_init(&ts);
    Error e = {{0}};
    if (pth_read(src_path(rel), &ts, &e) != 0) fatal("%s", e.msg);
    RWKV7* m = rwkv7_from_tensors(&ts, rel, be, &e);
    if (!m) fatal("%s", e.msg);
    tensorset_free(&ts);
    return m;
}

// Logits (T, V) of tokens in parallel mode (one forward over all T).
static float* parallel_logits(RWKV7* m, const int32_t* tokens, int T) {
    RWKV7Acts* a = rwkv7_acts_create(m, 1, T, 0);
    rwkv7_forward(m, a, tokens, NULL);
    size_t n = (size_t)T * m->cfg.vocab_size;
    float* out = malloc(n * sizeof(float));
    memcpy(out, a->logits, n * sizeof(float));
    rwkv7_acts_free(m, a);
    return out;
}

// Logits (T, V) in RNN mode: one token at a time with the state carried.
static float* rnn_logits(RWKV7* m, const int32_t* tokens, int T) {
    RWKV7Acts* a = rwkv7_acts_create(m, 1, 1, 0);
    RWKV7State* s = rwkv7_state_create(m, 1);
    int V = m->cfg.vocab_size;
    float* out = malloc((size_t)T * V * sizeof(float));
    for (int t = 0; t < T; t++) {
        rwkv7_forward(m, a, tokens + t, s);
        memcpy(out + (size_t)t * V, a->logits, (size_t)V * sizeof(float));
    }
    rwkv7_state_free(m, s);
    rwkv7_acts_free(m, a);
    return out;
}

static int check_expected(Backend* be, const char* file, const float* expected) {
    RWKV7* m = load(be, file);
    int32_t tok[3] = {34, 105, 110};
    int V = m->cfg.vocab_size, f = 0;
    char name[160];
    printf("%s: L%d C%d V%d head %d, LoRA %d/%d/%d/%d, block-0 v0/v1/v2 %s\n", file, m->cfg.n_layer, m->cfg.n_embd, V,
           m->cfg.head_size, m->cfg.d_decay, m->cfg.d_a, m->cfg.d_value, m->cfg.d_gate,
           m->has_block0_vres ? "present" : "absent");
    float* par = parallel_logits(m, tok, 3);
    snprintf(name, sizeof name, "%s parallel mode: last logits vs expected", file);
    f += check_close_abs(name, par + 2 * V, expected, (size_t)V, 1e-4);
    float* rnn = rnn_logits(m, tok, 3);
    snprintf(name, sizeof name, "%s RNN mode: last logits vs expected", file);
    f += check_close_abs(name, rnn + 2 * V, expected, (size_t)V, 1e-4);
    free(par);
    free(rnn);
    rwkv7_free(m);
    return f;
}

static int check_long_text(Backend* be) {
    RWKV7* m = load(be, "tests/data/tiny-rwkv7-834K-fp32.pth");
    const char* text =
        "\"in the beginning the model reads a longer text, one byte at a time, and its state must carry everything "
        "it has seen: parallel mode and RNN mode compute the same function.\" Then it goes on past 16-step chunks.";
    int T = (int)strlen(text);
    int32_t* tok = malloc((size_t)T * sizeof(int32_t));
    for (int t = 0; t < T; t++) tok[t] = (unsigned char)text[t];
    float* par = parallel_logits(m, tok, T);
    float* rnn = rnn_logits(m, tok, T);
    char name[96];
    snprintf(name, sizeof name, "tiny model, %d-byte text: parallel == RNN at every position", T);
    int f = check_close_abs(name, par, rnn, (size_t)T * m->cfg.vocab_size, 1e-4);
    free(tok);
    free(par);
    free(rnn);
    rwkv7_free(m);
    return f;
}

int main(void) {
    Backend* be = backend_cpu_create(2);
    size_t len = 0;
    Error e = {{0}};
    float* expected = (float*)read_file(src_path("tests/data/tiny-rwkv7-834K.expected-logits-34-105-110.f32"), &len, &e);
    if (!expected || len != 256 * sizeof(float)) fatal("expected logits file: %s", expected ? "wrong size" : e.msg);
    int f = 0;
    f += check_expected(be, "tests/data/tiny-rwkv7-834K-fp32.pth", expected);
    f += check_expected(be, "tests/data/tiny-rwkv7-834K-bf16.pth", expected);
    f += check_long_text(be);
    free(expected);
    backend_destroy(be);
    return test_summary("test_rwkv7_tiny", f);
}
