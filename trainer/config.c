// config.c — see config.h. One table (KEYS) describes every key: dotted name, type, field offset,
// default (as text, parsed by the same code that parses user values), range and help line.
//
// YAML files are read with libyaml's document API: nested mappings (`train:` / `  lr: 3e-4`) and flat
// dotted keys (`train.lr: 3e-4`) both address the key `train.lr`. Loading works on a copy of the
// Config and only commits it when the whole file is valid, so a failed load changes nothing.
// A top-level `extends: base.yaml` (relative to the including file) loads the base file first, then the
// including file's keys on top; chains are followed (at most EXTENDS_MAX_DEPTH files) and a cycle is an
// error listing the chain of files.
#include "trainer/config.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

typedef enum { KT_INT, KT_U64, KT_FLOAT, KT_BOOL, KT_STRING, KT_ENUM } KeyType;

typedef struct KeySpec {
    const char* key;      // dotted name
    KeyType type;
    size_t offset;        // into Config
    size_t size;          // of the field (string/enum capacity including the NUL)
    const char* def;      // default, as it would be written in YAML
    double min, max;      // numeric range, inclusive ...
    int max_open;         // ... except max when 1 (beta < 1)
    const char* choices;  // enum: "a|b|c"
    const char* help;
} KeySpec;

// Offset and size of a Config member, for the table below.
#define FIELD(m) offsetof(Config, m), sizeof(((Config*)0)->m)

static const double NO_MAX = 1e300;

