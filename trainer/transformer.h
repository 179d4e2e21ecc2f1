// transformer.h — the pre-LN transformer encoder layer shared by the ViT (SigLIP, CLIP) and Whisper encoders,
// and a stack of such layers with its activations, forward and backward.
//
// Contract:
// - One layer is  x_mid = x + out_proj(attention(q, k, v of LN1(x)))  and  y = x_mid + fc2(gelu(fc1(LN2(x_mid)))),
//   non-causal softmax attention with scale 1/sqrt(head_dim), LayerNorm with biased variance and eps from the
//   config, GELU in the configured form (GELU_ERF Whisper, GELU_TANH SigLIP, GELU_QUICK CLIP).
// - Tensor names are Hugging Face's, under a caller-given prefix (e.g. "vision_model.encoder.layers.3."):
//   TF_NAMES_VIT: layer_norm1, layer_norm2, self_attn.{q,k,v,out}_proj, mlp.fc1, mlp.fc2;
//   TF_NAMES_WHISPER: self_attn_layer_norm, final_layer_norm, self_attn.{q,k,v,out}_proj, fc1, fc2.
//   Weights are nn.Linear layout (out, in); each projection's bias is optional (Whisper's k_proj has none).
// - Parameters live in the caller's buffer (trainer/params.h); gradients accumulate (+=) into the caller's
//   gradient buffer and are skipped when it is NULL (frozen). All compute goes through be->k; every GEMM runs
//   on all B*T rows at once.
// - Tensor parallelism (Megatron; cfg.tp a group of P ranks, NULL = none): each rank holds H/P heads (q/k/v
//   weight rows and biases, out_proj columns) and F/P MLP units (fc1 rows and bias, fc2 columns); LayerNorms
//   and the out_proj/fc2 biases are replicated. The forward sums the out_proj and fc2 partial products over
//   the group before adding bias and residual; the backward sums the LayerNorm-input gradients. Input and
//   output (B, T, D) are full and identical on every rank; replicated tensors get full gradients (no partial
//   sums). Specs carry tp_dim (params.h). Shapes and activations below are the rank's (D_l = D/P, F_l = F/P).
// - Activations (x is (B, T, D), N = B*T rows): a TransformerStack holds what the backward needs for every
//   layer it runs (with_backward) or one shared set of layer buffers plus two ping-pong residual buffers
//   (inference: memory independent of the depth).
#pragma once
#include <stddef.h>

#include "kernels/kernels.h"
#include "sharding/comm.h"
#include "trainer/dense.h"
#include "trainer/params.h"
#include "trainer/rng.h"

typedef enum { TF_NAMES_VIT = 0, TF_NAMES_WHISPER = 1 } TransformerNames;
enum { TF_Q = 0, TF_K = 1, TF_V = 2, TF_O = 3 };   // projection index in proj_bias and the weight arrays

typedef struct TransformerConfig {
    int dim;            // D model width
    int n_heads;        // H; head_dim = D / H
    int mlp_dim;        // F hidden width of the MLP
    float ln_eps;       // LayerNorm eps (SigLIP 1e-6, CLIP and Whisper 1e-5)
    int gelu_mode;      // GELU_ERF, GELU_TANH or GELU_QUICK (kernels/kernels.h)
    int names;          // TF_NAMES_VIT or TF_NAMES_WHISPER
    int proj_bias[4];   // 1: the projection TF_Q/K/V/O has a bias
    Comm* tp;           // tensor-parallel group (not owned); NULL: the whole layer on this rank
} TransformerConfig;

int transformer_config_check(const TransformerConfig* c, Error* e);

// Views of one layer's tensors into a parameter (or gradient) buffer; all NULL for a NULL base; a bias
// pointer is NULL when the config says the projection has none.
typedef struct TransformerLayerParams {
    float *ln1_w, *ln1_b;   // (D)
    float* w[4];            // (D, D) q, k, v, out projections [out, in]
    float* b[4];            // (D) or NULL
    float *ln2_w, *ln2_b;   // (D)
    float *fc1_w, *fc1_b;   // (F, D), (F)
    float *fc2_w, *fc2_b;   // (D, F), (D)
} TransformerLayerParams;

// Appends one layer's tensors, named prefix + HF name, in the order LN1, q, k, v, out (each weight then its
// bias), LN2, fc1, fc2; spec->layer = layer.
void transformer_layer_add_params(const TransformerConfig* c, ParamTable* t, const char* prefix, int layer);
// Points p at the layer's tensors in base (NULL base: every view NULL).
void transformer_layer_point(const TransformerConfig* c, const ParamTable* t, float* base, const char* prefix,
                             TransformerLayerParams* p);
