// modrwkv.h — the ModRWKV multimodal model (arXiv 2505.14505): modality encoders -> projectors -> the RWKV-7
// backbone, whose token embeddings at placeholder positions are replaced by the projected features.
//
// Contract:
// - One parameter buffer and one gradient buffer for every module (llm.c style), described by one combined
//   ParamTable whose names are the checkpoint names: the backbone's official names unprefixed
//   ("blocks.0.att.key.weight"), adapters unprefixed ("blocks.0.att.key.bone"), and every other module under
//   its prefix: "vision." + Hugging Face names, "audio." + Whisper names, "ts." + WaveNet names, and
//   "vision_proj.", "audio_proj.", "ts_proj." + projector names.
// - Trainable groups (backbone, adapter, projector, vision, audio, ts) decide which tensors get gradients and
//   optimizer state; a frozen module computes no weight gradients (its activation gradients still flow where
//   a trained module lies before it). Defaults by stage: 0 = backbone; 1 = projector; 2 = projector +
//   backbone, or projector + adapter when an adapter is configured (the base weights then stay frozen).
// - Sequence assembly (modrwkv_assemble): every media item of a batch row occupies a run of placeholder
//   tokens (datasets/shard.h); the run is re-laid out to the projector's output token count for that item
//   (n_out may differ from the stored count, e.g. under conv compression): text before and after is kept in
//   order, the feature slots (token 0) are masked from the loss, rows are cut at T (cut targets are counted).
// - Forward: encoders run per modality (images batched, audio and time series item by item), projectors map
//   to n_embd, features are written into the embedding rows of their slots, the backbone runs from there.
//   Backward reverses it; the embedding table gets no gradient from feature slots.
#pragma once
#include <stdint.h>

#include "datasets/shard_loader.h"
#include "kernels/kernels.h"
#include "trainer/config.h"
#include "trainer/params.h"
#include "trainer/rwkv7.h"

typedef enum { MOD_VISION = 0, MOD_AUDIO = 1, MOD_TS = 2, MOD_COUNT = 3 } Modality;

enum {  // trainable groups (bit flags)
    TRAIN_BACKBONE = 1, TRAIN_ADAPTER = 2, TRAIN_PROJECTOR = 4, TRAIN_VISION = 8, TRAIN_AUDIO = 16, TRAIN_TS = 32,
};

typedef struct Branch Branch;      // one modality: encoder -> projector (modrwkv.c)
typedef struct Adapter Adapter;
typedef struct Comm Comm;          // sharding/comm.h

typedef struct ModRWKV {
    Backend* be;
    RWKV7* lm;                     // the backbone (its parameters live in `params`)
    Adapter* adapter;              // NULL: none
    Branch* branch[MOD_COUNT];     // NULL: modality not configured
    ParamTable table;              // every tensor, checkpoint names, offsets into params
    uint8_t* module_of;            // (table.n) TRAIN_* group of each tensor
    uint8_t* trained;              // (table.n) 1: receives gradients and optimizer state
    int trainable;                 // TRAIN_* flags
    float* params;                 // (table.n_params)
    float* grads;                  // (table.n_params) or NULL before modrwkv_alloc_grads
    ModelParams lm_grads;          // views of the backbone's gradients (NULL views = frozen)
} ModRWKV;

// Parses "projector,backbone" into TRAIN_* flags (-1 with e naming the unknown word).
int modrwkv_parse_trainable(const char* list, int* flags, Error* e);
// The stage's default trainable groups for this model configuration.
int modrwkv_default_trainable(const ModelConfig* mc, int stage);

