// rng.h — the project's random number generator (xoshiro256**, seeded with splitmix64).
//
// Contract: the whole state is the four 64-bit words, so checkpoints save and restore it exactly and a
// resumed run draws the same numbers as an uninterrupted one.
#pragma once
#include <stdint.h>

typedef struct Rng {
    uint64_t s[4];
} Rng;

void rng_seed(Rng* r, uint64_t seed);
uint64_t rng_u64(Rng* r);
double rng_uniform(Rng* r);              // [0, 1)
float rng_normal(Rng* r);                // standard normal (Box-Muller)
