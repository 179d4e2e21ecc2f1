// cache_features.h — the feature cache behind `modrwkv data cache-features`: a frozen encoder runs once over a
// dataset and the result is a copy of the dataset whose media items are the encoder's outputs, so that a sweep
// over projector designs never runs the encoder again.
//
// Contract of cache_features:
// - Reads the shards of in_dir in the order of its manifest.json. In every sample, every image (encoded or
//   pixels), audio and time-series item is given to the encoder and replaced by a MEDIA_FEATURES item
//   (n_tok, dim) with the same placeholder_pos and n_placeholder; feature items already present are copied.
//   Keys, tokens and loss masks are copied unchanged.
// - The encoder must return n_tok == the item's n_placeholder (the placeholders are the slots the features
//   fill) and dim >= 1; anything else is -1 with a message naming the shard file, the key and both counts.
// - store_f16: features are stored as IEEE float16 (round to nearest even; feat_dtype_bytes 2), else float32.
// - out_dir gets the same split and the same shard boundaries: input shard i (manifest order) becomes output
//   shard <split>-NNNNNN.h5 number i with the same samples in the same order, then out_dir/manifest.json (the
//   tokenizer id and vocab size of the input). A failure leaves no manifest.json in out_dir. out_dir must not
//   be in_dir. One sample is held in memory at a time.
//
// The real encoders (SigLIP2, CLIP, Whisper) arrive with the multimodal issue; until then the stand-in below
// (a fixed, seeded random linear map) exercises the whole path.
#pragma once
#include <stdint.h>

#include "datasets/shard.h"
#include "kernels/common.h"

// Encodes one media item: *feat = malloc'ed (n_tok, dim) float32, owned by the caller afterwards. Returns 0,
// or -1 with e filled (the caller prefixes the file and key).
typedef int (*FeatureEncoderFn)(void* ctx, const MediaItem* in, float** feat, int* n_tok, int* dim, Error* e);

int cache_features(const char* in_dir, const char* out_dir, FeatureEncoderFn enc, void* ctx, int store_f16, Error* e);

// IEEE 754 binary16 <-> float32 (round to nearest even; overflow -> infinity; NaN stays NaN).
uint16_t feature_f16_from_float(float f);
float feature_f16_to_float(uint16_t h);

// ---- the stand-in linear encoder: features are a fixed random projection of the preprocessed media.
//   images      decoded (datasets/image.h), resized to (3, image_size, image_size), normalised to [-1, 1];
//               n_tok = (image_size / image_patch)^2 patches in row-major order; token = W_img x_patch, where
//               x_patch is (3, image_patch, image_patch) flattened
//   audio       n_tok = ceil(n_samples / audio_frame) frames of audio_frame samples / 32768 (the last one
//               zero-padded); token = W_aud x_frame
//   time series n_tok = ceil(length / series_patch) patches of (series_patch, channels) (zero-padded);
//               token = W_ts x_patch
// W entries are uniform in [-sqrt(3 / fan_in), sqrt(3 / fan_in)], a hash of (seed, modality, row, column).
typedef struct LinearStandInEncoder {
    uint64_t seed;
    int dim;            // features per token
    int image_size;     // a multiple of image_patch
    int image_patch;
    int audio_frame;    // samples per token (320 = 50 tokens per second at 16 kHz)
    int series_patch;   // time steps per token
} LinearStandInEncoder;

// seed 1, dim 32, image 32 / patch 4 (64 tokens: the demo's image placeholders), audio frame 320, series 16.
void linear_standin_default(LinearStandInEncoder* enc);
// A FeatureEncoderFn; ctx is a LinearStandInEncoder.
int linear_standin_encode(void* ctx, const MediaItem* in, float** feat, int* n_tok, int* dim, Error* e);
