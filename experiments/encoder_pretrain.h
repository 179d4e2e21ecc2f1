// encoder_pretrain.h — trains a modality encoder from scratch on a classification task read from chat shards,
// for when no pretrained encoder exists (the embedded demo: no download): encoder -> linear classifier per
// token -> mean over tokens -> softmax cross-entropy over the class names.
//
// Contract:
// - Data: a chat shard dataset with one media item per sample. A sample's class is its first answer's text
//   (the trained tokens up to "\x17", trimmed) when it is one of `classes`; other samples are skipped (e.g.
//   the yes/no questions of the digit QA, the digit sequences of the spoken digits).
// - The encoder is built from the model config (model.vision or model.audio, random init with seed) exactly
//   as the multimodal model builds it, so the saved file loads through model.<vision|audio>.init: its tensors
//   are written under the model's prefix ("vision." / "audio.") in a safetensors file (the classifier is not
//   saved). AdamW (beta 0.9/0.99, eps 1e-8, no weight decay), cosine decay to lr/10 after a 10% warmup.
// - Reports the accuracy on the training batches of the last 10% of steps and on the validation set.
#pragma once
#include <stdint.h>

#include "kernels/common.h"
#include "trainer/config.h"

typedef struct EncoderPretrainOptions {
    const ModelConfig* model;     // model.vision or model.audio (the one that is not "none") is trained
    const char* train_dir;        // chat shard datasets
    const char* val_dir;          // may be NULL
    const char* tokenizer;        // the datasets' tokenizer spec ("bytes", "world")
    const char* const* classes;   // class names = answer texts
    int n_classes;
    int steps, batch_size;
    float lr;
    uint64_t seed;
    int threads;
    const char* out_path;         // the encoder's safetensors file
} EncoderPretrainOptions;

typedef struct EncoderPretrainResult {
    double train_accuracy, val_accuracy, final_loss, seconds;
    int64_t val_samples;
} EncoderPretrainResult;

int encoder_pretrain(const EncoderPretrainOptions* o, EncoderPretrainResult* r, Error* e);
