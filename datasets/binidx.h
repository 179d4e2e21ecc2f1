// binidx.h — reader for RWKV/Megatron "MMIDIDX" token files: `<prefix>.idx` (document index) and
// `<prefix>.bin` (flat tokens, memory-mapped).
//
// Contract: the .idx layout is (little-endian) b"MMIDIDX\0\0", u64 version = 1, u8 dtype code
// (8 = uint16, 4 = int32), u64 n_seq, u64 n_doc, int32 sizes[n_seq], int64 pointers[n_seq] (byte
// offsets into .bin), int64 doc_idx[n_doc] (reference/rwkv7.md §5.4). The sequences must tile the
// .bin exactly (pointer[i] = bytes of all earlier sequences, total = .bin size), so the whole .bin is
// one token stream (RWKV's make_data.py already ends every document with token 0). Any violation is
// reported as "<file>: what is wrong (what to do)"; nothing is read outside the mapped file.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"

typedef struct BinIdx {
    const void* tokens;   // mapped .bin: uint16_t[n_tokens] or int32_t[n_tokens]
    int token_bytes;      // 2 (dtype 8, uint16) or 4 (dtype 4, int32)
    size_t n_tokens;
    size_t n_seq, n_doc;  // as declared by the .idx
    void* map;            // private: the mapping
    size_t map_len;
} BinIdx;

// True when both <prefix>.idx and <prefix>.bin exist.
int binidx_exists(const char* prefix);
// Opens <prefix>.idx / <prefix>.bin. Returns 0, or -1 with e naming the file and the problem.
int binidx_open(BinIdx* b, const char* prefix, Error* e);
void binidx_close(BinIdx* b);
// Token i (int32 values are returned as their bit pattern; callers range-check).
uint32_t binidx_token(const BinIdx* b, size_t i);
