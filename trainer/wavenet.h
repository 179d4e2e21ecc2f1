// wavenet.h — the WaveNet-style time-series encoder of ModRWKV (trained from scratch; paper §3.1, §4.1):
// causal dilated convolutions with gated activations and skip connections, then patch averaging.
//
// Contract (module contract of the multimodal model: parameters in a ParamTable, memory owned by the caller):
// - Input (B, T, Cin) float, time-major (channels last). Output (B, T / patch, D_out).
// - in:      h_0 = x Win^T + bin                                  1x1 conv Cin -> R
// - layer l, dilation d = 2^(l mod dilation_cycle), kernel 2, causal (left pad d, no right pad):
//            z = Wd * [h_l(t - d), h_l(t)] + bd                   (2R): a = z[:R], b = z[R:] (torch.chunk order)
//            g = tanh(a) * sigmoid(b)                             (R)
//            h_{l+1} = h_l + (g Wres^T + bres)                    residual 1x1 conv R -> R
//            skip   += g Wskip^T + bskip                          skip 1x1 conv R -> S, summed over layers
// - out:     y = relu(skip) Wout^T + bout                         1x1 conv S -> D_out
//            token n = mean of y over steps [n patch, (n + 1) patch); the last T mod patch steps are dropped.
//   So token n depends only on inputs at steps < (n + 1) patch (causality), with a receptive field of
//   wavenet_receptive_field steps before each step.
// - The last layer's residual conv feeds nothing (as in WaveNet): its tensors exist (uniform names) but are
//   marked `unused` in the table and receive zero gradient; the forward skips computing h_L.
// - Tensor names (Conv1d layout (out, in, k)): ts_encoder.input.{weight (R, Cin, 1), bias (R)},
//   ts_encoder.layers.{l}.dilated.{weight (2R, R, 2), bias (2R)}, ts_encoder.layers.{l}.res.{weight (R, R, 1),
//   bias (R)}, ts_encoder.layers.{l}.skip.{weight (S, R, 1), bias (S)}, ts_encoder.output.{weight (D_out, S, 1),
//   bias (D_out)}; in this buffer order.
// - Random init (wavenet_init_random): PyTorch's Conv1d default, i.e. kaiming_uniform(a = sqrt(5)) for weights
//   and the same bound for biases: every value ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in * k; drawn
//   from one trainer/rng.h stream seeded with `seed`, tensors in buffer order, values in row-major order.
// - All compute goes through be->k (gemm, im2col1d/col2im1d, tanh, sigmoid, relu, bias, avgpool1d).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "trainer/params.h"
#include "trainer/tensorset.h"

typedef struct WaveNetConfig {
    int in_channels;     // Cin: variables per time step (1 for a univariate series)
    int residual;        // R: residual channels
    int skip;            // S: skip channels
    int out_dim;         // D_out: output features per token (the projector's D_enc)
    int n_layers;        // L
    int dilation_cycle;  // dilation of layer l is 2^(l mod dilation_cycle), 1..16
    int patch;           // time steps averaged into one output token
} WaveNetConfig;

enum { WAVENET_KERNEL = 2, WAVENET_MAX_CYCLE = 16 };

typedef struct WaveNetLayer {
    float *dil_w, *dil_b;    // (2R, R, 2), (2R)
    float *res_w, *res_b;    // (R, R, 1), (R)
    float *skip_w, *skip_b;  // (S, R, 1), (S)
} WaveNetLayer;

typedef struct WaveNetParams {
    float *in_w, *in_b;      // (R, Cin, 1), (R)
    WaveNetLayer* layers;    // (L)
    float *out_w, *out_b;    // (D_out, S, 1), (D_out)
} WaveNetParams;

typedef struct WaveNet {
    WaveNetConfig cfg;
    Backend* be;
    ParamTable table;        // names, shapes and offsets of every tensor
    float* params_base;      // bound buffers (NULL until wavenet_bind)
    float* grads_base;       // NULL: frozen
    WaveNetParams p, g;      // views into params_base / grads_base (g's pointers NULL when frozen)
} WaveNet;

typedef struct WaveNetActs {
    int B, T, n_out, with_backward;
    float* memory;           // one arena for everything below
    float* input;            // (B, T, Cin) copy of the input (with_backward)
    float** h;               // (L) x (BT, R): residual stream entering layer l (ping-pong without backward)
    float **ta, **sb, **g;   // (L) x (BT, R): tanh(a), sigmoid(b), gated output (shared without backward)
    float *cols, *za, *zb;   // (BT, 2R), (BT, R), (BT, R) forward scratch
    float *skip, *relu;      // (BT, S) skip sum, relu(skip)
    float* y;                // (BT, D_out) before pooling
    float* out;              // (B, n_out, D_out) the result
    // backward scratch (with_backward only)
    float *dh, *dg, *dtmp, *dza, *dzb;   // (BT, R)
    float* dcols;                        // (BT, 2R)
    float *drelu, *dskip;                // (BT, S)
    float* dy;                           // (BT, D_out)
} WaveNetActs;

int wavenet_config_check(const WaveNetConfig* c, Error* e);
// Steps of history that one output step sees: 1 + sum over layers of the dilation.
int wavenet_receptive_field(const WaveNetConfig* c);
int wavenet_out_tokens(const WaveNetConfig* c, int n_in);   // n_in / patch (floor)
int wavenet_out_dim(const WaveNetConfig* c);                // D_out
// -1 with a message when a series of n_in steps is too short for one token (n_in < patch).
int wavenet_check_input(const WaveNetConfig* c, int n_in, Error* e);

WaveNet* wavenet_create(const WaveNetConfig* c, Backend* be, Error* e);
void wavenet_free(WaveNet* w);
// params (and grads unless NULL = frozen): w->table.n_params floats each, owned by the caller.
void wavenet_bind(WaveNet* w, float* params, float* grads);
// Both after wavenet_bind: they write the bound parameter buffer. load copies by name (param_table_load;
// tensors of the file that the table lacks are ignored).
void wavenet_init_random(WaveNet* w, uint64_t seed);
int wavenet_load(WaveNet* w, const TensorSet* set, const char* file, Error* e);

// n_in must pass wavenet_check_input (an internal error otherwise).
WaveNetActs* wavenet_acts_create(const WaveNet* w, int B, int n_in, int with_backward);
void wavenet_acts_free(const WaveNet* w, WaveNetActs* a);

// input (B, T, Cin) -> a->out (B, T / patch, D_out).
void wavenet_forward(WaveNet* w, WaveNetActs* a, const float* input);
// dout (B, n_out, D_out): weight grads += into the bound grads (none when frozen); dinput (B, T, Cin) written
// (=) when not NULL. Needs acts created with_backward and a forward on them.
void wavenet_backward(WaveNet* w, WaveNetActs* a, const float* dout, float* dinput);
