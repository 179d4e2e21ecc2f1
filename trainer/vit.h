// vit.h — the ViT vision towers of ModRWKV: SigLIP / SigLIP2 (google/siglip2-base-patch16-384) and CLIP ViT
// (openai/clip-vit-large-patch14-336), forward and backward, loading Hugging Face checkpoints by name.
//
// Contract:
// - Input: preprocessed pixels (B, channels, S, S) (resized and normalised by the data loader). Output a->out:
//   (B, vit_out_tokens, D).
// - SigLIP: x = Conv2d(channels, D, P, stride P, bias)(pixels) as (B, (S/P)^2, D) + position_embedding; no CLS.
//   CLIP: x = [class_embedding, Conv2d(no bias)(pixels)] + position_embedding, then pre_layrnorm (HF's spelling).
//   Then the pre-LN encoder layers (trainer/transformer.h; gelu tanh for SigLIP, quick_gelu for CLIP).
// - hidden_layer chooses the output as HF defines it: -1 = last_hidden_state (SigLIP: post_layernorm of the last
//   residual; CLIP: the last residual, post_layernorm being applied by HF to the pooled CLS only); k >= 0 =
//   hidden_states[k], the residual stream after k layers (hidden_states[0] = the embeddings, after pre_layrnorm
//   for CLIP); k <= -2 = hidden_states[n_layers + 1 + k] as Python indexes (LLaVA's -2 = before the last layer).
//   Layers after the requested one are not run, and their tensors are not in the table (nor is CLIP's
//   post_layernorm, nor SigLIP's unless hidden_layer is -1): loading ignores them.
// - keep_cls (CLIP only): 1 keeps the CLS token as output token 0, 0 drops it.
// - Tensor names: cfg.prefix + the HF name below "vision_model." (prefix "vision_model." by default), e.g.
//   "vision_model.encoder.layers.3.self_attn.q_proj.weight"; Conv2d weight (D, channels, P, P).
// - Module contract of the multimodal model (create / bind / init_random / load / acts / forward / backward):
//   parameters and gradients live in caller memory; grads NULL = frozen (no weight gradient computed).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "trainer/params.h"
#include "trainer/tensorset.h"
#include "trainer/transformer.h"

typedef enum { VIT_SIGLIP = 0, VIT_CLIP = 1 } ViTKind;
enum { VIT_PREFIX_MAX = 96 };

typedef struct ViTConfig {
    int kind;            // VIT_SIGLIP or VIT_CLIP
    int image_size;      // S: input (B, channels, S, S)
    int patch_size;      // P: S % P == 0, n_patches = (S / P)^2
    int channels;        // 3
    int dim;             // D
    int n_layers;        // layers of the published model (those run: see hidden_layer)
    int n_heads;         // H, D % H == 0
    int mlp_dim;         // F
    float ln_eps;        // 1e-6 SigLIP, 1e-5 CLIP
    int hidden_layer;    // -1 last_hidden_state, k >= 0 hidden_states[k], k <= -2 hidden_states[n_layers + 1 + k]
    int keep_cls;        // CLIP only: 1 keeps the CLS token in the output
    char prefix[VIT_PREFIX_MAX];   // tensor name prefix, "vision_model." by default
    Comm* tp;            // tensor parallelism of the layers (trainer/transformer.h); NULL: none
} ViTConfig;

// Published sizes: google/siglip2-base-patch16-384 (S 384, P 16, D 768, 12 layers, 12 heads, MLP 3072, eps 1e-6,
// 576 tokens) and openai/clip-vit-large-patch14-336 (S 336, P 14, D 1024, 24 layers, 16 heads, MLP 4096,
// eps 1e-5, 577 tokens with CLS); hidden_layer -1, keep_cls 1, prefix "vision_model.".
void vit_config_siglip2_base_384(ViTConfig* c);
void vit_config_clip_large_336(ViTConfig* c);
int vit_config_check(const ViTConfig* c, Error* e);
int vit_out_tokens(const ViTConfig* c, int n_in);   // n_in is ignored (the image size is in the config)
int vit_out_dim(const ViTConfig* c);
// The prefix under which set holds a vision tower ("<prefix>embeddings.patch_embedding.weight"), into
// prefix (len bytes); returns 0, or -1 if no tensor of set names one (or several prefixes do).
int vit_detect_prefix(const TensorSet* set, char* prefix, size_t len);

// Views of the tensors (NULL where the kind or the options have no such tensor, and for a NULL base).
typedef struct ViTParams {
    float* class_emb;                  // (D) CLIP
    float *patch_w, *patch_b;          // (D, channels * P * P); (D) SigLIP only
    float* pos;                        // (T, D), T = n_patches (+ 1 CLIP)
    float *pre_ln_w, *pre_ln_b;        // (D) CLIP pre_layrnorm
    float *post_ln_w, *post_ln_b;      // (D) SigLIP post_layernorm (hidden_layer -1)
    TransformerLayerParams* layers;    // (n_run)
} ViTParams;

typedef struct ViT {
    ViTConfig cfg;
    Backend* be;
    ParamTable table;
    TransformerConfig tf;   // the layers' config
    int n_run;              // encoder layers run
    int n_tokens;           // T tokens through the encoder (n_patches, + 1 for CLIP)
    float *params, *grads;  // the bound buffers (table.n_params floats each; grads NULL = frozen)
    ViTParams p, g;         // views into them (g all NULL when frozen)
} ViT;

ViT* vit_create(const ViTConfig* c, Backend* be, Error* e);
void vit_bind(ViT* v, float* params, float* grads);
// Random init (deterministic in seed): Linear and Conv weights N(0, std 1/sqrt(fan_in)), biases 0, LayerNorm
// weight 1 and bias 0, position embeddings N(0, 0.02), class embedding N(0, std 1/sqrt(D)); one trainer/rng.h
// stream drawn in table order.
void vit_init_random(ViT* v, uint64_t seed);
// Copies every tensor of the table from set (by name, any float dtype); file names set in messages.
int vit_load(ViT* v, const TensorSet* set, const char* file, Error* e);
void vit_free(ViT* v);

typedef struct ViTActs {
    int B, with_backward;
    float* memory;                  // one arena (be->alloc) for every buffer below
    size_t n_floats;
    float* patches;                 // (B, n_patches, channels * P * P)
    float* emb;                     // (B, n_patches, D) CLIP patch embeddings (the backward reuses it)
    float* x0;                      // (B, T, D) CLIP embeddings before pre_layrnorm
    float *pre_mean, *pre_rstd;     // (B * T) CLIP
    TransformerStack stack;         // the n_run layers; its input is the embeddings
    float* last;                    // (B, T, D) the stack's output (a buffer of the stack)
    float *post_mean, *post_rstd;   // (B * T) SigLIP post_layernorm
    float* out;                     // (B, vit_out_tokens, D)
    float *dres, *dx0;              // backward: (B, T, D) each (dx0 CLIP only)
    float* dpatches;                // backward: (B, n_patches, channels * P * P)
} ViTActs;

// n_in is ignored (the image size is in the config).
ViTActs* vit_acts_create(const ViT* v, int B, int n_in, int with_backward);
void vit_acts_free(const ViT* v, ViTActs* a);
// pixels (B, channels, S, S) -> a->out (B, vit_out_tokens, D).
void vit_forward(ViT* v, ViTActs* a, const float* pixels);
// After vit_forward on a (created with_backward): weight gradients += (skipped when frozen); dpixels
// (B, channels, S, S) written if not NULL. dout: (B, vit_out_tokens, D).
void vit_backward(ViT* v, ViTActs* a, const float* dout, float* dpixels);
