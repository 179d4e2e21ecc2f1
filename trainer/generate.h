// generate.h — text generation in RNN mode: the prompt is read in one parallel pass with state passing,
// then tokens are sampled one at a time with the state carried (memory does not grow with length).
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "datasets/tokenizer.h"
#include "trainer/rng.h"
#include "trainer/rwkv7.h"

typedef struct GenerateOptions {
    int max_tokens;      // tokens to generate
    float temperature;   // 0 = greedy (argmax)
    float top_p;         // nucleus sampling mass in (0, 1]
    uint64_t seed;
    int stop_at_eod;     // stop when token 0 (end of document) is sampled
    int32_t stop[8];     // further stop tokens (e.g. 24 = "\x17", the end of a chat turn); not printed
    int n_stop;
    int ban_eod;         // never sample token 0 (ModRWKV's token_ban=[0])
} GenerateOptions;

// Generates after prompt, writing decoded bytes to out as they come. Returns the number of tokens
// generated, or -1 with e filled (empty prompt, token outside the vocabulary).
int generate_text(RWKV7* m, const Tokenizer* tok, const char* prompt, const GenerateOptions* o, FILE* out, Error* e);

// Multimodal generation (trainer/modrwkv.h): row 0 of src (tokens with one placeholder run per media item,
// media payloads preprocessed as the loader gives them) is assembled, prefilled in parallel mode with the
// projected features in place, then decoded in RNN mode with a constant-size state. The generated ids (stop
// token excluded) go to ids (at most o->max_tokens, malloc'ed) and, decoded, to out when out != NULL (as they
// come). Returns the number of ids, or -1 with e filled.
struct ModRWKV;
struct ShardBatch;
// The chat prompt "\x16User: <media>\n<prompt>\x17\x16Assistant:" (the training template; images then audio,
// one placeholder each), or with media_last "\x16User: <prompt>\n<media>\x17\x16Assistant:" (the layout of
// `modrwkv data demo --short-range`), with the media loaded from files: images decoded and preprocessed to image_size
// (normalised with mean = std = 0.5), audio resampled to 16 kHz mono. NULL with e naming the file.
struct ShardBatch* generate_chat_prompt(const Tokenizer* tok, const char* prompt, const char* const* images,
                                        int n_images, const char* const* audio, int n_audio, int image_size,
                                        int media_last, Error* e);
int generate_multimodal(struct ModRWKV* m, const Tokenizer* tok, const struct ShardBatch* src, const GenerateOptions* o,
                        FILE* out, int32_t** ids, Error* e);