// Builds the model around an existing backbone (ownership passes to the ModRWKV; its parameters move into
// the combined buffer). Encoders/projectors are created from mc (random init with seed unless mc names a
// file), the adapter from mc->adapter. Returns NULL with e filled.
ModRWKV* modrwkv_create(RWKV7* lm, const ModelConfig* mc, uint64_t seed, Error* e);
void modrwkv_free(ModRWKV* m);
// Tensor parallelism: a model holding this rank's slice of full's backbone (rwkv7_create_tp over the group tp)
// and of its ViT / Whisper layers (trainer/transformer.h) and mlp projectors (trainer/projector.h; the
// encoders' embeddings, the WaveNet encoder and linear projectors are replicated), every value copied from full
// (sharding/tensor_parallel.h); full is left as it is. A Bone / LoRA adapter is split with the linears it
// adapts (trainer/adapter.h; Bat is an error).
// Returns NULL with e filled.
ModRWKV* modrwkv_shard(const ModRWKV* full, const ModelConfig* mc, Comm* tp, Error* e);
// Loads a model file: a native checkpoint rebuilds the stored configuration's modules (encoders,
// projectors, adapter) with their weights; an official .pth gives a text-only model. *tokenizer receives
// the stored tokenizer spec (malloc'ed) or NULL.
ModRWKV* modrwkv_load(const char* path, Backend* be, char** tokenizer, Error* e);
// Chooses the trained tensors (TRAIN_* flags) and allocates the gradient buffer.
int modrwkv_set_trainable(ModRWKV* m, int flags, Error* e);
// Loads every tensor present in the set under its checkpoint name (modules absent from the file keep their
// values); strict_groups: TRAIN_* groups that must be complete in the file.
int modrwkv_load_tensors(ModRWKV* m, const TensorSet* set, int groups, const char* file, Error* e);
size_t modrwkv_count(const ModRWKV* m, int trained_only);   // parameters (all, or trained)
int modrwkv_has_media(const ModRWKV* m);
int modrwkv_media_tokens(const ModRWKV* m, MediaKind kind, const BatchMedia* item);  // projector output count

// ---------------------------------------------------------------------------------------------------- steps
typedef struct MMBatch {
    int B, T;
    int32_t* tokens;               // (B, T) after assembly
    int32_t* targets;              // (B, T)
    const ShardBatch* src;         // the loader batch (media payloads), or NULL for text
    int n_items;                   // media items
    int* item_slot;                // (n_items) first column of the item's feature slots (-1: cut off)
    int* item_len;                 // (n_items) feature slots of the item (projector output count)
    int64_t cut_targets;           // targets lost because a row did not fit T
} MMBatch;

typedef struct ModRWKVStep ModRWKVStep;   // activations of one micro-batch (modrwkv.c)

ModRWKVStep* modrwkv_step_create(ModRWKV* m, int B, int T, int with_backward);
// With logits for at most logit_rows rows (prefill: 1; see rwkv7_acts_create_rows).
ModRWKVStep* modrwkv_step_create_rows(ModRWKV* m, int B, int T, int with_backward, int logit_rows);
void modrwkv_step_free(ModRWKV* m, ModRWKVStep* s);
// Lays out src into b (B, T) — see the contract above. Text batches (src->n_media 0) are copied as they are.
void modrwkv_assemble(const ModRWKV* m, const ShardBatch* src, MMBatch* b, int B, int T);
void mmbatch_free(MMBatch* b);
// forward + masked CE (+ backward when the step was created with it): returns the mean loss over trained
// targets; n_valid receives their count. Gradients ACCUMULATE into m->grads (trained tensors only).
float modrwkv_step(ModRWKV* m, ModRWKVStep* s, const MMBatch* b, float dloss_scale, int l2wrap, int backward,
                   int* n_valid, Error* e);
RWKV7Acts* modrwkv_step_acts(ModRWKVStep* s);   // the backbone activations (logits after a forward)

// Prefill for generation: runs encoders/projectors on the media of row 0 of b and the backbone over b's
// tokens with features in place, carrying state; the logits of the last token are row 0 of the acts' logits.
int modrwkv_prefill(ModRWKV* m, ModRWKVStep* s, const MMBatch* b, RWKV7State* state, Error* e);
