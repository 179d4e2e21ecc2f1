// generate.c — see generate.h.
#include "trainer/generate.h"

#include "datasets/audio.h"
#include "datasets/image.h"
#include "datasets/shard_loader.h"
#include "trainer/modrwkv.h"

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

// 1 if id ends generation (it is not emitted).
static int is_stop(const GenerateOptions* o, int32_t id) {
    if (id == 0 && o->stop_at_eod) return 1;
    for (int i = 0; i < o->n_stop; i++)
        if (o->stop[i] == id) return 1;
    return 0;
}

// Samples from logits (V), feeds each token back through the RNN with state st; the first token comes from
// the logits given. Returns the number of tokens produced (stop tokens excluded), stored in ids when non-NULL.
static int decode_loop(RWKV7* m, const Tokenizer* tok, float* logits, RWKV7State* st, const GenerateOptions* o,
                       FILE* out, int32_t* ids) {
    int V = m->cfg.vocab_size;
    RWKV7Acts* one = rwkv7_acts_create(m, 1, 1, 0);
    Rng rng;
    rng_seed(&rng, o->seed);
    Prob* scratch = xmalloc((size_t)V * sizeof(Prob));
    int produced = 0;
    for (; produced < o->max_tokens; produced++) {
        if (o->ban_eod) logits[0] = -INFINITY;
        int32_t id = sample_with(scratch, logits, V, o->temperature, o->top_p, &rng);
        if (is_stop(o, id)) break;
        if (out) emit(tok, id, out);
        if (ids) ids[produced] = id;
        rwkv7_forward(m, one, &id, st);
        memcpy(logits, one->logits, (size_t)V * sizeof(float));
    }
    free(scratch);
    rwkv7_acts_free(m, one);
    return produced;
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
    RWKV7Acts* pre = rwkv7_acts_create_rows(m, 1, (int)n, 0, 1);  // logits of the last prompt token only
    int32_t last = (int32_t)n - 1;
    rwkv7_set_head_rows_list(pre, &last, 1);
    rwkv7_forward(m, pre, ids, st);
    float* logits = xmalloc((size_t)V * sizeof(float));
    memcpy(logits, pre->logits, (size_t)V * sizeof(float));
    rwkv7_acts_free(m, pre);
    int produced = decode_loop(m, tok, logits, st, o, out, NULL);
    free(logits);
    free(ids);
    rwkv7_state_free(m, st);
    return produced;
}

// Columns of the assembled row: text tokens + every item's feature tokens in place of its placeholders.
static int assembled_length(const ModRWKV* m, const ShardBatch* src, Error* e) {
    int T = src->T;
    for (int i = 0; i < src->n_media; i++) {
        int n = modrwkv_media_tokens(m, src->media[i].kind, &src->media[i]);
        if (n < 1) return errorf(e, "media item %d cannot be encoded: the model has no encoder for its kind", i + 1);
        T += n - src->media[i].n_placeholder;
    }
    return T;
}

int generate_multimodal(ModRWKV* m, const Tokenizer* tok, const ShardBatch* src, const GenerateOptions* o, FILE* out,
                        int32_t** ids, Error* e) {
    *ids = NULL;
    int T = assembled_length(m, src, e);
    if (T < 0) return -1;
    if (T < 1) return errorf(e, "the prompt is empty: give --prompt some text");
    MMBatch mb;
    modrwkv_assemble(m, src, &mb, 1, T);
    ModRWKVStep* step = modrwkv_step_create_rows(m, 1, T, 0, 1);  // the prefill needs the last row's logits only
    RWKV7State* st = rwkv7_state_create(m->lm, 1);
    int V = m->lm->cfg.vocab_size, produced = -1;
    if (modrwkv_prefill(m, step, &mb, st, e) == 0) {
        float* logits = xmalloc((size_t)V * sizeof(float));
        memcpy(logits, modrwkv_step_acts(step)->logits, (size_t)V * sizeof(float));  // the last token's
        *ids = xmalloc((size_t)(o->max_tokens + 1) * sizeof(int32_t));
        produced = decode_loop(m->lm, tok, logits, st, o, out, *ids);
        free(logits);
    }
    rwkv7_state_free(m->lm, st);
    modrwkv_step_free(m, step);
    mmbatch_free(&mb);
    return produced;
}

