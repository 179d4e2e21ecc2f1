// modrwkv_branch.c — one modality's encoder + projector (see modrwkv_branch.h).
#include "trainer/modrwkv_branch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Modality branch_modality(MediaKind kind) {
    if (kind == MEDIA_IMAGE_ENCODED || kind == MEDIA_IMAGE_PIXELS) return MOD_VISION;
    if (kind == MEDIA_AUDIO_PCM) return MOD_AUDIO;
    return MOD_TS;
}

static int make_projector(Branch* br, const ModelConfig* mc, int enc_dim, int n_embd, Backend* be, Comm* tp,
                          Error* e) {
    const ProjectorYConfig* p = &mc->projector;
    memset(&br->pcfg, 0, sizeof br->pcfg);
    if (projector_kind_parse(p->kind, &br->pcfg.kind, e) != 0) return -1;
    br->pcfg.d_enc = enc_dim;
    br->pcfg.n_embd = n_embd;
    br->pcfg.ratio = p->ratio;
    br->pcfg.k = p->conv_kernel;
    br->pcfg.s = br->pcfg.kind == PROJ_POOL_MLP ? p->pool : p->conv_stride;
    br->pcfg.tp = tp;
    br->proj = projector_create(&br->pcfg, be, e);
    return br->proj ? 0 : -1;
}

static int make_vision(Branch* br, const VisionConfig* v, Backend* be, Comm* tp, Error* e) {
    ViTConfig c;
    if (strcmp(v->kind, "clip") == 0) vit_config_clip_large_336(&c);
    else vit_config_siglip2_base_384(&c);
    c.image_size = v->image_size;
    c.patch_size = v->patch;
    c.dim = v->width;
    c.n_layers = v->layers;
    c.n_heads = v->heads;
    c.mlp_dim = v->mlp;
    c.hidden_layer = v->hidden_layer;
    c.keep_cls = v->keep_cls;
    c.tp = tp;
    br->vit = vit_create(&c, be, e);
    return br->vit ? vit_out_dim(&c) : -1;
}

static int make_audio(Branch* br, const AudioConfig* a, Backend* be, Comm* tp, Error* e) {
    WhisperConfig c;
    whisper_config_small(&c);
    c.n_mels = a->n_mels;
    c.dim = a->width;
    c.n_layers = a->layers;
    c.n_heads = a->heads;
    c.mlp_dim = a->mlp;
    br->pad30 = strcmp(a->length_mode, "pad30") == 0;
    c.length_mode = br->pad30 ? WHISPER_PAD30 : WHISPER_TRUNCATE;
    c.tp = tp;
    br->whisper = whisper_create(&c, be, e);
    if (!br->whisper) return -1;
    br->mel = logmel_create(a->n_mels, e);
    return br->mel ? whisper_out_dim(&c) : -1;
}

static int make_ts(Branch* br, const TimeSeriesConfig* t, Backend* be, Error* e) {
    WaveNetConfig c;
    memset(&c, 0, sizeof c);
    c.in_channels = t->channels;
    c.residual = t->width;
    c.skip = t->skip;
    c.n_layers = t->layers;
    c.dilation_cycle = t->layers < 10 ? t->layers : 10;
    c.out_dim = t->out_dim;
    c.patch = t->patch;
    br->wavenet = wavenet_create(&c, be, e);
    return br->wavenet ? wavenet_out_dim(&c) : -1;
}

Branch* branch_create(Modality mod, const ModelConfig* mc, int n_embd, Backend* be, Comm* tp, Error* e) {
    static const char* const names[] = {"vision", "audio", "ts"};
    Branch* br = xcalloc(1, sizeof *br);
    br->mod = mod;
    br->name = names[mod];
    br->group = mod == MOD_VISION ? TRAIN_VISION : mod == MOD_AUDIO ? TRAIN_AUDIO : TRAIN_TS;
    br->prefix = mod == MOD_VISION ? "vision." : mod == MOD_AUDIO ? "audio." : "ts.";
    br->proj_prefix = mod == MOD_VISION ? "vision_proj." : mod == MOD_AUDIO ? "audio_proj." : "ts_proj.";
    int dim = mod == MOD_VISION ? make_vision(br, &mc->vision, be, tp, e)
            : mod == MOD_AUDIO  ? make_audio(br, &mc->audio, be, tp, e)
                                : make_ts(br, &mc->ts, be, e);
    if (dim > 0 && make_projector(br, mc, dim, n_embd, be, tp, e) == 0) return br;
    char tmp[sizeof e->msg];
    memcpy(tmp, e->msg, sizeof tmp);
    errorf(e, "model.%s: %.900s", br->name, tmp);
    branch_free(br);
    return NULL;
}

void branch_free(Branch* br) {
    if (!br) return;
    if (br->vit) vit_free(br->vit);
    if (br->whisper) whisper_free(br->whisper);
    if (br->wavenet) wavenet_free(br->wavenet);
    if (br->mel) logmel_free(br->mel);
    if (br->proj) projector_free(br->proj);
    free(br);
}

const ParamTable* branch_encoder_table(const Branch* br) {
    if (br->vit) return &br->vit->table;
    if (br->whisper) return &br->whisper->table;
    return &br->wavenet->table;
}

void branch_bind(Branch* br, float* params, float* enc_grads, float* proj_grads) {
    float* ep = params + br->enc_offset;
    float* eg = enc_grads ? enc_grads + br->enc_offset : NULL;
    if (br->vit) vit_bind(br->vit, ep, eg);
    if (br->whisper) whisper_bind(br->whisper, ep, eg);
    if (br->wavenet) wavenet_bind(br->wavenet, ep, eg);
    projector_bind(br->proj, params + br->proj_offset, proj_grads ? proj_grads + br->proj_offset : NULL);
}

