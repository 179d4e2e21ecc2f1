// vocab_parallel.h — cross-entropy over a vocabulary split across the ranks of a tensor-parallel group,
// without gathering the logits (Megatron's vocab-parallel cross-entropy; DESIGN.md "Parallelism").
//
// Contract:
// - Rank r of the group holds logits (N, Vl) for the vocabulary rows [v_begin, v_begin + Vl) of the same N
//   rows; targets (N) are global token ids (< 0: masked). Every rank calls with the same N and targets.
// - losses (N) receives, identically on every rank, the full-vocabulary cross-entropy of each row:
//   log(sum_v exp(logit_v - M)) + M - logit_target with M the global row maximum (0 for masked rows).
//   The three reductions (row max, the sum of exponentials and the target logit) are all-reduces of N
//   floats over the group (comm.h: deterministic, the same bits on every rank).
// - dlogits (N, Vl) (may alias logits; NULL: loss only) = dloss * (softmax - onehot(target)) restricted to
//   this rank's columns, plus l2wrap * M at the FIRST global argmax (the lowest rank holding the maximum,
//   its first local index): the same as the single-rank kernel (KernelOps.crossentropy_forward_backward).
//   Masked rows get zeros.
// - Host memory (the CPU backend); the sums of exponentials are accumulated in double per rank.
#pragma once
#include <stdint.h>

#include "sharding/comm.h"

void vocab_parallel_crossentropy(Comm* tp, float* losses, float* dlogits, const float* logits, const int32_t* targets,
                                 int N, int Vl, int v_begin, float dloss, float l2wrap);