// Keys sharing a prefix must be contiguous (config_to_yaml emits one section per prefix run).
static const KeySpec KEYS[] = {
    {"run_dir", KT_STRING, FIELD(run_dir), "runs/default", 0, 0, 0, NULL,
     "directory for checkpoints, logs and the resolved config"},

    {"model.init", KT_STRING, FIELD(model.init), "official", 0, 0, 0, NULL,
     "official (RWKV init) | random | path to a .pth/.safetensors to start from"},
    {"model.n_layer", KT_INT, FIELD(model.n_layer), "6", 1, 4096, 0, NULL, "number of blocks"},
    {"model.n_embd", KT_INT, FIELD(model.n_embd), "256", 1, 1 << 20, 0, NULL,
     "model width (a multiple of model.head_size)"},
    {"model.vocab_size", KT_INT, FIELD(model.vocab_size), "0", 0, 1 << 30, 0, NULL,
     "vocabulary size; 0 = from the tokenizer"},
    {"model.head_size", KT_INT, FIELD(model.head_size), "64", 1, 4096, 0, NULL, "channels per head (even)"},
    {"model.lora_decay", KT_INT, FIELD(model.lora_decay), "0", 0, 1 << 20, 0, NULL,
     "LoRA rank of the decay (w); 0 = official formula"},
    {"model.lora_a", KT_INT, FIELD(model.lora_a), "0", 0, 1 << 20, 0, NULL,
     "LoRA rank of the in-context learning rate (a); 0 = official formula"},
    {"model.lora_value", KT_INT, FIELD(model.lora_value), "0", 0, 1 << 20, 0, NULL,
     "LoRA rank of the value residual (v); 0 = official formula"},
    {"model.lora_gate", KT_INT, FIELD(model.lora_gate), "0", 0, 1 << 20, 0, NULL,
     "LoRA rank of the output gate (g); 0 = official formula"},

    {"model.vision.kind", KT_ENUM, FIELD(model.vision.kind), "none", 0, 0, 0, "none|siglip|clip",
     "image encoder: none, SigLIP/SigLIP2 (no CLS, gelu-tanh) or CLIP ViT (CLS, quick-gelu)"},
    {"model.vision.init", KT_STRING, FIELD(model.vision.init), "", 0, 0, 0, NULL,
     "\"\" = random init; path to Hugging Face safetensors (vision_model.*) or a modrwkv checkpoint"},
    {"model.vision.image_size", KT_INT, FIELD(model.vision.image_size), "384", 8, 8192, 0, NULL, "input pixels"},
    {"model.vision.patch", KT_INT, FIELD(model.vision.patch), "16", 1, 1024, 0, NULL, "patch size (divides image_size)"},
    {"model.vision.width", KT_INT, FIELD(model.vision.width), "768", 1, 1 << 16, 0, NULL, "hidden size"},
    {"model.vision.layers", KT_INT, FIELD(model.vision.layers), "12", 1, 1024, 0, NULL, "transformer layers"},
    {"model.vision.heads", KT_INT, FIELD(model.vision.heads), "12", 1, 1024, 0, NULL, "attention heads"},
    {"model.vision.mlp", KT_INT, FIELD(model.vision.mlp), "3072", 1, 1 << 20, 0, NULL, "MLP hidden size"},
    {"model.vision.hidden_layer", KT_INT, FIELD(model.vision.hidden_layer), "-1", -1024, 1024, 0, NULL,
     "-1: last_hidden_state; k >= 0: hidden_states[k]; -2: the layer before the last (LLaVA)"},
    {"model.vision.keep_cls", KT_BOOL, FIELD(model.vision.keep_cls), "true", 0, 0, 0, NULL, "CLIP: keep the CLS token"},
    {"model.audio.kind", KT_ENUM, FIELD(model.audio.kind), "none", 0, 0, 0, "none|whisper", "audio encoder"},
    {"model.audio.init", KT_STRING, FIELD(model.audio.init), "", 0, 0, 0, NULL,
     "\"\" = random init; path to Hugging Face Whisper safetensors or a modrwkv checkpoint"},
    {"model.audio.n_mels", KT_INT, FIELD(model.audio.n_mels), "80", 1, 512, 0, NULL, "log-mel bins (80, or 128)"},
    {"model.audio.width", KT_INT, FIELD(model.audio.width), "768", 1, 1 << 16, 0, NULL, "hidden size"},
    {"model.audio.layers", KT_INT, FIELD(model.audio.layers), "12", 1, 1024, 0, NULL, "transformer layers"},
    {"model.audio.heads", KT_INT, FIELD(model.audio.heads), "12", 1, 1024, 0, NULL, "attention heads"},
    {"model.audio.mlp", KT_INT, FIELD(model.audio.mlp), "3072", 1, 1 << 20, 0, NULL, "MLP hidden size"},
    {"model.audio.length_mode", KT_ENUM, FIELD(model.audio.length_mode), "truncate", 0, 0, 0, "truncate|pad30",
     "truncate: encode the real length; pad30: pad to 30 s as Whisper, then cut to the real length"},
    {"model.ts.kind", KT_ENUM, FIELD(model.ts.kind), "none", 0, 0, 0, "none|wavenet", "time-series encoder"},
    {"model.ts.init", KT_STRING, FIELD(model.ts.init), "", 0, 0, 0, NULL, "\"\" = random; a modrwkv checkpoint"},
    {"model.ts.channels", KT_INT, FIELD(model.ts.channels), "1", 1, 4096, 0, NULL, "input channels"},
    {"model.ts.width", KT_INT, FIELD(model.ts.width), "64", 1, 1 << 16, 0, NULL, "residual channels"},
    {"model.ts.layers", KT_INT, FIELD(model.ts.layers), "8", 1, 1024, 0, NULL, "dilated layers (dilation 2^l)"},
    {"model.ts.skip", KT_INT, FIELD(model.ts.skip), "64", 1, 1 << 16, 0, NULL, "skip channels"},
    {"model.ts.out_dim", KT_INT, FIELD(model.ts.out_dim), "256", 1, 1 << 16, 0, NULL, "output features"},
    {"model.ts.patch", KT_INT, FIELD(model.ts.patch), "16", 1, 1 << 16, 0, NULL, "time steps per output token"},
    {"model.projector.kind", KT_ENUM, FIELD(model.projector.kind), "mlp", 0, 0, 0, "linear|mlp|conv_mlp|pool_mlp",
     "encoder -> n_embd projector (mlp: Linear, ReLU, Linear + LayerNorm residual)"},
    {"model.projector.ratio", KT_INT, FIELD(model.projector.ratio), "4", 1, 64, 0, NULL,
     "MLP hidden size = ratio x n_embd"},
    {"model.projector.conv_kernel", KT_INT, FIELD(model.projector.conv_kernel), "3", 1, 1024, 0, NULL,
     "conv_mlp: kernel over the token axis"},
    {"model.projector.conv_stride", KT_INT, FIELD(model.projector.conv_stride), "2", 1, 1024, 0, NULL,
     "conv_mlp: stride (tokens out = (n - k) / s + 1)"},
    {"model.projector.pool", KT_INT, FIELD(model.projector.pool), "2", 1, 1024, 0, NULL,
     "pool_mlp: tokens averaged into one"},
    {"model.projector.init", KT_STRING, FIELD(model.projector.init), "", 0, 0, 0, NULL,
     "\"\" = random; a modrwkv checkpoint (e.g. stage 1's) whose projectors are carried over"},
    {"model.adapter.kind", KT_ENUM, FIELD(model.adapter.kind), "none", 0, 0, 0, "none|bone|bat|lora",
     "adapter on the backbone's dense layers (none: the backbone trains fully when trainable)"},
    {"model.adapter.r", KT_INT, FIELD(model.adapter.r), "64", 1, 1 << 16, 0, NULL, "Bone block size / LoRA rank"},
    {"model.adapter.alpha", KT_FLOAT, FIELD(model.adapter.alpha), "32", 0, NO_MAX, 0, NULL, "LoRA alpha (scale alpha/r)"},
    {"model.adapter.targets", KT_STRING, FIELD(model.adapter.targets), "all", 0, 0, 0, NULL,
     "all | comma list of att.receptance,att.key,att.value,att.output,ffn.key,ffn.value"},

    {"data.train", KT_STRING, FIELD(data.train), "", 0, 0, 0, NULL,
     "training data: .txt, .jsonl, binidx prefix (.bin/.idx), or an HDF5 shard directory (manifest.json)"},
    {"data.val", KT_STRING, FIELD(data.val), "", 0, 0, 0, NULL,
     "validation data; empty = hold out data.val_fraction of the training data"},
    {"data.format", KT_ENUM, FIELD(data.format), "auto", 0, 0, 0, "auto|text|jsonl|binidx|shards",
     "data format; auto = a directory with manifest.json is shards, else by extension (.jsonl, .idx+.bin, text)"},
    {"data.jsonl_key", KT_STRING, FIELD(data.jsonl_key), "text", 0, 0, 0, NULL,
     "field of each JSONL line that holds the document text"},
    {"data.val_fraction", KT_FLOAT, FIELD(data.val_fraction), "0.05", 0, 1, 1, NULL,
     "fraction of the training tokens held out for validation when data.val is empty"},
    {"data.tokenizer", KT_STRING, FIELD(data.tokenizer), "world", 0, 0, 0, NULL,
     "bytes | world | path to a World-style vocab file"},

    {"train.seed", KT_U64, FIELD(train.seed), "1", 0, 0, 0, NULL, "random seed (initialization)"},
    {"train.ctx_len", KT_INT, FIELD(train.ctx_len), "256", 1, 1 << 24, 0, NULL, "tokens per training sequence"},
    {"train.micro_batch", KT_INT, FIELD(train.micro_batch), "4", 1, 1 << 20, 0, NULL,
     "sequences per micro-step"},
    {"train.grad_accum", KT_INT, FIELD(train.grad_accum), "1", 1, 1 << 20, 0, NULL,
     "micro-steps per optimizer step"},
    {"train.max_steps", KT_INT, FIELD(train.max_steps), "200", 0, INT_MAX, 0, NULL, "optimizer steps to run"},
    {"train.lr", KT_FLOAT, FIELD(train.lr), "6e-4", 0, NO_MAX, 0, NULL, "peak learning rate"},
    {"train.lr_final", KT_FLOAT, FIELD(train.lr_final), "6e-5", 0, NO_MAX, 0, NULL,
     "learning rate at the last step"},
    {"train.warmup_steps", KT_INT, FIELD(train.warmup_steps), "10", 0, INT_MAX, 0, NULL,
     "steps of linear warmup"},
    {"train.schedule", KT_ENUM, FIELD(train.schedule), "cosine", 0, 0, 0, "cosine|wsd|constant",
     "learning-rate schedule after warmup"},
    {"train.wsd_decay_frac", KT_FLOAT, FIELD(train.wsd_decay_frac), "0.2", 0, 1, 0, NULL,
     "wsd: fraction of the steps spent decaying at the end"},
    {"train.beta1", KT_FLOAT, FIELD(train.beta1), "0.9", 0, 1, 1, NULL, "Adam beta1"},
    {"train.beta2", KT_FLOAT, FIELD(train.beta2), "0.99", 0, 1, 1, NULL, "Adam beta2"},
    {"train.adam_eps", KT_FLOAT, FIELD(train.adam_eps), "1e-18", 0, NO_MAX, 0, NULL, "Adam epsilon"},
    {"train.weight_decay", KT_FLOAT, FIELD(train.weight_decay), "0.001", 0, NO_MAX, 0, NULL,
     "decoupled weight decay (matrices only)"},
    {"train.grad_clip", KT_FLOAT, FIELD(train.grad_clip), "1.0", 0, NO_MAX, 0, NULL,
     "global gradient-norm clip; 0 = off"},
    {"train.l2wrap", KT_BOOL, FIELD(train.l2wrap), "true", 0, 0, 0, NULL, "RWKV's L2Wrap logit regulariser"},
    {"train.eval_every", KT_INT, FIELD(train.eval_every), "50", 0, INT_MAX, 0, NULL,
     "steps between validation runs; 0 = never"},
    {"train.eval_batches", KT_INT, FIELD(train.eval_batches), "8", 1, INT_MAX, 0, NULL,
     "micro-batches per validation run"},
    {"train.save_every", KT_INT, FIELD(train.save_every), "100", 0, INT_MAX, 0, NULL,
     "steps between checkpoints; 0 = only at the end"},
    {"train.keep_checkpoints", KT_INT, FIELD(train.keep_checkpoints), "2", 1, INT_MAX, 0, NULL,
     "newest checkpoints kept on disk"},
    {"train.log_every", KT_INT, FIELD(train.log_every), "1", 1, INT_MAX, 0, NULL, "steps between log lines"},
    {"train.threads", KT_INT, FIELD(train.threads), "0", 0, 4096, 0, NULL, "CPU threads; 0 = all cores"},

    {"train.stage", KT_INT, FIELD(train.stage), "0", 0, 2, 0, NULL,
     "0: text / backbone; 1: projector only (encoders and backbone frozen); 2: projector + backbone or adapter"},
    {"train.trainable", KT_STRING, FIELD(train.trainable), "", 0, 0, 0, NULL,
     "\"\" = the stage's default; else comma list of backbone,adapter,projector,vision,audio,ts"},

    {"parallel.tp", KT_INT, FIELD(parallel.tp), "1", 1, 1 << 10, 0, NULL,
     "tensor-parallel ranks per replica (contiguous ranks: keep them inside a node); must divide the heads, "
     "dim_ffn and the vocabulary"},
    {"parallel.dp", KT_INT, FIELD(parallel.dp), "0", 0, 1 << 20, 0, NULL,
     "data-parallel replicas; 0 = all ranks of the job (mpirun -np N)"},
    {"parallel.zero", KT_INT, FIELD(parallel.zero), "0", 0, 1, 0, NULL,
     "0: gradient all-reduce; 1: ZeRO-1 (AdamW state sharded over the data-parallel ranks)"},
    {"parallel.timeout_s", KT_INT, FIELD(parallel.timeout_s), "300", 1, 86400, 0, NULL,
     "seconds a collective may wait before the job aborts naming the missing rank"},
    {"parallel.sharded_checkpoints", KT_BOOL, FIELD(parallel.sharded_checkpoints), "false", 0, 0, 0, NULL,
     "true: every rank writes its share of each checkpoint in parallel (step-N.shards/, index written last); "
     "false: rank 0 gathers the whole model into one file"},
};
enum { N_KEYS = sizeof KEYS / sizeof KEYS[0] };

