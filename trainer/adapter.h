// adapter.h — parameter-efficient adapters on the RWKV-7 backbone: Bone, Bat and LoRA.
//
// Maths (W (out, in) a frozen or trained nn.Linear weight, y = x W^T, x (N, in); r the block size / rank):
// - Bone (paper v4+ "Bone", DiSHA-Bone, MiSS default; RWKV-PEFT BoneLinear, mode "bone"): D (r, out), zero
//   init. y = x W^T + s D with s (N, r) the segmented sum s[n][k] = sum_j x[n][j r + k] (x zero-padded to a
//   multiple of r). Dense equivalent: dW[o][j r + k] = D[k][o] for every column block j. Computed in the
//   segmented-sum form (dW is never materialised): forward saves s; backward dD += s^T dy, ds = dy D^T,
//   dx[n][i] += ds[n][i % r]. Tensor "blocks.{l}.{target}.bone" (r, out).
// - Bat (paper v1-v3 "Bone", the weight-guided form): ONE orientation, RWKV-PEFT's BatLinear column-block
//   form (JL-er/RWKV-PEFT rwkvt/peft/rwkvLinear.py, B = zeros(in/r, r, r), W rearranged
//   '(a r1) (b r2) -> a b r1 r2' @ B + B): for row block a and column block b of W (r x r blocks),
//   W'_ab = W_ab + W_ab B_b + B_b, y = x W'^T. (PEFT's row-block form B (out/r, r, r) is NOT this one;
//   checkpoints are not interchangeable.) dW = W' - W is materialised per step into scratch as
//   dW[:, block b] = (E + W[:, block b]) B_b with E (out, r) the stacked identity; backward with
//   G = dy^T x (out, in): dB_b += (E + W_b)^T G_b, and when the base weight is trained dW_b += G_b B_b^T
//   (on top of the plain G that rwkv7.c adds). Requires in % r == 0 and out % r == 0. Zero init. dW costs
//   out*in*r multiply-adds per linear and call (also per token in RNN mode): merge before generating.
//   Tensor "blocks.{l}.{target}.bat" (in/r, r, r).
// - LoRA (PEFT / RWKV-PEFT LoraLinear): A (r, in), B (out, r), scale = alpha / r,
//   y = x W^T + scale (x A^T) B^T. Init: A kaiming-uniform(a = sqrt 5), i.e. U(-1/sqrt(in), 1/sqrt(in)),
//   B zero. Tensors "blocks.{l}.{target}.lora_A" (r, in), "blocks.{l}.{target}.lora_B" (out, r).
// Targets (RWKV-PEFT's default: all six dense projections of RWKV-7): att.receptance, att.key, att.value,
// att.output (C -> C), ffn.key (C -> F), ffn.value (F -> C). No dropout.
//
// Tensor parallelism (adapter_create_tp with P > 1 slices of the backbone, trainer/rwkv7.h): an adapter shards
// with the linear it adapts. Column-parallel targets (att.receptance/key/value, ffn.key: W's rows split) hold
// their slice of Bone D (columns) and LoRA B (rows); LoRA A is replicated with partial gradients. Row-parallel
// targets (att.output, ffn.value: W's columns split) hold their slice of LoRA A (columns); Bone D and LoRA B are
// replicated with partial gradients (the adapter's term joins the linear's partial product, which the
// backbone sums over the group). Bone on a row-parallel target needs the slice width to be a multiple of r;
// Bat is not supported with P > 1. Specs carry tp_dim / tp_partial (params.h).
// Contract (the module contract of the multimodal model, trainer/params.h):
// - The adapter owns no parameter memory: adapter_create builds a->table; adapter_bind points it at caller
//   memory (grads NULL = frozen adapter: no adapter gradients, activation gradients still flow).
// - rwkv7.c calls adapter_forward / adapter_backward inside the six adapted linears when m->adapter is set.
//   Their activation memory (Bone: s (N, r) per layer and target; LoRA: x A^T (N, r) per layer and target;
//   Bat: the materialised dW and G scratch) lives in the RWKV7Acts arena: adapter_mem_floats floats for
//   N = B*T tokens, laid out here. All compute goes through be->k.
// - Adapter files (adapter_store / adapter_load) hold only the adapter tensors, under the names above, and
//   the configuration as "__metadata__" keys (format "modrwkv-adapter", kind, r, alpha, targets, n_layer,
//   n_embd, dim_ffn), so a file is self-describing (adapter_config_from_tensors).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "trainer/params.h"
#include "trainer/rwkv7.h"
#include "trainer/tensorset.h"

typedef enum { ADAPTER_NONE = 0, ADAPTER_BONE, ADAPTER_BAT, ADAPTER_LORA } AdapterKind;

// The six adapted linears of a block, in table order.
typedef enum {
    ADAPT_ATT_RECEPTANCE = 0,  // att.receptance  C -> C
    ADAPT_ATT_KEY,             // att.key         C -> C
    ADAPT_ATT_VALUE,           // att.value       C -> C
    ADAPT_ATT_OUTPUT,          // att.output      C -> C
    ADAPT_FFN_KEY,             // ffn.key         C -> F
    ADAPT_FFN_VALUE,           // ffn.value       F -> C
    ADAPTER_N_TARGETS
} AdapterTarget;

enum { ADAPTER_TARGETS_ALL = (1u << ADAPTER_N_TARGETS) - 1 };

