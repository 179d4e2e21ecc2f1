// textloader.c — see textloader.h. Part 1 builds the TokenStream (text / JSONL / binidx); part 2 is
// the two DataLoaders, which only compute window start positions and copy tokens into batches.
#include "datasets/textloader.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/binidx.h"

struct TokenStream {
    char* path;
    const char* format;     // "text", "jsonl" or "binidx"
    const void* tokens;     // uint16_t[n] or uint32_t[n] (owned, or the binidx mapping)
    int token_bytes;        // 2 or 4
    size_t n, n_docs;
    void* owned;            // tokens we tokenized ourselves (NULL for binidx)
    BinIdx bin;             // binidx mapping (zeroed otherwise)
    uint64_t vocab_limit;   // every token must be < this
    char describe[1200];
};

// ============================================================================ token stream

// A growable token array of 2- or 4-byte tokens.
typedef struct TokenBuf {
    void* data;
    int token_bytes;
    size_t n, cap;
} TokenBuf;

static void tokbuf_push(TokenBuf* b, const int32_t* ids, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = b->n + n > 2 * b->cap ? b->n + n : 2 * b->cap;
        b->data = xrealloc(b->data, b->cap * (size_t)b->token_bytes);
    }
    for (size_t i = 0; i < n; i++) {
        if (b->token_bytes == 2) ((uint16_t*)b->data)[b->n + i] = (uint16_t)ids[i];
        else ((uint32_t*)b->data)[b->n + i] = (uint32_t)ids[i];
    }
    b->n += n;
}

// Appends one document: its tokens, then token 0 (end of document) for World-style vocabularies.
static void append_document(TokenBuf* b, const Tokenizer* tok, const char* text, size_t len) {
    int32_t* ids = NULL;
    size_t n = 0;
    tokenizer_encode(tok, text, len, &ids, &n);
    tokbuf_push(b, ids, n);
    free(ids);
    if (tokenizer_vocab_size(tok) > 256) {
        const int32_t eod = 0;
        tokbuf_push(b, &eod, 1);
    }
}

static int read_text(TokenStream* s, TokenBuf* b, const Tokenizer* tok, Error* e) {
    size_t len;
    char* text = read_file(s->path, &len, e);
    if (!text) return -1;
    if (len > 0) {
        append_document(b, tok, text, len);
        s->n_docs = 1;
    }
    free(text);
    return 0;
}

// One JSONL line (1-based number `line`): a JSON object whose `key` is a string.
static int read_jsonl_line(TokenStream* s, TokenBuf* b, const Tokenizer* tok, const char* text, size_t len,
                           size_t line, const char* key, Error* e) {
    json_error_t jerr;
    json_t* obj = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!obj)
        return errorf(e, "%s:%zu: not valid JSON: %s (each line must be one JSON object)", s->path, line, jerr.text);
    int rc = 0;
    json_t* field = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (!json_is_object(obj))
        rc = errorf(e, "%s:%zu: not a JSON object (each line must look like {\"%s\": \"...\"})", s->path, line, key);
    else if (!field)
        rc = errorf(e, "%s:%zu: the object has no field \"%s\" (set data.jsonl_key to the field holding the text)",
                    s->path, line, key);
    else if (!json_is_string(field))
        rc = errorf(e, "%s:%zu: field \"%s\" is not a string", s->path, line, key);
    else {
        append_document(b, tok, json_string_value(field), json_string_length(field));
        s->n_docs++;
    }
    json_decref(obj);
    return rc;
}

static int is_blank(const char* p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') return 0;
    return 1;
}

