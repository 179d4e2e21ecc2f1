// modrwkv_branch.h — one modality of ModRWKV: its encoder (ViT, Whisper with the log-mel front end, or
// WaveNet), and its projector, behind one small interface used by modrwkv.c and modrwkv_step.c.
//
// Contract: a Branch owns its modules (not their parameter memory: branch_bind points them into the
// multimodal model's buffers at enc_offset / proj_offset). Encoder inputs are prepared from loader items
// (BatchMedia): images are the loader's preprocessed (3, S, S) pixels, audio becomes Whisper log-mel frames
// (frame-major), time series are passed as (length, channels).
#pragma once
#include <stddef.h>

#include "datasets/shard_loader.h"
#include "trainer/logmel.h"
#include "trainer/modrwkv.h"
#include "trainer/projector.h"
#include "trainer/vit.h"
#include "trainer/wavenet.h"
#include "trainer/whisper.h"

enum { WHISPER_HOP = 160 };   // samples per log-mel frame (16 kHz, 10 ms)

struct Branch {
    Modality mod;
    int group;                 // TRAIN_VISION / TRAIN_AUDIO / TRAIN_TS
    const char* name;          // "vision" ...
    const char* prefix;        // checkpoint prefix of the encoder: "vision." ...
    const char* proj_prefix;   // of the projector: "vision_proj." ...
    ViT* vit;                  // exactly one encoder is set
    Whisper* whisper;
    WaveNet* wavenet;
    LogMel* mel;               // audio front end
    int pad30;                 // audio: Whisper's 30 s padding
    Projector* proj;
    ProjectorConfig pcfg;
    int enc_first, proj_first; // first tensor of each module in the combined table
    size_t enc_offset, proj_offset, enc_n, proj_n;
};

Modality branch_modality(MediaKind kind);
// tp: the tensor-parallel group the ViT / Whisper layers and the mlp projectors are split over (NULL: none;
// WaveNet and the linear projector are replicated).
Branch* branch_create(Modality mod, const ModelConfig* mc, int n_embd, Backend* be, Comm* tp, Error* e);
void branch_free(Branch* br);
const ParamTable* branch_encoder_table(const Branch* br);
// Points the encoder and projector at params + their offsets; gradients likewise, NULL = frozen.
void branch_bind(Branch* br, float* params, float* enc_grads, float* proj_grads);
void branch_init_random(Branch* br, uint64_t seed);
int branch_encoder_dim(const Branch* br);
// Encoder tokens for one loader item (-1 if the item cannot be encoded), and projector tokens for n_enc.
int branch_encoder_tokens(const Branch* br, const BatchMedia* item);
int branch_projector_tokens(const Branch* br, int n_enc);
// The encoder input of n items (all images, or one clip / series) as be memory (*input), *n_in = frames or
// steps (images: 0). Returns 0 or -1.
// *n_real: audio frames of real sound (Whisper's pad30 mode keeps n_real / 2 + 1 output rows).
int branch_prepare_input(Backend* be, Branch* br, const ShardBatch* src, const int* items, int n, float** input,
                         int* n_in, int* n_real, Error* e);
void* branch_acts_create(Branch* br, int n, int n_in, int with_backward);
void branch_acts_free(Branch* br, void* acts);
// Runs the encoder; returns its output (n, *n_enc, D) (inside acts).
const float* branch_forward(Branch* br, void* acts, const float* input, int n_real, int* n_enc);
void branch_backward(Branch* br, void* acts, const float* dout);   // weight gradients only (input is data)