static const char* const HELP_HINT = "`modrwkv train --help` lists all keys";

// ---------------------------------------------------------------------------- table lookups

static int find_key(const char* key) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].key, key) == 0) return i;
    return -1;
}

// A section is a proper dotted prefix of some key ("train" for "train.lr").
static int is_section(const char* path) {
    size_t n = strlen(path);
    for (int i = 0; i < N_KEYS; i++)
        if (strncmp(KEYS[i].key, path, n) == 0 && KEYS[i].key[n] == '.') return 1;
    return 0;
}

static size_t edit_distance(const char* a, const char* b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 255 || lb > 255) return SIZE_MAX;
    size_t row[256];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const char* last_component(const char* key) {
    const char* dot = strrchr(key, '.');
    return dot ? dot + 1 : key;
}

// The key or section a user most likely meant by `path` (in `out`), or NULL when nothing is close.
static const char* suggest_key(const char* path, char out[128]) {
    size_t best_d = SIZE_MAX;
    for (int i = 0; i < N_KEYS; i++) {
        const char* key = KEYS[i].key;
        // Candidates: every section prefix of the key ("train"), then the key itself.
        for (size_t n = strcspn(key, "."); n <= strlen(key) && n < 128; n += 1 + strcspn(key + n + 1, ".")) {
            char cand[128];
            memcpy(cand, key, n);
            cand[n] = 0;
            size_t d = edit_distance(path, cand);
            if (d < best_d) { best_d = d; memcpy(out, cand, n + 1); }
            if (key[n] == 0) break;
        }
    }
    // Close: a typo or two, scaled with the length of the last component ("lrr" -> "lr").
    if (best_d <= 1 + strlen(last_component(path)) / 4) return out;
    // A prefix of a key in the same section ("train.warmup" -> "train.warmup_steps").
    size_t n = strlen(path);
    for (int i = 0; i < N_KEYS; i++)
        if (strchr(path, '.') && strncmp(KEYS[i].key, path, n) == 0) return strcpy(out, KEYS[i].key);
    // Right name in the wrong section ("lr" at the top level): match the last component.
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(last_component(KEYS[i].key), last_component(path)) == 0) return KEYS[i].key;
    return NULL;
}

