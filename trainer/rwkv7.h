// rwkv7.h — the RWKV-7 (x070 "Goose") language model: parameters under their official names, forward and
// backward in parallel (training) mode, RNN mode through carried state, on any kernels/ backend.
//
// Contract:
// - One parameter buffer, one gradient buffer (same layout), structs of named views into them (llm.c
//   style). `rwkv7_tensor_specs` lists every tensor in buffer order with its official name and shape.
// - rwkv7_forward computes logits (B, T, V) for tokens (B, T); with a state it continues from it and
//   leaves the state after the last token in it (RNN mode = T == 1 calls; state passing = any T).
// - rwkv7_backward (after rwkv7_forward on the same acts, and the loss gradient written into
//   acts->logits by the cross-entropy op) ACCUMULATES parameter gradients into grads.
// - The maths is reference/rwkv7.md §2-§3 exactly; block-0 att.v0/v1/v2 exist (as in RWKV-LM) but are
//   unused; `has_block0_vres` records whether a loaded checkpoint had them, so export keeps its layout.
// - Composition hooks for the multimodal model (trainer/modrwkv.c):
//   * rwkv7_rebase moves the parameters into caller memory (one buffer for all modules); the model then
//     no longer owns them.
//   * A NULL view in the gradient ModelParams given to rwkv7_backward means "frozen": that tensor's weight
//     gradient is not computed; activation gradients still flow (rwkv7_point_grads builds such views).
//   * The forward splits into rwkv7_embed (tokens -> acts->x0) and rwkv7_forward_embedded (x0 -> logits),
//     so the caller can overwrite rows of x0 (projected image/audio features) in between; the backward
//     splits into rwkv7_backward_to_x0 (-> acts->dx0) and rwkv7_embed_backward (dx0 -> embedding table).
//   * Tensor parallelism (rwkv7_create_tp, Megatron-style; DESIGN.md "Parallelism"): a model created with a
//     tensor-parallel group of tp ranks holds rank tp_rank's slice of the heads of every TimeMix (r/k/v rows,
//     decay/a/value/gate LoRA second matrices, w0/a0/v0/k_k/k_a/r_k/ln_x; output columns), of the ChannelMix
//     hidden units (key rows, value columns) and of the vocabulary (emb and head rows); norms, token-shift
//     mixes and the LoRA first matrices are replicated. The forward sums the TimeMix output, ChannelMix value
//     and embedding over the group; the backward sums the LayerNorm-input gradients (the entries of the
//     parallel regions) and the head's input gradient; the loss is the vocabulary-parallel cross-entropy
//     (logits never gathered). Replicated tensors with tp_partial set (the mixes, the LoRA first matrices)
//     get partial gradients that the caller sums over the group (sharding/tensor_parallel.h). Specs carry
//     tp_dim/tp_partial; the residual stream (B, T, C) is full and identical on every rank. With tp = 1 the
//     model is the plain one, bit for bit. An attached adapter must be built for the same split
//     (adapter_create_tp): its term joins each linear's (partial) product.
//   * m->adapter (trainer/adapter.h, not owned, NULL = none) is applied inside the six adapted linears
//     (att.receptance/key/value/output, ffn.key/value) in forward and backward, in every mode; its
//     activation memory lives in the acts arena, so attach the adapter BEFORE rwkv7_acts_create.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "trainer/params.h"

typedef struct RWKV7Config {
    int n_layer;     // L
    int n_embd;      // C
    int vocab_size;  // V
    int head_size;   // N (64 for official models); H = C / N heads
    int dim_ffn;     // F = 4 C
    int d_decay, d_a, d_value, d_gate;  // LoRA ranks Dw, Da, Dv, Dg
} RWKV7Config;

// Official LoRA rank formulas (current RWKV-LM train_temp, Python round-half-even), for a given C.
void rwkv7_default_lora(RWKV7Config* cfg);

