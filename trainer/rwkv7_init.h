// rwkv7_init.h — fresh RWKV-7 weights: the official RWKV-LM initialisation or a small random one. See rwkv7_init.c.
#pragma once
#include <stdint.h>

#include "trainer/rng.h"
#include "trainer/rwkv7.h"

typedef enum { RWKV7_INIT_OFFICIAL = 0, RWKV7_INIT_RANDOM = 1 } RWKV7InitKind;

// Overwrites every parameter of m; deterministic for a given seed.
void rwkv7_init(RWKV7* m, RWKV7InitKind kind, uint64_t seed);
