// modrwkv_step.c — one micro-batch of ModRWKV (modrwkv.h): sequence assembly, encoders -> projectors ->
// features placed into the backbone's embedding rows, the backbone, and the way back.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/adapter.h"
#include "trainer/logmel.h"
#include "trainer/modrwkv.h"
#include "trainer/modrwkv_branch.h"
#include "trainer/projector.h"
#include "trainer/vit.h"
#include "trainer/wavenet.h"
#include "trainer/whisper.h"

// The encoder/projector work of one group of media items: all images of the batch at once, or one audio
// clip / time series.
typedef struct ItemWork {
    Branch* br;
    int n;                     // items in the group (images: the batch's images; else 1)
    int* items;                // (n) indices into the batch's media
    float* input;              // (n, ...) encoder input (be memory): pixels, log-mel frames, series
    int n_in;                  // encoder input length (frames / steps; images: unused)
    int n_real;                // audio: frames of real sound
    void* enc_acts;            // VitActs* / WhisperActs* / WaveNetActs*
    ProjectorActs* pacts;
    int n_enc, n_out;          // encoder tokens per item, projector tokens per item
    float* dfeat;              // (n, n_out, C) gradient of the features (be memory)
    float* denc;               // (n, n_enc, D) gradient of the encoder output, when the encoder trains
} ItemWork;

struct ModRWKVStep {
    int B, T, with_backward;
    RWKV7Acts* acts;
    ItemWork* work;
    int n_work;
};

ModRWKVStep* modrwkv_step_create(ModRWKV* m, int B, int T, int with_backward) {
    return modrwkv_step_create_rows(m, B, T, with_backward, B * T);
}

ModRWKVStep* modrwkv_step_create_rows(ModRWKV* m, int B, int T, int with_backward, int logit_rows) {
    ModRWKVStep* s = xcalloc(1, sizeof *s);
    s->B = B;
    s->T = T;
    s->with_backward = with_backward;
    s->acts = rwkv7_acts_create_rows(m->lm, B, T, with_backward, logit_rows);
    return s;
}

static void free_work(ModRWKV* m, ModRWKVStep* s) {
    Backend* be = m->be;
    for (int i = 0; i < s->n_work; i++) {
        ItemWork* w = &s->work[i];
        branch_acts_free(w->br, w->enc_acts);
        projector_acts_free(w->br->proj, w->pacts);
        be->free(be, w->input);
        if (w->dfeat) be->free(be, w->dfeat);
        if (w->denc) be->free(be, w->denc);
        free(w->items);
    }
    free(s->work);
    s->work = NULL;
    s->n_work = 0;
}

void modrwkv_step_free(ModRWKV* m, ModRWKVStep* s) {
    if (!s) return;
    free_work(m, s);
    rwkv7_acts_free(m->lm, s->acts);
    free(s);
}

RWKV7Acts* modrwkv_step_acts(ModRWKVStep* s) { return s->acts; }

// ---------------------------------------------------------------------------------------------------- assembly

int modrwkv_media_tokens(const ModRWKV* m, MediaKind kind, const BatchMedia* item) {
    const Branch* br = m->branch[branch_modality(kind)];
    if (!br) return -1;
    int n_enc = branch_encoder_tokens(br, item);
    return n_enc > 0 ? branch_projector_tokens(br, n_enc) : -1;
}

void mmbatch_free(MMBatch* b) {
    free(b->tokens);
    free(b->targets);
    free(b->item_slot);
    free(b->item_len);
    memset(b, 0, sizeof *b);
}

// Lays out one row: text columns are copied, each media run becomes its item's n_out slots.
static void assemble_row(const ModRWKV* m, const ShardBatch* src, MMBatch* b, int row) {
    const int32_t* tok = src->tokens + (size_t)row * src->T;
    const int32_t* tgt = src->targets + (size_t)row * src->T;
    int32_t* otok = b->tokens + (size_t)row * b->T;
    int32_t* otgt = b->targets + (size_t)row * b->T;
    int out = 0, next = 0;  // next: first media item of this row not placed yet
    while (next < src->n_media && src->media[next].row < row) next++;
    for (int c = 0; c < src->T;) {
        const BatchMedia* it = next < src->n_media && src->media[next].row == row ? &src->media[next] : NULL;
        if (it && c == it->placeholder_pos) {
            int n = b->item_len[next];
            if (out + n > b->T) break;  // the item does not fit whole: the row ends here
            b->item_slot[next] = out;
            for (int j = 0; j < n; j++) {  // token 0: the row is overwritten by the features (any vocabulary)
                otok[out + j] = 0;
                otgt[out + j] = -1;
            }
            otgt[out + n - 1] = tgt[c + it->n_placeholder - 1];
            out += n;
            c += it->n_placeholder;
            next++;
            continue;
        }
        if (out == b->T) break;
        otok[out] = tok[c];
        otgt[out] = tgt[c];
        out++;
        c++;
    }
    for (int c = out; c < b->T; c++) {
        otok[c] = 0;
        otgt[c] = -1;
    }
    // targets that did not fit
    int64_t kept = 0, all = 0;
    for (int c = 0; c < b->T; c++) kept += otgt[c] >= 0;
    for (int c = 0; c < src->T; c++) all += tgt[c] >= 0;
    b->cut_targets += all > kept ? all - kept : 0;
}