static int unknown_key_error(Error* e, const char* where, const char* path) {
    char buf[128];
    const char* s = suggest_key(path, buf);
    if (s) return errorf(e, "%s: unknown key '%s' (did you mean '%s'? %s)", where, path, s, HELP_HINT);
    return errorf(e, "%s: unknown key '%s' (%s)", where, path, HELP_HINT);
}

// ---------------------------------------------------------------------------- value parsing

static const char* type_name(KeyType t) {
    switch (t) {
    case KT_INT: return "an integer";
    case KT_U64: return "a non-negative integer";
    case KT_FLOAT: return "a number";
    case KT_BOOL: return "true or false";
    case KT_STRING: return "a string";
    case KT_ENUM: return "one of";
    }
    return "?";
}

// Copies at most 60 bytes of a value for a message, replacing control characters.
static void quote_for_message(char out[64], const char* v) {
    size_t i = 0;
    for (; v[i] && i < 60; i++) out[i] = ((unsigned char)v[i] < 0x20) ? '?' : v[i];
    if (v[i]) { out[57] = out[58] = out[59] = '.'; i = 60; }
    out[i] = 0;
}

static int type_error(Error* e, const char* where, const KeySpec* k, const char* v, const char* example) {
    char q[64];
    quote_for_message(q, v);
    return errorf(e, "%s: key '%s' expects %s, got '%s' (write e.g. %s)", where, k->key, type_name(k->type), q,
                  example);
}

static int range_error(Error* e, const char* where, const KeySpec* k, const char* value) {
    char q[64], hi[48] = "";
    quote_for_message(q, value);
    if (k->max < NO_MAX) snprintf(hi, sizeof hi, " and %s %.9g", k->max_open ? "<" : "<=", k->max);
    return errorf(e, "%s: key '%s' = %s is out of range: it must be >= %.9g%s", where, k->key, q, k->min, hi);
}

static int in_range(const KeySpec* k, double v) {
    if (v < k->min) return 0;
    return k->max_open ? v < k->max : v <= k->max;
}

static int parse_int(const KeySpec* k, const char* v, const char* where, void* field, Error* e) {
    char* end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end != 0) return type_error(e, where, k, v, "256");
    if (errno == ERANGE || x < INT_MIN || x > INT_MAX || !in_range(k, (double)x)) return range_error(e, where, k, v);
    int i = (int)x;
    memcpy(field, &i, sizeof i);
    return 0;
}

static int parse_u64(const KeySpec* k, const char* v, const char* where, void* field, Error* e) {
    char* end;
    errno = 0;
    if (v[0] == '-') return type_error(e, where, k, v, "1");
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v || *end != 0) return type_error(e, where, k, v, "1");
    if (errno == ERANGE) return errorf(e, "%s: key '%s' = %s does not fit in 64 bits", where, k->key, v);
    uint64_t u = (uint64_t)x;
    memcpy(field, &u, sizeof u);
    return 0;
}

static int parse_float(const KeySpec* k, const char* v, const char* where, void* field, Error* e) {
    char* end;
    errno = 0;
    float x = strtof(v, &end);
    if (end == v || *end != 0 || isnan(x)) return type_error(e, where, k, v, "3e-4");
    if (errno == ERANGE && x == 0.0f)
        return errorf(e, "%s: key '%s' = %s is too small for a 32-bit float (use 0 or a larger value)", where, k->key, v);
    if (isinf(x) || !in_range(k, (double)x)) return range_error(e, where, k, v);
    memcpy(field, &x, sizeof x);
    return 0;
}

static int parse_bool(const KeySpec* k, const char* v, const char* where, void* field, Error* e) {
    static const char* const yes[] = {"true", "yes", "on", "1"};
    static const char* const no[] = {"false", "no", "off", "0"};
    int b = -1;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) b = 1;
        if (strcasecmp(v, no[i]) == 0) b = 0;
    }
    if (b < 0) return type_error(e, where, k, v, "true");
    memcpy(field, &b, sizeof b);
    return 0;
}

// Checks a string/enum value: no NUL inside, fits the field, one of the choices (enum).
static int check_string(const KeySpec* k, const char* v, size_t len, const char* where, Error* e) {
    if (strlen(v) != len)
        return errorf(e, "%s: key '%s': the value contains a NUL byte (remove it)", where, k->key);
    if (len >= k->size)
        return errorf(e, "%s: key '%s': the value is %zu bytes, longer than the limit of %zu (use a shorter value)",
                      where, k->key, len, k->size - 1);
    if (k->type == KT_ENUM) {
        size_t n = strlen(v);
        const char* c = k->choices;
        int ok = 0;
        while (*c && !ok) {
            size_t m = strcspn(c, "|");
            ok = (m == n && n > 0 && strncmp(c, v, n) == 0);
            c += m + (c[m] == '|');
        }
        if (!ok) {
            char q[64];
            quote_for_message(q, v);
            return errorf(e, "%s: key '%s': '%s' is not one of %s", where, k->key, q, k->choices);
        }
    }
    return 0;
}

