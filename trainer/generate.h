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
} GenerateOptions;

// Generates after prompt, writing decoded bytes to out as they come. Returns the number of tokens
// generated, or -1 with e filled (empty prompt, token outside the vocabulary).
int generate_text(RWKV7* m, const Tokenizer* tok, const char* prompt, const GenerateOptions* o, FILE* out, Error* e);
