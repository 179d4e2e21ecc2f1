// projector.h — the projectors (adapters) of ModRWKV that map encoder features (B, n_in, D_enc) to backbone
// embeddings (B, n_out, C) (paper §3.2-§3.3, Table 5 hidden-size sweep, Table 7 conv compression).
//
// Contract (module contract of the multimodal model: parameters in a ParamTable, memory owned by the caller):
// - kind "linear":   y = x W^T + b                                    proj.{weight (C, D_enc), bias (C)}
// - kind "mlp":      h = Linear_2(ReLU(Linear_1(x))), H = ratio * C; y = h + LayerNorm_C(h) (eps 1e-5), the
//                    released VisualAdapter: proj.0.{weight (H, D_enc), bias (H)}, proj.2.{weight (C, H),
//                    bias (C)}, pre_norm.{weight (C), bias (C)} (proj = Sequential(Linear, ReLU, Linear)).
// - kind "conv_mlp": Conv1d(D_enc -> D_enc, kernel k, stride s, no bias, no padding) over the token axis, then
//                    the mlp: n_out = floor((n_in - k) / s) + 1 (577 -> 288 / 192 / 144 for (3,2) / (4,3) /
//                    (5,4), Table 7). conv.weight (D_enc, D_enc, k) comes first in the buffer.
// - kind "pool_mlp": average pooling over non-overlapping windows of s tokens (floor: n_out = n_in / s, the
//                    last n_in mod s tokens are dropped), then the mlp.
//   Fields a kind does not use (ratio for linear; k and s for linear and mlp; k for pool_mlp) are ignored.
// - Random init (projector_init_random): PyTorch defaults: Linear and Conv1d weights and biases
//   ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform a = sqrt(5)), fan_in = in features (x k for the
//   conv); LayerNorm weight 1, bias 0. One trainer/rng.h stream seeded with `seed`, tensors in buffer order.
// - All compute goes through be->k (gemm, bias, relu, layernorm, im2col1d/col2im1d, avgpool1d).
// - Tensor parallelism (cfg.tp, a group of P ranks; NULL = none): the mlp kinds split the hidden layer (proj.0
//   rows and bias, proj.2 columns: H/P units per rank) and sum proj.2's partial products over the group before
//   its bias; the conv, the LayerNorm and proj.2's bias are replicated; the input gradient is summed over the
//   group. The linear kind is replicated. Input and output are full and identical on every rank.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "sharding/comm.h"
#include "trainer/params.h"
#include "trainer/tensorset.h"

typedef enum { PROJ_LINEAR = 0, PROJ_MLP, PROJ_CONV_MLP, PROJ_POOL_MLP } ProjectorKind;

typedef struct ProjectorConfig {
    ProjectorKind kind;
    int d_enc;    // D_enc: encoder feature size
    int n_embd;   // C: backbone embedding size
    int ratio;    // mlp hidden size H = ratio * C (the paper sweeps 2, 4, 8)
    int k, s;     // conv_mlp: kernel and stride over tokens; pool_mlp: pooling window s
    Comm* tp;     // tensor-parallel group (not owned); NULL: none
} ProjectorConfig;

// "linear", "mlp", "conv_mlp", "pool_mlp" -> kind; -1 with a message listing them otherwise.
int projector_kind_parse(const char* name, ProjectorKind* kind, Error* e);
const char* projector_kind_name(ProjectorKind kind);

int projector_config_check(const ProjectorConfig* c, Error* e);
// Output tokens for n_in input tokens; 0 when projector_check_input rejects n_in.
int projector_out_tokens(const ProjectorConfig* c, int n_in);
int projector_out_dim(const ProjectorConfig* c);      // C
size_t projector_n_params(const ProjectorConfig* c);  // floats of the parameter buffer
// -1 with a message naming n_in and (k, s) when n_in gives no output token (n_in < 1, n_in < k for conv_mlp,
// n_in < s for pool_mlp).
int projector_check_input(const ProjectorConfig* c, int n_in, Error* e);

typedef struct ProjectorParams {
    float *conv_w;                 // (D_enc, D_enc, k) conv_mlp only
    float *w1, *b1;                // linear: (C, D_enc), (C); mlp kinds: (H, D_enc), (H)
    float *w2, *b2;                // mlp kinds: (C, H), (C)
    float *ln_w, *ln_b;            // mlp kinds: (C), (C)
} ProjectorParams;

typedef struct Projector {
    ProjectorConfig cfg;
    int hidden;                    // H on this rank (H / P under tensor parallelism; 0 for linear)
    Backend* be;
    ParamTable table;
    float* params_base;
    float* grads_base;             // NULL: frozen
    ProjectorParams p, g;          // views (NULL where the kind has no such tensor, or frozen grads)
} Projector;

typedef struct ProjectorActs {
    int B, n_in, n_out, with_backward;
    float* memory;                 // one arena for everything below
    float* cols;                   // conv_mlp: (B n_out, D_enc k) im2col of the input
    float* xin;                    // (B n_out, D_enc) input of the first Linear (a copy of the input for
                                   // linear/mlp, kept only with_backward; conv or pool output otherwise)
    float *h1, *a1;                // (B n_out, H) first Linear's output, its ReLU
    float *h, *ln, *ln_mean, *ln_rstd;  // (B n_out, C), (B n_out, C), (B n_out), (B n_out)
    float* out;                    // (B, n_out, C) the result
    // backward scratch (with_backward only)
    float *dh, *da1, *dh1;         // (B n_out, C), (B n_out, H), (B n_out, H)
    float *dxin, *dcols;           // (B n_out, D_enc), conv_mlp: (B n_out, D_enc k)
} ProjectorActs;

Projector* projector_create(const ProjectorConfig* c, Backend* be, Error* e);
void projector_free(Projector* p);
void projector_bind(Projector* p, float* params, float* grads);   // grads NULL = frozen
// Both after projector_bind: they write the bound parameter buffer. load copies by name (param_table_load;
// tensors of the file that the table lacks are ignored).
void projector_init_random(Projector* p, uint64_t seed);
int projector_load(Projector* p, const TensorSet* set, const char* file, Error* e);

// n_in must pass projector_check_input (an internal error otherwise).
ProjectorActs* projector_acts_create(const Projector* p, int B, int n_in, int with_backward);
void projector_acts_free(const Projector* p, ProjectorActs* a);

// input (B, n_in, D_enc) -> a->out (B, n_out, C).
void projector_forward(Projector* p, ProjectorActs* a, const float* input);
// dout (B, n_out, C): weight grads += (none when frozen); dinput (B, n_in, D_enc) written (=) when not NULL.
void projector_backward(Projector* p, ProjectorActs* a, const float* dout, float* dinput);
