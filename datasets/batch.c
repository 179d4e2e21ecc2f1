// batch.c — Batch allocation (see loader.h): two (B, T) int32 arrays, zero-filled.
#include <stdlib.h>
#include <string.h>

#include "datasets/loader.h"

void batch_alloc(Batch* b, int B, int T) {
    if (B < 1 || T < 1) fatal("internal: batch_alloc(%d, %d): B and T must be positive", B, T);
    b->B = B;
    b->T = T;
    b->tokens = xcalloc((size_t)B * (size_t)T, sizeof *b->tokens);   // (B, T)
    b->targets = xcalloc((size_t)B * (size_t)T, sizeof *b->targets); // (B, T)
}

void batch_free(Batch* b) {
    free(b->tokens);
    free(b->targets);
    memset(b, 0, sizeof *b);
}
