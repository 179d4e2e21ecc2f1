// checkpoint.h — model files in and out: official .pth, native safetensors checkpoints with the full
// training state, and the run directory's checkpoint list.
//
// Contract:
// - model_load_file reads a .pth (zip magic) or a .safetensors file and builds the model; tensors named
//   "optimizer.*" in a native checkpoint are training state, not weights, and are skipped.
// - checkpoint_save writes <path> atomically (temp + rename), so a crash never leaves a partial file:
//   weights under their official names (fp32), "optimizer.exp_avg.<name>", "optimizer.exp_avg_sq.<name>",
//   and "__metadata__" with the step, RNG, data-loader position, tokens seen, the resolved config and the
//   tokenizer. checkpoint_load restores all of it, so training resumes bit-for-bit on the CPU.
#pragma once
#include <stdint.h>

#include "trainer/optimizer.h"
#include "trainer/rng.h"
#include "trainer/rwkv7.h"
#include "trainer/tensorset.h"

typedef struct TrainState {
    int step;                  // optimizer steps completed
    Rng rng;                   // the run's RNG
    uint64_t loader_position;  // samples consumed by the training loader
    uint64_t tokens_seen;      // tokens trained on
    double elapsed_s;          // training wall time so far
} TrainState;

// Reads every tensor of a .pth (zip magic) or .safetensors file, or of a sharded checkpoint directory (whole
// tensors assembled from its shards), into ts (initialised here).
int tensor_file_read(const char* path, TensorSet* ts, Error* e);

// Reads a model from a .pth or .safetensors file. If tokenizer is non-NULL it receives the tokenizer spec
// stored in a native checkpoint (malloc'ed) or NULL. Returns NULL with e filled.
RWKV7* model_load_file(const char* path, Backend* be, char** tokenizer, Error* e);

// Writes model (+ optimizer and state when non-NULL) to path atomically. store: DT_F32 or DT_BF16 weights.
// all: NULL, or the multimodal model's combined table (trainer/modrwkv.h): its entries after the backbone's
// m->n_tensors (adapters, encoders, projectors; offsets into the same buffer as m->params_memory and the
// optimizer's moments) are written under their names too.
int checkpoint_save(const char* path, const RWKV7* m, const ParamTable* all, const Optimizer* opt,
                    const TrainState* st, const char* config_yaml, const char* tokenizer, Error* e);
// Restores weights into the existing model m (shapes must match), the optimizer moments and the state.
// *config_yaml receives the stored resolved config (malloc'ed) if non-NULL.
int checkpoint_load(const char* path, RWKV7* m, const ParamTable* all, Optimizer* opt, TrainState* st,
                    char** config_yaml, Error* e);
// 1 for tensors of the multimodal modules (prefixes vision. audio. ts. vision_proj. audio_proj. ts_proj.;
// adapter suffixes .bone .bat .lora_A .lora_B): model_load_file leaves them to the multimodal model.
int checkpoint_is_module_tensor(const char* name);

// Exports the weights only, in the official layout: format "pth" or "safetensors", dtype DT_F32/DT_BF16.
int model_export(const char* path, const RWKV7* m, const char* format, DType dt, Error* e);

// Newest complete checkpoint "<run_dir>/checkpoints/step-XXXXXXXX.safetensors", or the sharded directory
// "step-XXXXXXXX.shards" holding its index (trainer/checkpoint_sharded.h), (malloc'ed), or NULL.
char* checkpoint_latest(const char* run_dir);
// Path of the single-file checkpoint / of the sharded checkpoint directory for a step (malloc'ed).
char* checkpoint_path(const char* run_dir, int step);
char* checkpoint_sharded_path(const char* run_dir, int step);
// The __metadata__ JSON text of a checkpoint of m with the training state (malloc'ed; st, config_yaml and
// tokenizer may be NULL): what checkpoint_save writes, and what a sharded checkpoint's index holds.
char* checkpoint_metadata(const RWKV7* m, const TrainState* st, const char* config_yaml, const char* tokenizer);
// Deletes all but the `keep` newest checkpoints of the run, single files and sharded directories alike
// (keep <= 0: keep all).
void checkpoint_prune(const char* run_dir, int keep);
