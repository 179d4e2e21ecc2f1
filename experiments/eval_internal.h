// eval_internal.h — the pieces the evaluation files share (experiments/eval.c, eval_choice.c, eval_lambada.c,
// eval_parallel.c); not part of the public API (experiments/eval.h).
//
// Contract:
// - eval_add_item appends a zeroed item with a copy of key; the result owns everything an item points to.
// - eval_open_data opens a shard dataset in the evaluated order (eval.h) with `batch_size` samples per batch,
//   checks its media kinds against the model's encoders and its vocabulary against the model's.
// - eval_rank_takes: 1 when unit `index` (a sample, or a batch for the batched metrics) is this rank's:
//   index mod ranks == rank (always 1 without a communicator).
// - eval_finish_parallel, called by every rank after its loop with its own rc: when any rank failed, every
//   rank returns -1 with the lowest failing rank's message ("rank R: ..." unless all failed); otherwise the items of all ranks are gathered on every
//   rank and put in the evaluated order (by sample, then turn), and r->ranks is set. One rank: nothing moves.
// - eval_read_jsonl calls fn for every non-blank line of a JSONL file with its parsed value (owned by the
//   reader) and its 1-based line number; a line that is not JSON is an error "FILE:LINE: ...". A callback
//   returns 0 to go on, 1 to stop reading (success), -1 to fail (its message names FILE:LINE).
// - Answer spans: eval_answer_follows tells whether trained tokens starting at `pos` follow "\x16Assistant:".
#pragma once
#include <jansson.h>
#include <stdint.h>

#include "experiments/eval.h"

EvalItem* eval_add_item(EvalResult* r, const char* key, int64_t sample, int turn);
// Frees every item of r (and the item array) and leaves r with none; the rest of r is kept.
void eval_free_items(EvalResult* r);
ShardLoader* eval_open_data(const ModRWKV* m, const char* dir, int batch_size, const EvalOptions* o, Error* e);
uint64_t eval_samples_to_read(const ShardLoader* L, const EvalOptions* o);
int eval_check_tokenizer(const ShardLoader* L, const Tokenizer* tok, const char* dir, Error* e);
void eval_progress(const EvalOptions* o, const char* unit, int64_t scored, uint64_t done, uint64_t total);

typedef int (*EvalJsonlFn)(void* ctx, json_t* value, size_t line, Error* e);
int eval_read_jsonl(const char* path, EvalJsonlFn fn, void* ctx, Error* e);

int eval_rank_takes(const EvalOptions* o, int64_t index);
int eval_finish_parallel(EvalResult* r, const EvalOptions* o, int rc, Error* e);

// The tokens of "\x16Assistant:" (malloc'ed) and of the turn end "\x17" (-1 when it is not one token).
int32_t* eval_assistant_tokens(const Tokenizer* tok, size_t* n);
int32_t eval_turn_end_token(const Tokenizer* tok);
int eval_answer_follows(const int32_t* tokens, int pos, const int32_t* open, size_t n_open);

// A view of row 0 of b cut at column a (tokens shared, targets all -1 and owned, the media placed before
// a): the prompt of an answer at a. Free with eval_prompt_free.
void eval_prompt_view(const ShardBatch* b, int a, ShardBatch* prompt);
void eval_prompt_free(ShardBatch* prompt);
