// generate.c — see generate.h.
#include "trainer/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Prob {
    float p;
    int id;
} Prob;

static int by_prob_desc(const void* a, const void* b) {
    float pa = ((const Prob*)a)->p, pb = ((const Prob*)b)->p;
    if (pa != pb) return pa < pb ? 1 : -1;
    return ((const Prob*)a)->id - ((const Prob*)b)->id;
}

// Samples a token id from logits (V) with temperature (0: argmax) and top-p; p: scratch of V entries.
static int sample_with(Prob* p, const float* logits, int V, float temperature, float top_p, Rng* rng) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature <= 0.0f) return best;
    double sum = 0;
    for (int i = 0; i < V; i++) {
        p[i].p = expf((logits[i] - logits[best]) / temperature);
        p[i].id = i;
        sum += p[i].p;
    }
    qsort(p, (size_t)V, sizeof(Prob), by_prob_desc);
    // keep the smallest prefix whose mass reaches top_p (at least one token)
    double mass = 0, cut = (top_p > 0 && top_p < 1 ? top_p : 1.0) * sum;
    int n = 0;
    while (n < V && (n == 0 || mass < cut)) mass += p[n++].p;
    double u = rng_uniform(rng) * mass, acc = 0;
    int id = p[n - 1].id;
    for (int i = 0; i < n; i++) {
        acc += p[i].p;
        if (u < acc) {
            id = p[i].id;
            break;
        }
    }
    return id;
}


static void emit(const Tokenizer* tok, int32_t id, FILE* out) {
    size_t len = 0;
    const uint8_t* bytes = tokenizer_token_bytes(tok, id, &len);
    if (bytes && len) fwrite(bytes, 1, len, out);
    fflush(out);
}

int generate_text(RWKV7* m, const Tokenizer* tok, const char* prompt, const GenerateOptions* o, FILE* out, Error* e) {
    int32_t* ids = NULL;
    size_t n = 0;
    tokenizer_encode(tok, prompt, strlen(prompt), &ids, &n);
    if (n == 0) {
        free(ids);
        return errorf(e, "the prompt is empty: give --prompt some text");
    }
    int V = m->cfg.vocab_size;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= V) {
            free(ids);
            return errorf(e, "prompt token %d is outside the model's vocabulary of %d: use the model's tokenizer", ids[i], V);
        }
    RWKV7State* st = rwkv7_state_create(m, 1);
    RWKV7Acts* pre = rwkv7_acts_create(m, 1, (int)n, 0);
    rwkv7_forward(m, pre, ids, st);
    float* logits = xmalloc((size_t)V * sizeof(float));
    memcpy(logits, pre->logits + (n - 1) * (size_t)V, (size_t)V * sizeof(float));
    rwkv7_acts_free(m, pre);
    RWKV7Acts* one = rwkv7_acts_create(m, 1, 1, 0);
    Rng rng;
    rng_seed(&rng, o->seed);
    Prob* scratch = xmalloc((size_t)V * sizeof(Prob));
    int produced = 0;
    for (; produced < o->max_tokens; produced++) {
        int32_t id = sample_with(scratch, logits, V, o->temperature, o->top_p, &rng);
        if (id == 0 && o->stop_at_eod) break;
        emit(tok, id, out);
        rwkv7_forward(m, one, &id, st);
        memcpy(logits, one->logits, (size_t)V * sizeof(float));
    }
    free(scratch);
    free(logits);
    free(ids);
    rwkv7_acts_free(m, one);
    rwkv7_state_free(m, st);
    return produced;
}