// Deterministic random init of one layer: weights N(0, std 1/sqrt(fan_in)) drawn in the order q, k, v, out,
// fc1, fc2; biases 0; LayerNorm weight 1 and bias 0.
void transformer_layer_init_random(const TransformerConfig* c, const TransformerLayerParams* p, Rng* r);
// Host-side init helpers shared by the encoders: x[0, n) = value; x[0, n) = std * N(0, 1) drawn from r.
void tf_fill(float* x, size_t n, float value);
void tf_fill_normal(float* x, size_t n, float std, Rng* r);

// Saved activations of one layer (N = B*T rows).
typedef struct TransformerLayerActs {
    float *ln1, *ln1_mean, *ln1_rstd;   // (N, D), (N), (N)
    float *q, *k, *v;                   // (N, D) each = (B, T, H, head_dim)
    float* probs;                       // (B, H, T, T) attention probabilities
    float* att;                         // (N, D) attention output before out_proj
    float* x_mid;                       // (N, D) residual after the attention block
    float *ln2, *ln2_mean, *ln2_rstd;   // (N, D), (N), (N)
    float* h;                           // (N, F) fc1 output before the GELU
    float* g;                           // (N, F) GELU output: working buffer shared by all layers (the
                                        // backward recomputes it from h)
} TransformerLayerActs;

// Backward working memory shared by all layers.
typedef struct TransformerScratch {
    float *dF1, *dF2;                   // (N, F)
    float *dD1, *dq, *dk, *dv, *dmid;   // (N, D)
    float* dprobs;                      // (B, H, T, T)
} TransformerScratch;

// The activations of n_run consecutive layers on a (B, T, D) input.
typedef struct TransformerStack {
    int B, T, n_run, with_backward;
    float** res;                        // with_backward: (n_run + 1) x (N, D), res[l] enters layer l;
                                        // inference: 2 buffers used alternately
    TransformerLayerActs* layers;       // (n_run) with_backward, else (1) shared
    TransformerScratch scratch;         // with_backward only
} TransformerStack;

// One activation arena carved in two passes: with base NULL, take only counts (used = floats needed); then
// allocate `used` floats and carve again with the same calls. Pieces are rounded to 16 floats (64 bytes).
typedef struct FloatArena {
    float* base;
    size_t used;
} FloatArena;
float* arena_take(FloatArena* ar, size_t n);

// Allocates the stack's host arrays (res, layers); transformer_stack_layout then points every buffer into
// the arena (call it once counting and once carving); transformer_stack_free frees the host arrays only.
void transformer_stack_init(TransformerStack* s, int B, int T, int n_run, int with_backward);
void transformer_stack_layout(const TransformerConfig* c, TransformerStack* s, FloatArena* ar);
void transformer_stack_free(TransformerStack* s);
// The buffer the caller writes the stack's input (N, D) into.
float* transformer_stack_input(const TransformerStack* s);
// Runs the n_run layers; returns the buffer holding the output residual (N, D).
float* transformer_stack_forward(Backend* be, const TransformerConfig* c, const TransformerLayerParams* layers,
                                 TransformerStack* s);
// dres (N, D): gradient w.r.t. the stack's output in, gradient w.r.t. its input out (in place).
// grads: (n_run) layer views of the gradient buffer, or NULL (frozen: no weight gradients).
void transformer_stack_backward(Backend* be, const TransformerConfig* c, const TransformerLayerParams* layers,
                                const TransformerLayerParams* grads, TransformerStack* s, float* dres);


// One layer: out (N, D) from inp (N, D) (out != inp); a must have its buffers (probs (B, H, T, T)).
void transformer_layer_forward(Backend* be, const TransformerConfig* c, const TransformerLayerParams* p,
                               TransformerLayerActs* a, float* out, const float* inp, int B, int T);
// dinp = dL/dinp from dout = dL/dout (dinp may alias dout); grads NULL: no weight gradients.
void transformer_layer_backward(Backend* be, const TransformerConfig* c, const TransformerLayerParams* p,
                                const TransformerLayerParams* grads, const TransformerLayerActs* a,
                                const TransformerScratch* s, float* dinp, const float* dout, const float* inp,
                                int B, int T);