// ---------------------------------------------------------------------------------------------------- prompts

static void append_ids(ShardBatch* b, const Tokenizer* tok, const char* text) {
    int32_t* ids = NULL;
    size_t n = 0;
    tokenizer_encode(tok, text, strlen(text), &ids, &n);
    b->tokens = xrealloc(b->tokens, (size_t)(b->T + (int)n + 1) * sizeof(int32_t));
    memcpy(b->tokens + b->T, ids, n * sizeof(int32_t));
    b->T += (int)n;
    free(ids);
}

static BatchMedia* append_media(ShardBatch* b, MediaKind kind, int32_t placeholder) {
    b->media = xrealloc(b->media, (size_t)(b->n_media + 1) * sizeof(BatchMedia));
    BatchMedia* it = &b->media[b->n_media++];
    memset(it, 0, sizeof *it);
    it->kind = kind;
    it->placeholder_pos = b->T;
    it->n_placeholder = 1;  // the assembly expands it to the projector's token count
    b->tokens = xrealloc(b->tokens, (size_t)(b->T + 1) * sizeof(int32_t));
    b->tokens[b->T++] = placeholder;
    return it;
}

static int load_image_item(BatchMedia* it, const char* path, int size, Error* e) {
    size_t n = 0;
    uint8_t* bytes = (uint8_t*)read_file(path, &n, e);
    if (!bytes) return -1;
    Image im;
    int rc = image_decode(bytes, n, &im, path, e);
    free(bytes);
    if (rc != 0) return -1;
    static const float half[3] = {0.5f, 0.5f, 0.5f};  // the loader's default (SigLIP) normalisation
    it->data = xmalloc((size_t)3 * size * size * sizeof(float));
    it->ndim = 3;
    it->shape[0] = 3;
    it->shape[1] = it->shape[2] = size;
    rc = image_preprocess(&im, size, "resize", half, half, it->data, e);
    image_free(&im);
    return rc;
}

static int load_audio_item(BatchMedia* it, const char* path, Error* e) {
    int16_t* pcm = NULL;
    size_t n = 0;
    if (audio_load_16k(path, &pcm, &n, e) != 0) return -1;
    if (n == 0) {
        free(pcm);
        return errorf(e, "%s: the audio file holds no samples", path);
    }
    it->data = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) it->data[i] = (float)pcm[i] / 32768.0f;
    it->ndim = 1;
    it->shape[0] = (int64_t)n;
    free(pcm);
    return 0;
}

ShardBatch* generate_chat_prompt(const Tokenizer* tok, const char* prompt, const char* const* images, int n_images,
                                 const char* const* audio, int n_audio, int image_size, int media_last, Error* e) {
    ShardBatch* b = xcalloc(1, sizeof *b);
    b->B = 1;
    append_ids(b, tok, "\x16" "User: ");
    if (media_last && n_images + n_audio) {
        char* head = xmalloc(strlen(prompt) + 2);
        sprintf(head, "%s\n", prompt);
        append_ids(b, tok, head);
        free(head);
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < n_images; i++)
        rc = load_image_item(append_media(b, MEDIA_IMAGE_PIXELS, SHARD_PLACEHOLDER_IMAGE), images[i], image_size, e);
    for (int i = 0; rc == 0 && i < n_audio; i++)
        rc = load_audio_item(append_media(b, MEDIA_AUDIO_PCM, SHARD_PLACEHOLDER_AUDIO), audio[i], e);
    if (rc != 0) {
        shard_batch_free(b);
        return NULL;
    }
    char* rest = xmalloc(strlen(prompt) + 32);
    if (media_last && n_images + n_audio) sprintf(rest, "\x17\x16" "Assistant:");
    else sprintf(rest, "%s%s\x17\x16" "Assistant:", n_images + n_audio ? "\n" : "", prompt);
    append_ids(b, tok, rest);
    free(rest);
    b->targets = xmalloc((size_t)b->T * sizeof(int32_t));
    for (int i = 0; i < b->T; i++) b->targets[i] = -1;
    return b;
}