static int read_jsonl(TokenStream* s, TokenBuf* b, const Tokenizer* tok, const char* key, Error* e) {
    size_t len;
    char* text = read_file(s->path, &len, e);
    if (!text) return -1;
    int rc = 0;
    size_t line = 1;
    for (size_t at = 0; at < len && rc == 0; line++) {
        const char* nl = memchr(text + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
        if (!is_blank(text + at, n)) rc = read_jsonl_line(s, b, tok, text + at, n, line, key, e);
        at += n + 1;
    }
    free(text);
    return rc;
}

static int read_binidx(TokenStream* s, Error* e) {
    if (binidx_open(&s->bin, s->path, e) != 0) return -1;
    s->tokens = s->bin.tokens;
    s->token_bytes = s->bin.token_bytes;
    s->n = s->bin.n_tokens;
    s->n_docs = s->bin.n_doc;
    return 0;
}

static int ends_with(const char* s, const char* suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

// Resolves format "auto" and strips a .bin/.idx suffix from binidx paths. Sets s->path, s->format.
static int resolve_format(TokenStream* s, const char* path, const char* format, Error* e) {
    int named_bin = ends_with(path, ".bin") || ends_with(path, ".idx");
    char* prefix = xstrdup(path);
    if (named_bin) prefix[strlen(prefix) - 4] = 0;
    if (strcmp(format, "auto") == 0) {
        if (named_bin && binidx_exists(prefix)) format = "binidx";
        else if (binidx_exists(path)) format = "binidx";
        else if (ends_with(path, ".jsonl")) format = "jsonl";
        else format = "text";
    }
    if (strcmp(format, "binidx") == 0 && named_bin) {
        s->path = prefix;
    } else {
        s->path = xstrdup(path);
        free(prefix);
    }
    if (strcmp(format, "text") == 0) s->format = "text";
    else if (strcmp(format, "jsonl") == 0) s->format = "jsonl";
    else if (strcmp(format, "binidx") == 0) s->format = "binidx";
    else return errorf(e, "%s: data format '%s' is not one of auto|text|jsonl|binidx", path, format);
    return 0;
}

// Reads the corpus into s according to s->format.
static int read_corpus(TokenStream* s, const char* jsonl_key, const Tokenizer* tok, Error* e) {
    if (strcmp(s->format, "binidx") == 0) return read_binidx(s, e);
    if (!tok) return errorf(e, "%s: a tokenizer is needed to read %s data", s->path, s->format);
    TokenBuf b = {NULL, tokenizer_vocab_size(tok) <= 65536 ? 2 : 4, 0, 0};
    int rc = strcmp(s->format, "text") == 0 ? read_text(s, &b, tok, e) : read_jsonl(s, &b, tok, jsonl_key, e);
    s->owned = b.data;
    s->tokens = b.data;
    s->token_bytes = b.token_bytes;
    s->n = b.n;
    return rc;
}

int tokenstream_open(TokenStream** out, const char* path, const char* format, const char* jsonl_key,
                     const Tokenizer* tok, Error* e) {
    *out = NULL;
    TokenStream* s = xcalloc(1, sizeof *s);
    int rc = resolve_format(s, path, format, e);
    if (rc == 0) rc = read_corpus(s, jsonl_key, tok, e);
    if (rc == 0 && s->n == 0)
        rc = errorf(e, "%s: empty corpus: %s (add data, or check data.format)", s->path,
                    strcmp(s->format, "jsonl") == 0 ? "no documents (every line is blank)" : "no tokens");
    if (rc != 0) {
        tokenstream_free(s);
        return -1;
    }
    s->vocab_limit = tok ? (uint64_t)tokenizer_vocab_size(tok) : (s->token_bytes == 2 ? 65536u : 2147483648u);
    snprintf(s->describe, sizeof s->describe, "%s %s: %zu documents, %zu tokens", s->format, s->path, s->n_docs,
             s->n);
    *out = s;
    return 0;
}

size_t tokenstream_len(const TokenStream* s) { return s->n; }

uint32_t tokenstream_at(const TokenStream* s, size_t i) {
    if (s->token_bytes == 2) return ((const uint16_t*)s->tokens)[i];
    return ((const uint32_t*)s->tokens)[i];
}

size_t tokenstream_documents(const TokenStream* s) { return s->n_docs; }

const char* tokenstream_describe(const TokenStream* s) { return s->describe; }

void tokenstream_free(TokenStream* s) {
    if (!s) return;
    binidx_close(&s->bin);
    free(s->owned);
    free(s->path);
    free(s);
}

// ============================================================================ sampling arithmetic

static int is_prime(uint64_t n) {
    if (n < 2) return 0;
    if (n % 2 == 0 || n % 3 == 0) return n < 4;
    for (uint64_t d = 5; d <= n / d; d += 6)
        if (n % d == 0 || n % (d + 2) == 0) return 0;
    return 1;
}

uint64_t textloader_sampling_prime(uint64_t n) {
    for (uint64_t p = n; p >= 2; p--)
        if (p % 3 == 2 && is_prime(p)) return p;
    return 1;
}

// (a * b) mod m for a, b < m without overflow.
static uint64_t mulmod(uint64_t a, uint64_t b, uint64_t m) {
    if (m <= UINT32_MAX) return (a * b) % m;
    uint64_t r = 0;
    for (a %= m; b > 0; b >>= 1) {
        if (b & 1) r = (r >= m - a) ? r - (m - a) : r + a;  // r = (r + a) mod m
        a = (a >= m - a) ? a - (m - a) : a + a;              // a = 2a mod m
    }
    return r;
}

// ============================================================================ loaders

typedef struct TextLoader {
    DataLoader base;       // first member: a DataLoader* points here
    const TokenStream* s;
    size_t begin;          // first token of the range
    uint64_t n_windows;    // whole windows of ctx_len (+1 target) in the range
    int ctx_len;
    int train;             // 1: RWKV scrambled sampling, 0: consecutive windows
    uint64_t p;            // sampling prime
    uint64_t dp_rank, dp_size;
    uint64_t pos;          // samples consumed by this rank
    char describe[1400];
} TextLoader;

uint64_t textloader_sample_window(uint64_t p, uint64_t k, uint64_t dp_rank, uint64_t dp_size) {
    uint64_t p_phi = (uint64_t)floor((double)p * 0.618033988749895);
    // ii = 1 + k*D + r, reduced mod p before cubing (ii^3 mod p only depends on ii mod p).
    uint64_t ii = (mulmod(k % p, dp_size % p, p) + (dp_rank + 1) % p) % p;
    uint64_t cube = mulmod(mulmod(ii, ii, p), ii, p);
    return mulmod(p_phi % p, cube, p);
}

// Window index (0-based) of this rank's sample k.
static uint64_t window_of(const TextLoader* L, uint64_t k) {
    if (!L->train) return k % L->n_windows;
    return textloader_sample_window(L->p, k, L->dp_rank, L->dp_size);
}

static int check_token(const TextLoader* L, uint32_t t, size_t at, Error* e) {
    if ((uint64_t)t < L->s->vocab_limit) return 0;
    return errorf(e, "%s: token %u at position %zu is outside the tokenizer's vocabulary of %llu (the data was "
                  "made with another tokenizer: set data.tokenizer to match)", L->s->path, t, at,
                  (unsigned long long)L->s->vocab_limit);
}

static int loader_next_batch(DataLoader* dl, Batch* b, Error* e) {
    TextLoader* L = (TextLoader*)dl;
    if (b->T != L->ctx_len)
        return errorf(e, "%s: batch has T = %d but the loader was made for ctx_len %d", L->s->path, b->T, L->ctx_len);
    for (int row = 0; row < b->B; row++) {
        size_t start = L->begin + (size_t)window_of(L, L->pos + (uint64_t)row) * (size_t)L->ctx_len;
        int32_t* x = b->tokens + (size_t)row * (size_t)b->T;   // (T)
        int32_t* y = b->targets + (size_t)row * (size_t)b->T;  // (T)
        for (int t = 0; t <= b->T; t++) {
            uint32_t tok = tokenstream_at(L->s, start + (size_t)t);
            if (check_token(L, tok, start + (size_t)t, e) != 0) return -1;
            if (t < b->T) x[t] = (int32_t)tok;
            if (t > 0) y[t - 1] = (int32_t)tok;
        }
    }
    L->pos += (uint64_t)b->B;
    return 0;
}

static uint64_t loader_get_position(const DataLoader* dl) { return ((const TextLoader*)dl)->pos; }

static void loader_set_position(DataLoader* dl, uint64_t pos) { ((TextLoader*)dl)->pos = pos; }

static void loader_destroy(DataLoader* dl) { free(dl); }

static TextLoader* loader_new(const TokenStream* s, size_t begin, size_t end, int ctx_len, Error* e) {
    if (ctx_len < 1) {
        errorf(e, "%s: ctx_len %d must be >= 1 (set train.ctx_len)", s->path, ctx_len);
        return NULL;
    }
    if (begin > end || end > s->n) {
        errorf(e, "%s: token range [%zu, %zu) is outside the stream of %zu tokens", s->path, begin, end, s->n);
        return NULL;
    }
    if (end - begin < (size_t)ctx_len + 2) {
        errorf(e, "%s (tokens %zu..%zu): only %zu tokens, need at least ctx_len+2 = %zu: lower train.ctx_len or "
               "add data", s->path, begin, end, end - begin, (size_t)ctx_len + 2);
        return NULL;
    }
    TextLoader* L = xcalloc(1, sizeof *L);
    L->s = s;
    L->begin = begin;
    L->ctx_len = ctx_len;
    L->n_windows = (end - begin - 1) / (size_t)ctx_len;
    L->base.next_batch = loader_next_batch;
    L->base.get_position = loader_get_position;
    L->base.set_position = loader_set_position;
    L->base.destroy = loader_destroy;
    L->base.n_tokens = end - begin;
    L->base.describe = L->describe;
    return L;
}

DataLoader* textloader_create_train(const TokenStream* s, size_t begin, size_t end, int ctx_len, int dp_rank,
                                    int dp_size, Error* e) {
    if (dp_size < 1 || dp_rank < 0 || dp_rank >= dp_size) {
        errorf(e, "%s: data-parallel rank %d of %d is invalid", s->path, dp_rank, dp_size);
        return NULL;
    }
    TextLoader* L = loader_new(s, begin, end, ctx_len, e);
    if (!L) return NULL;
    L->train = 1;
    L->p = textloader_sampling_prime(L->n_windows);
    L->dp_rank = (uint64_t)dp_rank;
    L->dp_size = (uint64_t)dp_size;
    snprintf(L->describe, sizeof L->describe,
             "train %s, tokens [%zu, %zu): %llu windows of %d, %llu sampled per epoch, dp rank %d/%d", s->describe,
             begin, end, (unsigned long long)L->n_windows, ctx_len, (unsigned long long)L->p, dp_rank, dp_size);
    return &L->base;
}

DataLoader* textloader_create_eval(const TokenStream* s, size_t begin, size_t end, int ctx_len, Error* e) {
    TextLoader* L = loader_new(s, begin, end, ctx_len, e);
    if (!L) return NULL;
    snprintf(L->describe, sizeof L->describe, "eval %s, tokens [%zu, %zu): %llu windows of %d", s->describe, begin,
             end, (unsigned long long)L->n_windows, ctx_len);
    return &L->base;
}
