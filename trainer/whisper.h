// whisper.h — the Whisper audio encoder (Radford et al. 2022; Hugging Face WhisperEncoder) as ModRWKV uses it,
// forward and backward, loading Hugging Face checkpoints by name.
//
// Contract:
// - Input: log-mel features (B, n_frames, n_mels), frame-major (trainer/logmel.c writes them). Output a->out:
//   (B, T', D) with T' = (n_frames - 1) / 2 + 1 (conv2 has stride 2).
// - conv1 = Conv1d(n_mels, D, 3, padding 1) + GELU(erf); conv2 = Conv1d(D, D, 3, stride 2, padding 1) + GELU(erf)
//   (im2col1d + GEMM; weights (D, Cin, 3)); + embed_positions rows [0, T'); the pre-LN encoder layers
//   (trainer/transformer.h, k_proj without bias, GELU erf); the final layer_norm.
// - Length modes. WHISPER_PAD30: the input is exactly 2 * max_positions frames (3000 = 30 s, the front end pads
//   the audio) and the encoder runs on all of them; the output is then truncated, as ModRWKV does
//   (sum(attention_mask) // 2 + 1), to n_valid[b] = min(real_frames[b] / 2 + 1, T') rows: rows past n_valid[b]
//   of a->out are zero and the backward ignores dout there. The caller sets a->real_frames[b] before the
//   forward (default n_frames). WHISPER_TRUNCATE: the input is the real frames only (1 <= n_frames <=
//   2 * max_positions), positions [0, T'), n_valid[b] = T'.
// - embed_positions is frozen as in HF (sinusoidal, requires_grad False): its TensorSpec is marked unused and
//   it never receives a gradient.
// - Tensor names: cfg.prefix + HF name ("model.encoder." by default, WhisperForConditionalGeneration;
//   "encoder." for WhisperModel; whisper_detect_prefix finds it in a checkpoint).
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

typedef enum { WHISPER_PAD30 = 0, WHISPER_TRUNCATE = 1 } WhisperLengthMode;
enum { WHISPER_PREFIX_MAX = 96 };

typedef struct WhisperConfig {
    int n_mels;          // 80 (large-v3: 128)
    int dim;             // D
    int n_layers;        // L
    int n_heads;         // H, D % H == 0
    int mlp_dim;         // F
    int max_positions;   // rows of embed_positions (1500); WHISPER_PAD30 input = 2 * max_positions frames
    float ln_eps;        // 1e-5
    int length_mode;     // WHISPER_PAD30 or WHISPER_TRUNCATE
    char prefix[WHISPER_PREFIX_MAX];   // tensor name prefix, "model.encoder." by default
    Comm* tp;            // tensor parallelism of the layers (trainer/transformer.h); NULL: none
} WhisperConfig;

// Published sizes (openai/whisper-small: D 768, 12 layers, 12 heads, MLP 3072, 80 mels; -medium: 1024, 24, 16,
// 4096, 80; -large-v3: 1280, 32, 20, 5120, 128 mels); max_positions 1500, eps 1e-5, WHISPER_PAD30,
// prefix "model.encoder.".
void whisper_config_small(WhisperConfig* c);
void whisper_config_medium(WhisperConfig* c);
void whisper_config_large_v3(WhisperConfig* c);
int whisper_config_check(const WhisperConfig* c, Error* e);
// Whether n_frames input frames are valid for the length mode (0, or -1 with a message saying what is expected).
int whisper_check_frames(const WhisperConfig* c, int n_frames, Error* e);
// T' for n_frames input frames, or -1 if whisper_check_frames rejects them.
int whisper_out_tokens(const WhisperConfig* c, int n_frames);
int whisper_out_dim(const WhisperConfig* c);
// Rows of the output that are kept for real_frames frames of real audio (see the length modes).
int whisper_valid_tokens(const WhisperConfig* c, int n_frames, int real_frames);
// The prefix under which set holds a Whisper encoder ("<prefix>conv1.weight" next to
// "<prefix>embed_positions.weight"), into prefix (len bytes); returns 0, or -1 if none (or several) is found.
int whisper_detect_prefix(const TensorSet* set, char* prefix, size_t len);

// Views of the tensors (all NULL for a NULL base).
typedef struct WhisperParams {
    float *conv1_w, *conv1_b;          // (D, n_mels, 3), (D)
    float *conv2_w, *conv2_b;          // (D, D, 3), (D)
    float* pos;                        // (max_positions, D) embed_positions (frozen)
    TransformerLayerParams* layers;    // (L)
    float *ln_w, *ln_b;                // (D) final layer_norm
} WhisperParams;

typedef struct Whisper {
    WhisperConfig cfg;
    Backend* be;
    ParamTable table;
    TransformerConfig tf;   // the layers' config
    float *params, *grads;  // the bound buffers (table.n_params floats each; grads NULL = frozen)
    WhisperParams p, g;     // views into them (g all NULL when frozen; g.pos always NULL)
} Whisper;

Whisper* whisper_create(const WhisperConfig* c, Backend* be, Error* e);
void whisper_bind(Whisper* w, float* params, float* grads);
// Random init (deterministic in seed): Linear and Conv weights N(0, std 1/sqrt(fan_in)), biases 0, LayerNorm
// weight 1 and bias 0; embed_positions = Whisper's sinusoids ([sin | cos] of position * 10000^(-i / (D/2 - 1))).
void whisper_init_random(Whisper* w, uint64_t seed);
// Copies every tensor of the table from set (by name, any float dtype); file names set in messages.
int whisper_load(Whisper* w, const TensorSet* set, const char* file, Error* e);
void whisper_free(Whisper* w);

typedef struct WhisperActs {
    int B, n_frames, n_out, with_backward;   // n_out = T'
    int* real_frames;               // (B) set by the caller in WHISPER_PAD30 mode (default n_frames)
    int* n_valid;                   // (B) output rows kept, set by the forward
    float* memory;                  // one arena (be->alloc) for every buffer below
    size_t n_floats;
    float* cols1;                   // (B, n_frames, n_mels * 3) conv1 im2col
    float *h1, *g1;                 // (B, n_frames, D) conv1 output before / after the GELU
    float* cols2;                   // (B, T', D * 3) conv2 im2col
    float* h2;                      // (B, T', D) conv2 output before the GELU
    TransformerStack stack;         // the L layers; its input is GELU(h2) + positions
    float* last;                    // (B, T', D) the stack's output (a buffer of the stack)
    float *ln_mean, *ln_rstd;       // (B * T')
    float* out;                     // (B, T', D)
    float *dres, *dh2, *dcols2;     // backward: (B, T', D), (B, T', D), (B, T', D * 3)
    float *dg1, *dh1, *dcols1;      // backward: (B, n_frames, D) x 2, (B, n_frames, n_mels * 3)
} WhisperActs;

// n_in = n_frames of the input; it must pass whisper_check_frames (an internal error otherwise).
WhisperActs* whisper_acts_create(const Whisper* w, int B, int n_in, int with_backward);
void whisper_acts_free(const Whisper* w, WhisperActs* a);
// mel (B, n_frames, n_mels) -> a->out (B, T', D), a->n_valid.
void whisper_forward(Whisper* w, WhisperActs* a, const float* mel);
// After whisper_forward on a (created with_backward): weight gradients += (skipped when frozen); dmel
// (B, n_frames, n_mels) written if not NULL. dout: (B, T', D); rows past n_valid[b] are ignored.
void whisper_backward(Whisper* w, WhisperActs* a, const float* dout, float* dmel);