static int parse_string(const KeySpec* k, const char* v, size_t len, const char* where, void* field, Error* e) {
    if (check_string(k, v, len, where, e) != 0) return -1;
    memset(field, 0, k->size);  // the whole field, so equal configs are equal bytes
    memcpy(field, v, len);
    return 0;
}

// Parses the scalar text v (len bytes, may contain NULs) into key k of c. `where` prefixes messages.
static int set_value(Config* c, const KeySpec* k, const char* v, size_t len, const char* where, Error* e) {
    void* field = (char*)c + k->offset;
    switch (k->type) {
    case KT_INT: return parse_int(k, v, where, field, e);
    case KT_U64: return parse_u64(k, v, where, field, e);
    case KT_FLOAT: return parse_float(k, v, where, field, e);
    case KT_BOOL: return parse_bool(k, v, where, field, e);
    case KT_STRING:
    case KT_ENUM: return parse_string(k, v, len, where, field, e);
    }
    return errorf(e, "%s: internal error: bad key type", where);
}

static size_t type_size(KeyType t) {
    switch (t) {
    case KT_INT:
    case KT_BOOL: return sizeof(int);
    case KT_U64: return sizeof(uint64_t);
    case KT_FLOAT: return sizeof(float);
    default: return 0;
    }
}

void config_defaults(Config* c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < N_KEYS; i++) {
        const KeySpec* k = &KEYS[i];
        if (type_size(k->type) && type_size(k->type) != k->size)
            fatal("internal: config key %s has a field of %zu bytes", k->key, k->size);
        Error e;
        if (set_value(c, k, k->def, strlen(k->def), "default", &e) != 0) fatal("internal: %s", e.msg);
    }
}

// ---------------------------------------------------------------------------- YAML walking

enum { EXTENDS_MAX_DEPTH = 16 };

// The files being loaded through `extends:`, outermost first (to report cycles).
typedef struct ExtendsChain {
    const char* files[EXTENDS_MAX_DEPTH];
    int n;
} ExtendsChain;

typedef struct Loader {
    const char* name;           // file name for messages
    ExtendsChain* chain;        // files including this one (this one last)
    yaml_document_t* doc;
    Config* c;
    size_t seen_line[N_KEYS];   // line where each key was set (0 = not yet)
    Error* e;
} Loader;

static size_t line_of(const yaml_node_t* n) { return n->start_mark.line + 1; }

static const char* scalar_text(const yaml_node_t* n) { return (const char*)n->data.scalar.value; }

// A YAML null: an empty plain scalar, `~` or `null`.
static int is_null_scalar(const yaml_node_t* n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char* s = scalar_text(n);
    return s[0] == 0 || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0;
}

static const char* node_kind(const yaml_node_t* n) {
    return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a sequence" : "a scalar";
}

static int walk_mapping(Loader* L, yaml_node_t* map, const char* prefix);

// The first key inside a section, for examples in messages ("train" -> "train.seed").
static const char* first_key_in(const char* section) {
    size_t n = strlen(section);
    for (int i = 0; i < N_KEYS; i++)
        if (strncmp(KEYS[i].key, section, n) == 0 && KEYS[i].key[n] == '.') return KEYS[i].key;
    return KEYS[0].key;
}

static int load_leaf(Loader* L, int idx, yaml_node_t* key, yaml_node_t* value) {
    const KeySpec* k = &KEYS[idx];
    char where[CONFIG_PATH_MAX + 32];
    snprintf(where, sizeof where, "%s:%zu", L->name, line_of(value));
    if (L->seen_line[idx])
        return errorf(L->e, "%s:%zu: duplicate key '%s' (first set on line %zu; keep one)", L->name, line_of(key),
                      k->key, L->seen_line[idx]);
    L->seen_line[idx] = line_of(key);
    if (value->type != YAML_SCALAR_NODE)
        return errorf(L->e, "%s: key '%s' expects %s, got %s (write `%s: value`)", where, k->key,
                      k->type == KT_ENUM ? k->choices : type_name(k->type), node_kind(value), last_component(k->key));
    const char* text = is_null_scalar(value) ? "" : scalar_text(value);
    size_t len = is_null_scalar(value) ? 0 : value->data.scalar.length;
    return set_value(L->c, k, text, len, where, L->e);
}

static int load_pair(Loader* L, yaml_node_t* key, yaml_node_t* value, const char* prefix) {
    if (key->type != YAML_SCALAR_NODE || strlen(scalar_text(key)) != key->data.scalar.length)
        return errorf(L->e, "%s:%zu: keys must be plain names such as `lr` (got %s)", L->name, line_of(key),
                      node_kind(key));
    char path[512];
    int n = snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", scalar_text(key));
    char where[CONFIG_PATH_MAX + 32];
    snprintf(where, sizeof where, "%s:%zu", L->name, line_of(key));
    if (n < 0 || (size_t)n >= sizeof path) return unknown_key_error(L->e, where, scalar_text(key));
    int idx = find_key(path);
    if (idx >= 0) return load_leaf(L, idx, key, value);
    if (!is_section(path)) return unknown_key_error(L->e, where, path);
    if (value->type == YAML_MAPPING_NODE) return walk_mapping(L, value, path);
    if (is_null_scalar(value)) return 0;  // an empty section (`model:` with everything commented out)
    return errorf(L->e, "%s: '%s' is a section: expected its keys on the following lines, indented (e.g. `%s:` "
                  "then `  %s: ...`), got %s", where, path, path, last_component(first_key_in(path)), node_kind(value));
}