typedef struct BlockParams {
    float *ln1_w, *ln1_b;            // (C) pre-LN of TimeMix
    float *ln2_w, *ln2_b;            // (C) pre-LN of ChannelMix
    float *x_r, *x_w, *x_k, *x_v, *x_a, *x_g;  // (1, 1, C) each, contiguous: the (6, C) token-shift mix
    float *w0, *w1, *w2;             // (1, 1, C), (C, Dw), (Dw, C) decay
    float *a0, *a1, *a2;             // (1, 1, C), (C, Da), (Da, C) in-context learning rate
    float *v0, *v1, *v2;             // (1, 1, C), (C, Dv), (Dv, C) value residual (unused in block 0)
    float *g1, *g2;                  // (C, Dg), (Dg, C) output gate
    float *k_k, *k_a;                // (1, 1, C)
    float *r_k;                      // (H, N) bonus
    float *Wr, *Wk, *Wv, *Wo;        // (C, C) receptance, key, value, output [out, in]
    float *lnx_w, *lnx_b;            // (C) GroupNorm(H) of the WKV output
    float *ffn_x_k;                  // (1, 1, C)
    float *ffn_key;                  // (F, C)
    float *ffn_value;                // (C, F)
} BlockParams;

typedef struct ModelParams {
    float* emb;                      // (V, C)
    float *ln0_w, *ln0_b;            // (C) block 0 only
    float *ln_out_w, *ln_out_b;      // (C)
    float* head;                     // (V, C)
    BlockParams* blocks;             // (L)
} ModelParams;

enum { RWKV7_NAME_MAX = PARAM_NAME_MAX };   // TensorSpec is trainer/params.h

typedef struct Adapter Adapter;              // trainer/adapter.h
typedef struct Comm Comm;                    // sharding/comm.h

typedef struct RWKV7 {
    RWKV7Config cfg;
    Backend* be;
    TensorSpec* specs;       // (n_tensors) in buffer order
    int n_tensors;
    size_t n_params;         // floats in the parameter buffer
    float* params_memory;    // (n_params)
    int owns_params;         // 1: params_memory was allocated by rwkv7_create; 0 after rwkv7_rebase
    ModelParams params;      // views into params_memory
    Adapter* adapter;        // applied inside the six adapted linears; not owned; NULL = none
    int has_block0_vres;     // checkpoint layout: block-0 att.v0/v1/v2 present
    int* file_order;         // spec indices in the order of the file the model was loaded from (NULL: fresh
                             // model, written in RWKV-LM module order); keeps export -> import bit-exact
    int n_file_order;
    // tensor parallelism (see the contract): all of the model when tp_size is 1
    Comm* tp;                // the tensor-parallel group (not owned); NULL when tp_size is 1
    int tp_size, tp_rank;
    int c_att;               // Ca = C / tp_size TimeMix channels of this rank
    int n_head_local;        // Ha = H / tp_size heads
    int f_local;             // F / tp_size ChannelMix hidden units
    int v_local, v_begin;    // V / tp_size vocabulary rows, starting at row v_begin
} RWKV7;

// Creates a model with zero parameters (buffers allocated on be). Returns NULL with e filled on bad sizes.
RWKV7* rwkv7_create(const RWKV7Config* cfg, Backend* be, Error* e);
// The same, holding this rank's slice for tensor parallelism over tp (NULL or a group of one rank: the whole
// model). The heads, F and V must divide by the group size (else NULL with e saying what to change).
RWKV7* rwkv7_create_tp(const RWKV7Config* cfg, Backend* be, Comm* tp, Error* e);
void rwkv7_free(RWKV7* m);   // frees the parameters only if the model owns them
// Points a ModelParams' views into any buffer with the parameter layout (the gradient buffer, Adam moments).
// p->blocks must hold n_layer entries.
void rwkv7_point(const RWKV7* m, ModelParams* p, float* base);
// Gradient views with frozen tensors: tensor i (spec order) gets base + offset when base != NULL and
// (trained == NULL or trained[i] != 0), else NULL (frozen: rwkv7_backward computes no gradient for it and
// never writes its part of the buffer). base NULL freezes everything.
void rwkv7_point_grads(const RWKV7* m, ModelParams* g, float* base, const uint8_t* trained);
// Copies the parameters into base (caller memory of m->n_params floats, allocated on m->be), frees the
// model's own buffer (if it owns one) and points every view at base. The model no longer owns its
// parameters: rwkv7_free leaves base alone.
void rwkv7_rebase(RWKV7* m, float* base);
const TensorSpec* rwkv7_find_spec(const RWKV7* m, const char* name);

