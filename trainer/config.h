// config.h — the run configuration: YAML file (libyaml) + `--set key=value` overrides, table-driven.
//
// Contract: every key has a dotted name (`train.lr`), a type, a default and a help line, in one table
// (config.c). A file may inherit from another with `extends:`. Loading rejects unknown keys and bad values
// with "FILE:LINE: key 'x.y': what is wrong (what to do)". config_to_yaml writes the resolved configuration,
// which config_load_string reads back to the identical Config (stored in run directories and checkpoints
// so resume uses the same settings).
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "kernels/common.h"

enum { CONFIG_PATH_MAX = 1024 };

// Encoders, projector and adapter of the multimodal model (ModRWKV). A random encoder (init "") is built at
// the sizes below; a loaded one (init = HF safetensors or a modrwkv checkpoint) must have those sizes too.
typedef struct VisionConfig {
    char kind[16];               // none | siglip | clip
    char init[CONFIG_PATH_MAX];  // "" = random init; path to HF safetensors or a modrwkv checkpoint
    int image_size, patch;       // 384, 16 (SigLIP2-base) -> (image_size / patch)^2 patch tokens
    int width, layers, heads, mlp;  // 768, 12, 12, 3072
    int hidden_layer;            // -1: last_hidden_state; k >= 0: hidden_states[k]; -2: the one before the last
    int keep_cls;                // CLIP: keep the CLS token (577 tokens)
} VisionConfig;

typedef struct AudioConfig {
    char kind[16];               // none | whisper
    char init[CONFIG_PATH_MAX];
    int n_mels;                  // 80 (128 for large-v3)
    int width, layers, heads, mlp;
    char length_mode[16];        // truncate (run on the real length) | pad30 (Whisper's 30 s, then cut)
} AudioConfig;

typedef struct TimeSeriesConfig {
    char kind[16];               // none | wavenet
    char init[CONFIG_PATH_MAX];
    int channels, width, layers, skip, out_dim, patch;
} TimeSeriesConfig;

typedef struct ProjectorYConfig {
    char kind[16];               // linear | mlp | conv_mlp | pool_mlp
    int ratio;                   // MLP hidden = ratio x n_embd (2, 4, 8)
    int conv_kernel, conv_stride;// conv_mlp: (3,2) (4,3) (5,4)
    int pool;                    // pool_mlp: average over this many tokens
    char init[CONFIG_PATH_MAX];  // "" = random; a modrwkv checkpoint (stage 1) to take the projectors from
} ProjectorYConfig;

typedef struct AdapterYConfig {
    char kind[16];               // none | bone | bat | lora
    int r;                       // 64
    float alpha;                 // LoRA: scale alpha / r
    char targets[128];           // all | comma list of att.receptance,att.key,att.value,att.output,ffn.key,ffn.value
} AdapterYConfig;

typedef struct ModelConfig {
    char init[CONFIG_PATH_MAX];  // "official" | "random" | path to a .pth / .safetensors to start from
    int n_layer;                 // 6
    int n_embd;                  // 256 (multiple of head_size)
    int vocab_size;              // 0 = from the tokenizer
    int head_size;               // 64
    int lora_decay, lora_a, lora_value, lora_gate;  // LoRA ranks; 0 = official formula
    VisionConfig vision;         // model.vision.*: image encoder (kind none = no images)
    AudioConfig audio;           // model.audio.*: audio encoder
    TimeSeriesConfig ts;         // model.ts.*: time-series encoder
    ProjectorYConfig projector;  // model.projector.*: one projector design for every enabled modality
    AdapterYConfig adapter;      // model.adapter.*: PEFT adapter on the backbone (kind none = full training)
} ModelConfig;

typedef struct DataConfig {
    char train[CONFIG_PATH_MAX];   // training data: .txt, .jsonl, binidx prefix, or a shard directory
    char val[CONFIG_PATH_MAX];     // optional validation data ("" = hold out val_fraction of train)
    char format[16];               // auto | text | jsonl | binidx | shards
    char jsonl_key[64];            // field of each JSONL line holding the text ("text")
    float val_fraction;            // 0.05
    char tokenizer[CONFIG_PATH_MAX]; // bytes | world | path to a vocab file
} DataConfig;

typedef struct TrainConfig {
    uint64_t seed;          // 1
    int ctx_len;            // 256
    int micro_batch;        // 4 sequences per micro-step
    int grad_accum;         // 1 micro-steps per optimizer step
    int max_steps;          // 200 optimizer steps
    float lr;               // 6e-4 peak learning rate
    float lr_final;         // 6e-5
    int warmup_steps;       // 10
    char schedule[16];      // cosine | wsd | constant
    float wsd_decay_frac;   // 0.2: fraction of steps spent decaying at the end (wsd)
    float beta1, beta2;     // 0.9, 0.99
    float adam_eps;         // 1e-18
    float weight_decay;     // 0.001
    float grad_clip;        // 1.0 (0 = off)
    int l2wrap;             // 1 (RWKV's L2Wrap logit regulariser)
    int eval_every;         // 50 steps (0 = never)
    int eval_batches;       // 8
    int save_every;         // 100 steps (0 = only at the end)
    int keep_checkpoints;   // 2 newest kept
    int log_every;          // 1
    int threads;            // 0 = all cores
    int stage;              // 0: text/backbone; 1: projector only; 2: projector + backbone (or its adapter)
    char trainable[128];    // "" = the stage's default; else comma list of backbone,adapter,projector,vision,audio,ts
} TrainConfig;

typedef struct ParallelConfig {
    int tp;                 // tensor-parallel ranks per model replica (1: none)
    int dp;                 // 0: data-parallel replicas = ranks / tp
    int zero;               // 0: gradient all-reduce; 1: ZeRO-1 (sharded AdamW state)
    int timeout_s;          // 300: a collective waiting longer aborts the job naming the missing rank
    int sharded_checkpoints;  // 1: every rank writes its share (trainer/checkpoint_sharded.h); 0: rank 0 one file
} ParallelConfig;

typedef struct Config {
    char run_dir[CONFIG_PATH_MAX];  // "runs/default"
    ModelConfig model;
    DataConfig data;
    TrainConfig train;
    ParallelConfig parallel;
} Config;

void config_defaults(Config* c);
// Reads a YAML file on top of the current values. A top-level `extends: base.yaml` (a path relative to the
// including file) loads that file first; chains are followed (16 files at most) and a cycle is an error
// listing the files. Returns 0 or -1 with e naming file:line and key (in the file where the error is);
// on failure c is unchanged.
int config_load(Config* c, const char* path, Error* e);
// Same, from YAML text; `name` is used in messages (and its directory resolves `extends:`).
int config_load_string(Config* c, const char* yaml, const char* name, Error* e);
// Applies one "key=value" override (value parsed as YAML scalar). Returns 0 or -1 naming the key.
int config_set(Config* c, const char* assignment, Error* e);
// Cross-field checks (n_embd % head_size, ctx_len > 0, known schedule ...). Returns 0 or -1.
int config_validate(const Config* c, Error* e);
// The resolved configuration as YAML text (malloc'ed).
char* config_to_yaml(const Config* c);
// Prints every key with its type, default and help (for `modrwkv train --help`).
void config_print_keys(FILE* f);