// Rejects a key repeated in the same mapping (libyaml accepts it silently).
static int check_duplicate_in_mapping(Loader* L, yaml_node_pair_t* begin, yaml_node_pair_t* pair) {
    yaml_node_t* key = yaml_document_get_node(L->doc, pair->key);
    if (key->type != YAML_SCALAR_NODE) return 0;
    for (yaml_node_pair_t* p = begin; p < pair; p++) {
        yaml_node_t* other = yaml_document_get_node(L->doc, p->key);
        if (other->type == YAML_SCALAR_NODE && strcmp(scalar_text(other), scalar_text(key)) == 0)
            return errorf(L->e, "%s:%zu: duplicate key '%s' (first on line %zu; merge them into one)", L->name,
                          line_of(key), scalar_text(key), line_of(other));
    }
    return 0;
}

static int is_extends_key(const yaml_node_t* key, const char* prefix) {
    return prefix[0] == 0 && key->type == YAML_SCALAR_NODE && strcmp(scalar_text(key), "extends") == 0;
}

static int walk_mapping(Loader* L, yaml_node_t* map, const char* prefix) {
    yaml_node_pair_t* begin = map->data.mapping.pairs.start;
    for (yaml_node_pair_t* p = begin; p < map->data.mapping.pairs.top; p++) {
        if (check_duplicate_in_mapping(L, begin, p) != 0) return -1;
        yaml_node_t* key = yaml_document_get_node(L->doc, p->key);
        yaml_node_t* value = yaml_document_get_node(L->doc, p->value);
        if (is_extends_key(key, prefix)) continue;  // already applied by apply_extends
        if (load_pair(L, key, value, prefix) != 0) return -1;
    }
    return 0;
}

static int syntax_error(const yaml_parser_t* p, const char* name, Error* e) {
    size_t line = (p->problem ? p->problem_mark.line : p->context_mark.line) + 1;
    return errorf(e, "%s:%zu: YAML syntax error: %s%s%s (check indentation, colons and quoting)", name, line,
                  p->problem ? p->problem : "unknown problem", p->context ? " " : "", p->context ? p->context : "");
}

// Parses one YAML document from text. Returns 0 with *doc loaded (its root is NULL for an empty
// text); -1 on a syntax error or when a second document follows.
static int parse_document(const char* yaml, size_t len, const char* name, yaml_document_t* doc, Error* e) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) fatal("out of memory initializing the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char*)yaml, len);
    if (!yaml_parser_load(&parser, doc)) {
        syntax_error(&parser, name, e);
        yaml_parser_delete(&parser);
        return -1;
    }
    yaml_document_t next;
    if (!yaml_parser_load(&parser, &next)) {
        syntax_error(&parser, name, e);
        yaml_document_delete(doc);
        yaml_parser_delete(&parser);
        return -1;
    }
    int more = yaml_document_get_root_node(&next) != NULL;
    size_t line = next.start_mark.line + 1;
    yaml_document_delete(&next);
    yaml_parser_delete(&parser);
    if (more) {
        yaml_document_delete(doc);
        return errorf(e, "%s:%zu: a second YAML document (`---`) follows: keep one document per config file", name,
                      line);
    }
    return 0;
}

static int load_file_in_chain(Config* c, const char* path, ExtendsChain* chain, Error* e);

// `extends:` names a file relative to the directory of the including file (`name`).
static void resolve_relative(const char* name, const char* rel, char* out, size_t n) {
    const char* slash = strrchr(name, '/');
    if (rel[0] == '/' || !slash) snprintf(out, n, "%s", rel);
    else snprintf(out, n, "%.*s/%s", (int)(slash - name), name, rel);
}

// Two names for the same file (a cycle through "a.yaml" and "./a.yaml").
static int same_file(const char* a, const char* b) {
    char ra[4096], rb[4096];
    if (realpath(a, ra) && realpath(b, rb)) return strcmp(ra, rb) == 0;
    return strcmp(a, b) == 0;
}

static int extends_cycle_error(Loader* L, size_t line, const char* path) {
    char chain[2048] = "";
    for (int i = 0; i < L->chain->n; i++) {
        strncat(chain, L->chain->files[i], sizeof chain - strlen(chain) - 1);
        strncat(chain, " -> ", sizeof chain - strlen(chain) - 1);
    }
    strncat(chain, path, sizeof chain - strlen(chain) - 1);
    return errorf(L->e, "%s:%zu: extends cycle: %s (remove one of these extends)", L->name, line, chain);
}

// Loads the file named by a top-level `extends:` into L->c, before the including file's own keys.
static int apply_extends(Loader* L, yaml_node_t* root) {
    for (yaml_node_pair_t* p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t* key = yaml_document_get_node(L->doc, p->key);
        yaml_node_t* value = yaml_document_get_node(L->doc, p->value);
        if (!is_extends_key(key, "")) continue;
        size_t line = line_of(key);
        if (value->type != YAML_SCALAR_NODE || is_null_scalar(value) ||
            strlen(scalar_text(value)) != value->data.scalar.length)
            return errorf(L->e, "%s:%zu: key 'extends' expects the path of a base config file (e.g. `extends: "
                          "base.yaml`), got %s", L->name, line, is_null_scalar(value) ? "nothing" : node_kind(value));
        char path[CONFIG_PATH_MAX * 2];
        resolve_relative(L->name, scalar_text(value), path, sizeof path);
        for (int i = 0; i < L->chain->n; i++)
            if (same_file(L->chain->files[i], path)) return extends_cycle_error(L, line, path);
        if (L->chain->n >= EXTENDS_MAX_DEPTH)
            return errorf(L->e, "%s:%zu: extends: more than %d files deep (flatten the chain)", L->name, line,
                          EXTENDS_MAX_DEPTH);
        if (access(path, R_OK) != 0)
            return errorf(L->e, "%s:%zu: extends: cannot read '%s' (%s; the path is relative to this file)", L->name,
                          line, path, strerror(errno));
        return load_file_in_chain(L->c, path, L->chain, L->e);  // errors inside name the base file and line
    }
    return 0;
}