// FLOPs of one forward+backward token (6 x matmul params + WKV work), for throughput reports.
double rwkv7_flops_per_token(const RWKV7Config* cfg, int T);

// ---------------------------------------------------------------------------------------------------- activations
typedef struct LayerActs {
    float *ln1, *ln1_mean, *ln1_rstd;   // (BT, C), (BT), (BT)
    float* xm;                          // (6, BT, C) shifted mixes r, w, k, v, a, g
    float *r, *k0, *vp;                 // (BT, C) projections
    float *hw, *dd, *wdec;              // (BT, Dw) tanh(xw w1); (BT, C) decay pre-activation, decay
    float *hv, *gam, *v;                // (BT, Dv) xv v1; (BT, C) residual gate; (BT, C) mixed v
    float *ha, *a;                      // (BT, Da) xa a1; (BT, C) sigmoid gate
    float *sg, *g;                      // (BT, Dg) sigmoid(xg g1); (BT, C) gate
    float *kk, *kmod, *wa, *wb;         // (BT, C) key preparation and the WKV a/b inputs
    float *y, *ckpt;                    // (BT, C) WKV output; (B, H, ceil(T/16), N, N) states
    float *gn, *gn_mean, *gn_rstd;      // (BT, C), (BT, H), (BT, H)
    float* z;                           // (BT, C) gated output before Wo
    float* x_mid;                       // (BT, C) residual after TimeMix
    float *ln2, *ln2_mean, *ln2_rstd;   // (BT, C), (BT), (BT)
    float* xk;                          // (BT, C) ChannelMix shifted input
    float *p, *hr;                      // (BT, F) key pre-activation, relu^2
} LayerActs;

typedef struct RWKV7Acts {
    int B, T, with_backward;
    float* memory;                      // one arena for everything below
    size_t n_floats;
    int32_t* tokens;                    // (B, T) copy of the inputs (embedding backward)
    float *x0, *ln0_mean, *ln0_rstd;    // (BT, C) embeddings; (BT) ln0 statistics
    float** res;                        // (L + 1) x (BT, C): residual stream entering block l; res[L] final
    LayerActs* layers;                  // (L)
    float *xf, *lnf_mean, *lnf_rstd;    // (BT, C) ln_out output; (BT) statistics
    float* logits;                      // (BT, V) logits (or (n_head_rows, V); V / tp columns of this rank's
                                        // vocabulary slice under tensor parallelism); dlogits after the loss
    float* losses;                      // (BT) (or (n_head_rows))
    // The head runs on every row (n_head_rows < 0, the default) or only on the rows head_rows[0 .. n) (the
    // trained targets of a chat batch: most rows of a multimodal sample are masked): xg (n, C) gathers them.
    int32_t* head_rows;                 // (BT) host
    int32_t* head_targets;              // (BT) host: the targets of those rows
    int32_t *tp_rows, *tp_ids;          // (BT) host, tp > 1: rows whose token is in this rank's vocabulary
    int n_tp_rows;                      // slice, and the token's local row
    float* tp_buf;                      // (BT, C) tp > 1: partial sums before their all-reduce
    int n_head_rows;
    int logit_rows;                     // rows of logits/losses held (BT, or fewer: rwkv7_acts_create_rows)
    float* xg;                          // (BT, C)
    // adapter activations (saved inputs of its backward, scratch): adapter_mem_floats(adapter, BT,
    // with_backward) floats laid out by trainer/adapter.c; NULL without an adapter
    float* adapter_mem;
    const Adapter* adapter_for;         // the adapter the memory was sized for (must be m->adapter)
    // backward scratch, shared by all layers (only with_backward)
    float* dx0;                         // (BT, C) dL/dx0 left by rwkv7_backward_to_x0
    float* dmu_sink;                    // (6, C) token-shift mix gradient of a frozen mix (discarded)
    float *dres, *dvfirst, *dln, *dxm, *dA, *dB, *dC, *dD, *dE, *dF, *dG, *dH, *dI, *dJ, *dlora, *dffn;
} RWKV7Acts;

