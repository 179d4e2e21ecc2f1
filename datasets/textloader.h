// textloader.h — a whole corpus as one token stream, and the training / evaluation loaders over it.
//
// Contract:
// * tokenstream_open tokenizes (or maps) a corpus into one stream held in memory / mmap:
//   - text:   the whole file is one document;
//   - jsonl:  one document per non-blank line, the string field `jsonl_key` of a JSON object;
//   - binidx: RWKV/Megatron MMIDIDX prefix (binidx.h); the .bin is mmap'ed and used as is.
//   With the World tokenizer (tokenizer_vocab_size > 256) every text/jsonl document is followed by
//   token 0 (end of document, as RWKV's make_data.py does); byte tokenizers get no separator.
//   format "auto": a path whose .idx + .bin exist (or that ends in .idx/.bin) is binidx, *.jsonl is
//   jsonl, anything else is text. Errors name the file (and line for JSONL) and say what to do.
// * textloader_create_train: RWKV's sampling (reference/rwkv7.md §5.4) over tokens [begin, end):
//   n_windows = (end - begin - 1) / ctx_len, p = the largest prime <= n_windows with p ≡ 2 (mod 3)
//   (p = 1 when n_windows = 1). Sample k of rank r (of D) is the window starting at
//   begin + ((floor(p * 0.618033988749895) * ii^3) mod p) * ctx_len with ii = 1 + k*D + r; its
//   ctx_len + 1 tokens give x = window[:-1], y = window[1:]. Cubing is a bijection mod p, so every
//   p consecutive global samples visit windows 0..p-1 once each (then the order repeats: an epoch);
//   the n_windows - p windows past p are never used. Position = samples consumed by this rank.
// * textloader_create_eval: consecutive non-overlapping windows from begin, wrapping around after
//   the last whole window; sample k is window k mod n_windows. Deterministic.
// * Both need end - begin >= ctx_len + 2 tokens, and check every token against the tokenizer's
//   vocabulary (a binidx made with another tokenizer fails with a clear message, not a crash).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "datasets/loader.h"
#include "datasets/tokenizer.h"
#include "kernels/common.h"

typedef struct TokenStream TokenStream;

// tok may be NULL only for binidx (then tokens are only checked against the dtype's range).
int tokenstream_open(TokenStream** out, const char* path, const char* format, const char* jsonl_key,
                     const Tokenizer* tok, Error* e);
size_t tokenstream_len(const TokenStream* s);
uint32_t tokenstream_at(const TokenStream* s, size_t i);
size_t tokenstream_documents(const TokenStream* s);   // documents read (binidx: as declared by the .idx)
const char* tokenstream_describe(const TokenStream* s);  // "jsonl data/x.jsonl: 12 documents, 3456 tokens"
void tokenstream_free(TokenStream* s);

// The sampling prime: largest prime p <= n with p % 3 == 2; 1 when n < 2.
uint64_t textloader_sampling_prime(uint64_t n);
// Window index in [0, p) of sample k of rank dp_rank of dp_size (the formula above; exact for any
// 64-bit p, sample and rank).
uint64_t textloader_sample_window(uint64_t p, uint64_t k, uint64_t dp_rank, uint64_t dp_size);

DataLoader* textloader_create_train(const TokenStream* s, size_t begin, size_t end, int ctx_len, int dp_rank,
                                    int dp_size, Error* e);
DataLoader* textloader_create_eval(const TokenStream* s, size_t begin, size_t end, int ctx_len, Error* e);
