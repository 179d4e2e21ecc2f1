// tokenizer.h — RWKV World tokenizer (greedy longest match over a byte trie, reference/rwkv7.md §7)
// and the byte-level tokenizer (vocab 256, id = byte value) used by byte models such as the tiny model.
//
// Contract: encode(text bytes) -> ids; decode(ids) -> bytes; decode(encode(s)) == s for ANY byte
// string (valid UTF-8 or not). World id 0 is end-of-document: encode never produces it, decode
// emits nothing for it. Loading a vocab with a bad line fails with "FILE:LINE: what is wrong".
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"

typedef struct Tokenizer Tokenizer;

// Loads rwkv_vocab_v20230424.txt-style files (`<id> <python literal> <byte length>` per line).
Tokenizer* tokenizer_load_world(const char* vocab_path, Error* e);
// The byte-level tokenizer: vocab 256, token id = byte value.
Tokenizer* tokenizer_bytes(void);
// Resolves a config/CLI spelling: "bytes", "world" (the vocab shipped in datasets/vocab/, found via
// MODRWKV_SOURCE_DIR or next to the executable) or a path to a vocab file.
Tokenizer* tokenizer_from_spec(const char* spec, Error* e);
void tokenizer_free(Tokenizer* t);

const char* tokenizer_name(const Tokenizer* t);  // "bytes" or "world:<path>"
// Smallest model vocabulary that covers every id (65536 for World, 256 for bytes).
int tokenizer_vocab_size(const Tokenizer* t);
// Encodes len bytes; *ids is malloc'ed (caller frees), *n_ids set. Returns 0.
int tokenizer_encode(const Tokenizer* t, const char* text, size_t len, int32_t** ids, size_t* n_ids);
// Decodes ids to bytes; *out is malloc'ed and NUL-terminated (caller frees), *len set.
// Returns -1 (with e filled) if an id is outside the vocabulary.
int tokenizer_decode(const Tokenizer* t, const int32_t* ids, size_t n_ids, char** out, size_t* len, Error* e);
// The bytes of one token (NULL with *len = 0 for unused ids and World id 0).
const uint8_t* tokenizer_token_bytes(const Tokenizer* t, int32_t id, size_t* len);