void branch_init_random(Branch* br, uint64_t seed) {
    if (br->vit) vit_init_random(br->vit, seed);
    if (br->whisper) whisper_init_random(br->whisper, seed);
    if (br->wavenet) wavenet_init_random(br->wavenet, seed);
    projector_init_random(br->proj, seed + 7);
}

int branch_encoder_dim(const Branch* br) { return br->pcfg.d_enc; }

int branch_encoder_tokens(const Branch* br, const BatchMedia* item) {
    if (br->vit) return vit_out_tokens(&br->vit->cfg, 0);
    if (br->whisper) {
        int n = (int)item->shape[0];
        if (n <= 0) return -1;
        int frames = logmel_frames(br->mel, n, br->pad30);
        return br->pad30 ? whisper_valid_tokens(&br->whisper->cfg, frames, n / WHISPER_HOP)
                         : whisper_out_tokens(&br->whisper->cfg, frames);
    }
    return wavenet_out_tokens(&br->wavenet->cfg, (int)item->shape[0]);
}

int branch_projector_tokens(const Branch* br, int n_enc) {
    return n_enc >= 1 ? projector_out_tokens(&br->pcfg, n_enc) : -1;
}

static int prepare_images(Backend* be, Branch* br, const ShardBatch* src, const int* items, int n, float** input,
                          Error* e) {
    int S = br->vit->cfg.image_size;
    size_t per = (size_t)3 * S * S;
    *input = be->alloc(be, (size_t)n * per * sizeof(float));
    for (int j = 0; j < n; j++) {
        const BatchMedia* it = &src->media[items[j]];
        if (!it->data || it->ndim != 3 || it->shape[0] != 3 || it->shape[1] != S || it->shape[2] != S)
            return errorf(e, "image item of row %d is not a (3, %d, %d) preprocessed image: set the loader's image "
                             "size to model.vision.image_size", it->row, S, S);
        be->k.copy(be, *input + (size_t)j * per, it->data, per);
    }
    return 0;
}

static int prepare_audio(Backend* be, Branch* br, const BatchMedia* it, float** input, int* n_in, int* n_real,
                         Error* e) {
    int n = (int)it->shape[0];
    *n_real = n / WHISPER_HOP;
    int frames = logmel_frames(br->mel, n, br->pad30);
    int n_mels = logmel_n_mels(br->mel);
    float* host = xmalloc((size_t)frames * n_mels * sizeof(float));
    if (logmel_compute(br->mel, it->data, n, br->pad30, host, e) != 0) {
        free(host);
        return -1;
    }
    *input = be->alloc(be, (size_t)frames * n_mels * sizeof(float));
    be->k.copy(be, *input, host, (size_t)frames * n_mels);
    free(host);
    *n_in = frames;
    return 0;
}

int branch_prepare_input(Backend* be, Branch* br, const ShardBatch* src, const int* items, int n, float** input,
                         int* n_in, int* n_real, Error* e) {
    *n_in = *n_real = 0;
    if (br->vit) return prepare_images(be, br, src, items, n, input, e);
    const BatchMedia* it = &src->media[items[0]];
    if (br->whisper) return prepare_audio(be, br, it, input, n_in, n_real, e);
    size_t len = (size_t)it->shape[0] * (it->ndim > 1 ? (size_t)it->shape[1] : 1);
    if (wavenet_check_input(&br->wavenet->cfg, (int)it->shape[0], e) != 0) return -1;
    *input = be->alloc(be, len * sizeof(float));
    be->k.copy(be, *input, it->data, len);
    *n_in = (int)it->shape[0];
    return 0;
}

void* branch_acts_create(Branch* br, int n, int n_in, int with_backward) {
    if (br->vit) return vit_acts_create(br->vit, n, 0, with_backward);
    if (br->whisper) return whisper_acts_create(br->whisper, n, n_in, with_backward);
    return wavenet_acts_create(br->wavenet, n, n_in, with_backward);
}

void branch_acts_free(Branch* br, void* acts) {
    if (!acts) return;
    if (br->vit) vit_acts_free(br->vit, acts);
    else if (br->whisper) whisper_acts_free(br->whisper, acts);
    else wavenet_acts_free(br->wavenet, acts);
}

const float* branch_forward(Branch* br, void* acts, const float* input, int n_real, int* n_enc) {
    if (br->vit) {
        ViTActs* a = acts;
        vit_forward(br->vit, a, input);
        *n_enc = vit_out_tokens(&br->vit->cfg, 0);
        return a->out;
    }
    if (br->whisper) {
        WhisperActs* a = acts;
        if (br->pad30) a->real_frames[0] = n_real;
        whisper_forward(br->whisper, a, input);
        *n_enc = a->n_valid[0];  // one clip per call: its kept rows are the first n_valid of out
        return a->out;
    }
    WaveNetActs* a = acts;
    wavenet_forward(br->wavenet, a, input);
    *n_enc = a->n_out;
    return a->out;
}

void branch_backward(Branch* br, void* acts, const float* dout) {
    if (br->vit) {
        vit_backward(br->vit, acts, dout, NULL);
    } else if (br->whisper) {
        WhisperActs* a = acts;  // dout holds the n_valid kept rows; the rows cut off get zero gradient
        Backend* be = br->whisper->be;
        size_t D = (size_t)br->whisper->cfg.dim, kept = (size_t)a->n_valid[0] * D, all = (size_t)a->n_out * D;
        float* full = be->alloc(be, all * sizeof(float));
        be->k.copy(be, full, dout, kept);
        whisper_backward(br->whisper, a, full, NULL);
        be->free(be, full);
    } else {
        wavenet_backward(br->wavenet, acts, dout, NULL);
    }
}