typedef struct AdapterConfig {
    AdapterKind kind;
    int r;             // Bone/Bat block size, LoRA rank (published default 64)
    float alpha;       // LoRA only: scale = alpha / r (must be > 0)
    unsigned targets;  // bitmask of 1u << AdapterTarget (ADAPTER_TARGETS_ALL: RWKV-PEFT's default)
} AdapterConfig;

typedef struct AdapterSlot {      // views of one adapted linear (layer l, target t)
    float *w, *w2;                // parameters: bone D / bat B / lora A; lora B (else NULL)
    float *g, *g2;                // gradients (NULL when frozen)
} AdapterSlot;

typedef struct Adapter {
    AdapterConfig cfg;
    RWKV7Config model;            // backbone sizes the adapter was built for
    Backend* be;
    ParamTable table;             // names and shapes, in buffer order (layer, then target)
    float *params, *grads;        // bound caller memory (grads NULL = frozen)
    AdapterSlot* slots;           // (n_layer, ADAPTER_N_TARGETS); unused targets stay NULL
    int n_targets;                // enabled targets per layer
    int slot_index[ADAPTER_N_TARGETS];  // target -> index among the enabled ones (-1: not adapted)
    float* eye;                   // (eye_rows, r) stacked identity E[o][k] = (o % r == k), be memory, owned
    int eye_rows;
    int tp_size;                  // tensor-parallel slices of the adapted linears (1: none)
} Adapter;

// Names: kind "none" "bone" "bat" "lora"; targets as in the table ("att.key").
const char* adapter_kind_name(AdapterKind k);
const char* adapter_target_name(AdapterTarget t);
// "bone" -> ADAPTER_BONE ...; -1 with e naming `what` (the config key or file) on an unknown name.
int adapter_parse_kind(const char* s, AdapterKind* out, const char* what, Error* e);
// "all" or a comma list "att.key,ffn.value" (spaces allowed) -> bitmask; -1 on an unknown or empty list.
int adapter_parse_targets(const char* s, unsigned* out, const char* what, Error* e);
// "all" or the comma list of the mask, into buf.
const char* adapter_targets_str(unsigned targets, char* buf, size_t len);

// kind NONE, r 64, alpha 64 (LoRA scale 1), all six targets.
AdapterConfig adapter_config_default(void);
// -1 with a one-line message on bad sizes (r < 1 or r > n_embd, no targets, LoRA alpha <= 0, Bat with a
// dimension not divisible by r).
int adapter_config_check(const AdapterConfig* c, const RWKV7Config* model, Error* e);
// Parameters of the adapter: per layer and target, bone r*out, bat in*r, lora r*(in+out).
size_t adapter_param_count(const AdapterConfig* c, const RWKV7Config* model);

// Builds the table (no parameters allocated). Returns NULL with e filled on a bad config (kind NONE too).
Adapter* adapter_create(const AdapterConfig* c, const RWKV7Config* model, Backend* be, Error* e);
// The same for one rank of a backbone split over tp_size tensor-parallel ranks (see above); NULL with e filled
// when the kind or r cannot be split that way.
Adapter* adapter_create_tp(const AdapterConfig* c, const RWKV7Config* model, int tp_size, Backend* be, Error* e);
void adapter_free(Adapter* a);
// Views into caller memory of a->table.n_params floats; grads NULL = frozen.
void adapter_bind(Adapter* a, float* params, float* grads);
// The published initialisation: Bone D and Bat B zero; LoRA B zero and A kaiming-uniform(a = sqrt 5),
// U(-1/sqrt(in), 1/sqrt(in)) drawn in table order from trainer/rng.h seeded with seed.
void adapter_init_random(Adapter* a, uint64_t seed);

// ---------------------------------------------------------------------------------------------------- passes
// Floats of activation memory for N tokens (with_backward: saved tensors of every layer and the backward
// scratch; else one reusable scratch).
size_t adapter_mem_floats(const Adapter* a, int N, int with_backward);
// Adapted linear of (layer, t): y (N, out) += the adapter's term for x (N, in); W (out, in) is the base
// weight (Bat reads it). Nothing when t is not adapted.
void adapter_forward(const Adapter* a, float* mem, int N, int with_backward, int layer, AdapterTarget t, float* y,
                     const float* x, const float* W);
// After adapter_forward on the same mem: dx (N, in) += the adapter's term (the base term dy W is the
// caller's), adapter gradients += (unless frozen), and for Bat dW (out, in) += G_b B_b^T when dW != NULL.
void adapter_backward(const Adapter* a, float* mem, int N, int layer, AdapterTarget t, float* dx, float* dW,
                      const float* dy, const float* x, const float* W);

// ---------------------------------------------------------------------------------------------------- merge, files
// W += dW for every adapted linear of m (exact up to fp32 rounding); the caller then detaches the adapter
// (m->adapter = NULL) and re-creates its acts. -1 if m's sizes are not the adapter's.
int adapter_merge(const Adapter* a, RWKV7* m, Error* e);
// Appends the adapter tensors (fp32) to out and sets out->metadata to the configuration (replacing any).
void adapter_store(const Adapter* a, TensorSet* out);
// Reads the configuration from an adapter file's metadata; -1 naming the file and key when absent/bad.
int adapter_config_from_tensors(const TensorSet* set, const char* file, AdapterConfig* out, Error* e);
// Copies the tensors of an adapter file into the bound parameters. The file's metadata must describe
// this adapter (kind, r, alpha, targets, model sizes) and every tensor must be present with its shape;
// otherwise -1 with a message naming the file and the key or tensor (and the expected shape).
int adapter_load(Adapter* a, const TensorSet* set, const char* file, Error* e);