// Sized for m->adapter as attached now (re-create the acts after attaching or detaching an adapter).
RWKV7Acts* rwkv7_acts_create(const RWKV7* m, int B, int T, int with_backward);
// The same with logits for at most logit_rows rows (a prompt's prefill needs 1: the (T, V) logits of a long
// prompt would otherwise dominate its memory); the head must then be restricted (rwkv7_set_head_rows*).
RWKV7Acts* rwkv7_acts_create_rows(const RWKV7* m, int B, int T, int with_backward, int logit_rows);
void rwkv7_acts_free(const RWKV7* m, RWKV7Acts* a);

// ---------------------------------------------------------------------------------------------------- state
typedef struct RWKV7State {
    int B;
    float* att_x_prev;   // (L, B, C) last ln1 output
    float* att_kv;       // (L, B, H, N, N) WKV state, fp32
    float* ffn_x_prev;   // (L, B, C) last ln2 output
} RWKV7State;

RWKV7State* rwkv7_state_create(const RWKV7* m, int B);   // zero state
void rwkv7_state_reset(const RWKV7* m, RWKV7State* s);
void rwkv7_state_free(const RWKV7* m, RWKV7State* s);

// ---------------------------------------------------------------------------------------------------- passes
// tokens (B, T) -> acts->logits (B, T, V). state: NULL (zero state, training) or carried in/out.
// = rwkv7_embed + rwkv7_forward_embedded.
void rwkv7_forward(RWKV7* m, RWKV7Acts* acts, const int32_t* tokens, RWKV7State* state);
// Copies tokens (B, T) into acts->tokens and fills acts->x0 (B*T, C) with their embeddings.
void rwkv7_embed(RWKV7* m, RWKV7Acts* acts, const int32_t* tokens);
// Everything after the embedding (ln0, blocks, ln_out, head), starting from acts->x0 (B*T, C) as the caller
// left it (rows may have been overwritten with projected features).
void rwkv7_forward_embedded(RWKV7* m, RWKV7Acts* acts, RWKV7State* state);
// Masked cross-entropy on acts->logits against targets (B, T) (< 0 = masked); returns the mean loss over
// the unmasked tokens (0 if none) and, if with_backward, overwrites acts->logits with
// dloss_scale / n_unmasked * dCE/dlogits (+ L2Wrap when l2wrap). *n_valid receives the count.
// Restricts the head (and the loss) to the rows whose targets are >= 0 (targets NULL: every row again). Call
// with the targets given to rwkv7_loss, before rwkv7_forward; logits then hold (n, V) rows in row order.
void rwkv7_set_head_rows(RWKV7Acts* acts, const int32_t* targets);
// Restricts the head to the given rows (e.g. the last prompt token before generation); no loss is defined.
void rwkv7_set_head_rows_list(RWKV7Acts* acts, const int32_t* rows, int n);
float rwkv7_loss(RWKV7* m, RWKV7Acts* acts, const int32_t* targets, float dloss_scale, int l2wrap, int* n_valid);
// Backward through everything after rwkv7_loss; grads (same layout as params) accumulate (+=); NULL views
// are frozen tensors. = rwkv7_backward_to_x0 + rwkv7_embed_backward.
void rwkv7_backward(RWKV7* m, RWKV7Acts* acts, const ModelParams* grads);
// The backward down to the embeddings: leaves dL/dx0 (B*T, C) in acts->dx0 (=); the embedding table's
// gradient is not touched. Adapter gradients accumulate into the adapter's bound gradients.
void rwkv7_backward_to_x0(RWKV7* m, RWKV7Acts* acts, const ModelParams* grads);
// grads->emb += the scatter of acts->dx0 over acts->tokens (nothing when grads->emb is NULL).
void rwkv7_embed_backward(RWKV7* m, RWKV7Acts* acts, const ModelParams* grads);