void modrwkv_assemble(const ModRWKV* m, const ShardBatch* src, MMBatch* b, int B, int T) {
    memset(b, 0, sizeof *b);
    b->B = B;
    b->T = T;
    b->src = src;
    b->tokens = xcalloc((size_t)B * T, sizeof(int32_t));
    b->targets = xcalloc((size_t)B * T, sizeof(int32_t));
    b->n_items = src->n_media;
    b->item_slot = xcalloc((size_t)src->n_media + 1, sizeof(int));
    b->item_len = xcalloc((size_t)src->n_media + 1, sizeof(int));
    for (int i = 0; i < src->n_media; i++) {
        b->item_slot[i] = -1;
        b->item_len[i] = modrwkv_media_tokens(m, src->media[i].kind, &src->media[i]);
    }
    for (int r = 0; r < B; r++) {
        if (r < src->B) {
            assemble_row(m, src, b, r);
        } else {
            for (int c = 0; c < T; c++) b->targets[(size_t)r * T + c] = -1;
        }
    }
}

// ---------------------------------------------------------------------------------------------------- encoders

static ItemWork* add_work(ModRWKVStep* s, Branch* br) {
    s->work = xrealloc(s->work, (size_t)(s->n_work + 1) * sizeof(ItemWork));
    ItemWork* w = &s->work[s->n_work++];
    memset(w, 0, sizeof *w);
    w->br = br;
    return w;
}

// Groups the batch's placed media: every image in one group, every other item alone.
static int plan_work(ModRWKV* m, ModRWKVStep* s, const MMBatch* b, Error* e) {
    const ShardBatch* src = b->src;
    ItemWork* images = NULL;
    for (int i = 0; i < b->n_items; i++) {
        if (b->item_slot[i] < 0) continue;
        const BatchMedia* it = &src->media[i];
        Branch* br = m->branch[branch_modality(it->kind)];
        if (!br) {
            static const char* const names[] = {"vision", "audio", "ts"};
            const char* n = names[branch_modality(it->kind)];
            return errorf(e, "a sample in row %d has %s media but the model has no %s encoder: set model.%s.kind",
                          it->row, n, n, n);
        }
        ItemWork* w = branch_modality(it->kind) == MOD_VISION ? images : NULL;
        if (!w) {
            w = add_work(s, br);
            if (branch_modality(it->kind) == MOD_VISION) images = w;
        }
        w->items = xrealloc(w->items, (size_t)(w->n + 1) * sizeof(int));
        w->items[w->n++] = i;
    }
    return 0;
}

static int run_encoders(ModRWKV* m, ModRWKVStep* s, const MMBatch* b, int with_backward, Error* e) {
    for (int i = 0; i < s->n_work; i++) {
        ItemWork* w = &s->work[i];
        int enc_trained = (m->trainable & w->br->group) != 0;
        int proj_trained = (m->trainable & TRAIN_PROJECTOR) != 0;
        if (branch_prepare_input(m->be, w->br, b->src, w->items, w->n, &w->input, &w->n_in, &w->n_real, e) != 0) return -1;
        w->enc_acts = branch_acts_create(w->br, w->n, w->n_in, with_backward && enc_trained);
        const float* enc_out = branch_forward(w->br, w->enc_acts, w->input, w->n_real, &w->n_enc);
        w->pacts = projector_acts_create(w->br->proj, w->n, w->n_enc, with_backward && (proj_trained || enc_trained));
        projector_forward(w->br->proj, w->pacts, enc_out);
        w->n_out = projector_out_tokens(&w->br->pcfg, w->n_enc);
        if (w->n_out != b->item_len[w->items[0]])
            return errorf(e, "internal: %s item gives %d feature tokens, assembly planned %d", w->br->name,
                          w->n_out, b->item_len[w->items[0]]);
    }
    return 0;
}