static int load_text_in_chain(Config* c, const char* yaml, const char* name, ExtendsChain* chain, Error* e) {
    yaml_document_t doc;
    if (parse_document(yaml, strlen(yaml), name, &doc, e) != 0) return -1;
    Loader* L = xcalloc(1, sizeof *L);
    L->name = name;
    L->chain = chain;
    L->doc = &doc;
    L->c = xmalloc(sizeof *L->c);
    memcpy(L->c, c, sizeof *c);
    L->e = e;
    int rc = 0;
    yaml_node_t* root = yaml_document_get_root_node(&doc);
    chain->files[chain->n++] = name;
    if (root && root->type == YAML_MAPPING_NODE) {
        rc = apply_extends(L, root);
        if (rc == 0) rc = walk_mapping(L, root, "");
    } else if (root && !is_null_scalar(root))
        rc = errorf(e, "%s:%zu: the top level must be a mapping of keys (e.g. `train:` then `  lr: 3e-4`), got %s",
                    name, line_of(root), node_kind(root));
    chain->n--;
    if (rc == 0) memcpy(c, L->c, sizeof *c);
    free(L->c);
    free(L);
    yaml_document_delete(&doc);
    return rc;
}

static int load_file_in_chain(Config* c, const char* path, ExtendsChain* chain, Error* e) {
    size_t len;
    char* text = read_file(path, &len, e);
    if (!text) return -1;
    int rc;
    if (strlen(text) != len) rc = errorf(e, "%s: contains a NUL byte: not a YAML text file", path);
    else rc = load_text_in_chain(c, text, path, chain, e);
    free(text);
    return rc;
}

int config_load_string(Config* c, const char* yaml, const char* name, Error* e) {
    ExtendsChain chain = {.n = 0};
    return load_text_in_chain(c, yaml, name, &chain, e);
}

int config_load(Config* c, const char* path, Error* e) {
    ExtendsChain chain = {.n = 0};
    return load_file_in_chain(c, path, &chain, e);
}

// ---------------------------------------------------------------------------- --set key=value

// The value of `--set k=v`: taken literally (surrounding spaces trimmed), unless it is written in
// YAML quotes, in which case it is unquoted by libyaml (so `--set 'run_dir="a b"'` works).
static int set_value_text(const char* v, const char* where, char** out, size_t* len, Error* e) {
    if (v[0] != '"' && v[0] != '\'') {
        *out = xstrdup(v);
        *len = strlen(v);
        return 0;
    }
    yaml_document_t doc;
    if (parse_document(v, strlen(v), where, &doc, e) != 0) return -1;
    yaml_node_t* root = yaml_document_get_root_node(&doc);
    int rc = 0;
    if (!root || root->type != YAML_SCALAR_NODE) {
        rc = errorf(e, "%s: the quoted value is not a single YAML scalar (check the quotes)", where);
    } else {
        *len = root->data.scalar.length;
        *out = xmalloc(*len + 1);
        memcpy(*out, root->data.scalar.value, *len + 1);
    }
    yaml_document_delete(&doc);
    return rc;
}

static char* trim(char* s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

int config_set(Config* c, const char* assignment, Error* e) {
    char* buf = xstrdup(assignment);
    char* eq = strchr(buf, '=');
    if (!eq) {
        free(buf);
        return errorf(e, "--set %s: expected key=value (e.g. --set train.lr=3e-4)", assignment);
    }
    *eq = 0;
    char* key = trim(buf);
    char* value = trim(eq + 1);
    char where[600];
    snprintf(where, sizeof where, "--set %.500s", key);
    int idx = find_key(key), rc;
    if (idx < 0 && is_section(key))
        rc = errorf(e, "%s: '%s' is a section: set one of its keys (e.g. --set %s=...)", where, key,
                    first_key_in(key));
    else if (idx < 0)
        rc = unknown_key_error(e, where, key);
    else {
        char* text = NULL;
        size_t len = 0;
        rc = set_value_text(value, where, &text, &len, e);
        if (rc == 0) {
            Config* tmp = xmalloc(sizeof *tmp);
            memcpy(tmp, c, sizeof *c);
            rc = set_value(tmp, &KEYS[idx], text, len, where, e);
            if (rc == 0) memcpy(c, tmp, sizeof *c);
            free(tmp);
        }
        free(text);
    }
    free(buf);
    return rc;
}

// ---------------------------------------------------------------------------- validation

// Checks that the value currently in the field satisfies the key's type constraints.
static int check_field(const Config* c, const KeySpec* k, Error* e) {
    const char* field = (const char*)c + k->offset;
    char text[64];
    if (k->type == KT_INT || k->type == KT_FLOAT) {
        double v;
        if (k->type == KT_INT) {
            int i;
            memcpy(&i, field, sizeof i);
            v = i;
        } else {
            float f;
            memcpy(&f, field, sizeof f);
            v = f;
        }
        snprintf(text, sizeof text, "%.9g", v);
        if (!isfinite(v) || !in_range(k, v)) return range_error(e, "config", k, text);
        return 0;
    }
    if (k->type == KT_STRING || k->type == KT_ENUM) {
        if (memchr(field, 0, k->size) == NULL)
            return errorf(e, "config: key '%s' is not NUL-terminated", k->key);
        return check_string(k, field, strlen(field), "config", e);
    }
    return 0;
}

int config_validate(const Config* c, Error* e) {
    for (int i = 0; i < N_KEYS; i++)
        if (check_field(c, &KEYS[i], e) != 0) return -1;
    const ModelConfig* m = &c->model;
    if (m->head_size % 2 != 0)
        return errorf(e, "config: model.head_size = %d must be even (64 is the usual choice)", m->head_size);
    if (m->n_embd % m->head_size != 0)
        return errorf(e, "config: model.n_embd = %d is not a multiple of model.head_size = %d (change either)",
                      m->n_embd, m->head_size);
    if (c->data.train[0] == 0)
        return errorf(e, "config: data.train is empty: set the training data (`data:` then `  train: corpus.txt`, "
                      "or --set data.train=corpus.txt)");
    if (c->run_dir[0] == 0) return errorf(e, "config: run_dir is empty: set a directory for the run's outputs");
    return 0;
}

// ---------------------------------------------------------------------------- YAML output

typedef struct Buf {
    char* p;
    size_t len, cap;
} Buf;

static void buf_printf(Buf* b, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf* b, const char* fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) fatal("internal: formatting failed");
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = 2 * b->cap + (size_t)n + 1;
        b->p = xrealloc(b->p, b->cap);
    }
}