// Writes every item's features into the embedding rows of its slots.
static void place_features(ModRWKV* m, ModRWKVStep* s, const MMBatch* b) {
    int C = m->lm->cfg.n_embd;
    for (int i = 0; i < s->n_work; i++) {
        ItemWork* w = &s->work[i];
        const float* feat = w->pacts->out;  // (n, n_out, C)
        for (int j = 0; j < w->n; j++) {
            const BatchMedia* it = &b->src->media[w->items[j]];
            float* dst = s->acts->x0 + ((size_t)it->row * b->T + b->item_slot[w->items[j]]) * C;
            m->be->k.copy(m->be, dst, feat + (size_t)j * w->n_out * C, (size_t)w->n_out * C);
        }
    }
}

// Takes every item's feature gradient out of dx0 (and zeroes those rows: the embedding table gets nothing
// from feature slots), then runs the projectors' and trained encoders' backward.
static void features_backward(ModRWKV* m, ModRWKVStep* s, const MMBatch* b) {
    Backend* be = m->be;
    int C = m->lm->cfg.n_embd;
    for (int i = 0; i < s->n_work; i++) {
        ItemWork* w = &s->work[i];
        size_t per = (size_t)w->n_out * C;
        w->dfeat = be->alloc(be, (size_t)w->n * per * sizeof(float));
        for (int j = 0; j < w->n; j++) {
            const BatchMedia* it = &b->src->media[w->items[j]];
            float* src = s->acts->dx0 + ((size_t)it->row * b->T + b->item_slot[w->items[j]]) * C;
            be->k.copy(be, w->dfeat + (size_t)j * per, src, per);
            be->k.zero(be, src, per);
        }
        int enc_trained = (m->trainable & w->br->group) != 0;
        int proj_trained = (m->trainable & TRAIN_PROJECTOR) != 0;
        if (!enc_trained && !proj_trained) continue;
        if (enc_trained)
            w->denc = be->alloc(be, (size_t)w->n * w->n_enc * branch_encoder_dim(w->br) * sizeof(float));
        projector_backward(w->br->proj, w->pacts, w->dfeat, w->denc);
        if (enc_trained) branch_backward(w->br, w->enc_acts, w->denc);
    }
}

// ---------------------------------------------------------------------------------------------------- step

float modrwkv_step(ModRWKV* m, ModRWKVStep* s, const MMBatch* b, float dloss_scale, int l2wrap, int backward,
                   int* n_valid, Error* e) {
    free_work(m, s);
    if (b->src && plan_work(m, s, b, e) != 0) return NAN;
    if (run_encoders(m, s, b, backward, e) != 0) return NAN;
    rwkv7_set_head_rows(s->acts, b->targets);  // logits only where a target is trained
    rwkv7_embed(m->lm, s->acts, b->tokens);
    place_features(m, s, b);
    rwkv7_forward_embedded(m->lm, s->acts, NULL);
    float loss = rwkv7_loss(m->lm, s->acts, b->targets, dloss_scale, l2wrap, n_valid);
    if (!backward) return loss;
    int front = s->n_work > 0 && (m->trainable & (TRAIN_PROJECTOR | TRAIN_VISION | TRAIN_AUDIO | TRAIN_TS));
    int lm_side = (m->trainable & (TRAIN_BACKBONE | TRAIN_ADAPTER)) != 0;
    if (!front && !lm_side) return loss;  // nothing before the loss trains on this batch
    rwkv7_backward_to_x0(m->lm, s->acts, &m->lm_grads);
    features_backward(m, s, b);
    rwkv7_embed_backward(m->lm, s->acts, &m->lm_grads);
    return loss;
}

int modrwkv_prefill(ModRWKV* m, ModRWKVStep* s, const MMBatch* b, RWKV7State* state, Error* e) {
    free_work(m, s);
    if (b->src && plan_work(m, s, b, e) != 0) return -1;
    if (run_encoders(m, s, b, 0, e) != 0) return -1;
    int32_t last = b->T - 1;  // logits of the last row only (the next token)
    rwkv7_set_head_rows_list(s->acts, &last, 1);
    rwkv7_embed(m->lm, s->acts, b->tokens);
    place_features(m, s, b);
    rwkv7_forward_embedded(m->lm, s->acts, state);
    return 0;
}