// Plain YAML only for simple words that no YAML reader takes for null/bool; else double-quoted
// with escapes for '"', '\' and control bytes (\xHH is exact for bytes < 0x80).
static int needs_quotes(const char* s) {
    static const char* const special[] = {"null", "true", "false", "yes", "no", "on", "off", "y", "n", "~"};
    if (s[0] == 0) return 1;
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if (strcasecmp(s, special[i]) == 0) return 1;
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./", s[0])) return 1;
    return s[strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./+-")] != 0;
}

static void emit_string(Buf* b, const char* s) {
    if (!needs_quotes(s)) {
        buf_printf(b, "%s", s);
        return;
    }
    buf_printf(b, "\"");
    for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
        if (*p == '"' || *p == '\\') buf_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) buf_printf(b, "\\x%02x", *p);
        else buf_printf(b, "%c", *p);
    }
    buf_printf(b, "\"");
}

// Shortest %g spelling that reads back as the same float (at most 9 digits are ever needed).
static void emit_float(Buf* b, float x) {
    char s[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(s, sizeof s, "%.*g", digits, (double)x);
        if (strtof(s, NULL) == x) break;
    }
    buf_printf(b, "%s", s);
}

static void emit_value(Buf* b, const Config* c, const KeySpec* k) {
    const char* field = (const char*)c + k->offset;
    int i;
    uint64_t u;
    float f;
    switch (k->type) {
    case KT_INT: memcpy(&i, field, sizeof i); buf_printf(b, "%d", i); break;
    case KT_BOOL: memcpy(&i, field, sizeof i); buf_printf(b, "%s", i ? "true" : "false"); break;
    case KT_U64: memcpy(&u, field, sizeof u); buf_printf(b, "%" PRIu64, u); break;
    case KT_FLOAT: memcpy(&f, field, sizeof f); emit_float(b, f); break;
    case KT_STRING:
    case KT_ENUM: {
        char s[CONFIG_PATH_MAX + 1];
        size_t n = strnlen(field, k->size);
        memcpy(s, field, n);
        s[n] = 0;
        emit_string(b, s);
        break;
    }
    }
}

// Number of leading dotted components shared by a and b ("train.lr", "train.beta1" -> 1).
static int common_sections(const char* a, const char* b) {
    int n = 0;
    for (size_t i = 0;; i++) {
        if (a[i] != b[i]) return n;
        if (a[i] == 0) return n;
        if (a[i] == '.') n++;
    }
}

static int count_dots(const char* s) {
    int n = 0;
    for (; *s; s++) n += (*s == '.');
    return n;
}

// Emits `section:` headers for the components of key after the first `shared` ones.
static void emit_headers(Buf* b, const char* key, int shared) {
    const char* comp = key;
    for (int depth = 0; depth < count_dots(key); depth++) {
        size_t len = strcspn(comp, ".");
        if (depth >= shared) buf_printf(b, "%*s%.*s:\n", 2 * depth, "", (int)len, comp);
        comp += len + 1;
    }
}

char* config_to_yaml(const Config* c) {
    Buf b = {xmalloc(4096), 0, 4096};
    buf_printf(&b, "# modrwkv resolved configuration (every key; `modrwkv train --help` explains them)\n");
    const char* prev = "";
    for (int i = 0; i < N_KEYS; i++) {
        const KeySpec* k = &KEYS[i];
        int shared = common_sections(prev, k->key);
        if (shared == 0 && i > 0) buf_printf(&b, "\n");
        emit_headers(&b, k->key, shared);
        int depth = count_dots(k->key);
        buf_printf(&b, "%*s%s: ", 2 * depth, "", last_component(k->key));
        emit_value(&b, c, k);
        buf_printf(&b, "  # %s\n", k->help);
        prev = k->key;
    }
    return b.p;
}

// ---------------------------------------------------------------------------- --help table

static void type_label(const KeySpec* k, char* out, size_t n) {
    static const char* const names[] = {"int", "u64", "float", "bool", "string", ""};
    snprintf(out, n, "%s", k->type == KT_ENUM ? k->choices : names[k->type]);
}

void config_print_keys(FILE* f) {
    size_t wk = 3, wt = 4, wd = 7;
    char t[64];
    for (int i = 0; i < N_KEYS; i++) {
        type_label(&KEYS[i], t, sizeof t);
        if (strlen(KEYS[i].key) > wk) wk = strlen(KEYS[i].key);
        if (strlen(t) > wt) wt = strlen(t);
        if (strlen(KEYS[i].def) + 2 > wd) wd = strlen(KEYS[i].def) + 2;
    }
    fprintf(f, "%-*s  %-*s  %-*s  %s\n", (int)wk, "key", (int)wt, "type", (int)wd, "default", "meaning");
    for (int i = 0; i < N_KEYS; i++) {
        const KeySpec* k = &KEYS[i];
        type_label(k, t, sizeof t);
        char d[CONFIG_PATH_MAX];
        snprintf(d, sizeof d, k->def[0] ? "%s" : "\"%s\"", k->def);
        fprintf(f, "%-*s  %-*s  %-*s  %s\n", (int)wk, k->key, (int)wt, t, (int)wd, d, k->help);
    }
}
