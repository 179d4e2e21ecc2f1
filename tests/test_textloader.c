// test_textloader.c — the text data path: text / JSONL / binidx corpora become one token stream
// (counts, end-of-document separators), RWKV's scrambled window sampling (x/y shift, every window once
// per p samples, determinism, exact resume via set_position, data-parallel sharding), the eval loader,
// and every error a user can cause with bad data.
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/textloader.h"
#include "tests/testutil.h"

static char g_dir[64];

static const char* tmp_path(const char* name) {
    static char buf[4][512];
    static int slot = 0;
    slot = (slot + 1) % 4;
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", g_dir, name);
    return buf[slot];
}

static void write_bytes(const char* name, const void* data, size_t n) {
    FILE* f = fopen(tmp_path(name), "wb");
    if (!f || fwrite(data, 1, n, f) != n) fatal("cannot write test fixture %s", tmp_path(name));
    fclose(f);
}

static void write_text(const char* name, const char* text) { write_bytes(name, text, strlen(text)); }

// ---------------------------------------------------------------------------- binidx fixtures

typedef struct Idx {
    unsigned char* bytes;
    size_t len;
} Idx;

static void put_bytes(Idx* x, const void* p, size_t n) {
    x->bytes = xrealloc(x->bytes, x->len + n);
    memcpy(x->bytes + x->len, p, n);
    x->len += n;
}

// Builds an MMIDIDX v1 index for documents of the given sizes (in tokens), stored back to back.
static Idx make_idx(int dtype, const int32_t* doc_sizes, size_t n_docs) {
    Idx x = {NULL, 0};
    int token_bytes = dtype == 8 ? 2 : 4;
    put_bytes(&x, "MMIDIDX\0\0", 9);
    uint64_t version = 1, n_seq = n_docs, n_doc = n_docs + 1;
    unsigned char code = (unsigned char)dtype;
    put_bytes(&x, &version, 8);
    put_bytes(&x, &code, 1);
    put_bytes(&x, &n_seq, 8);
    put_bytes(&x, &n_doc, 8);
    put_bytes(&x, doc_sizes, 4 * n_docs);
    int64_t ptr = 0;
    for (size_t i = 0; i < n_docs; i++) {
        put_bytes(&x, &ptr, 8);
        ptr += (int64_t)doc_sizes[i] * token_bytes;
    }
    for (int64_t i = 0; i <= (int64_t)n_docs; i++) put_bytes(&x, &i, 8);
    return x;
}

// Writes <name>.idx and <name>.bin: int32 (dtype 4) or uint16 (dtype 8) tokens.
static void write_binidx(const char* name, int dtype, const uint32_t* tokens, size_t n, const int32_t* doc_sizes,
                         size_t n_docs) {
    Idx x = make_idx(dtype, doc_sizes, n_docs);
    char file[256];
    snprintf(file, sizeof file, "%s.idx", name);
    write_bytes(file, x.bytes, x.len);
    free(x.bytes);
    snprintf(file, sizeof file, "%s.bin", name);
    void* bin = xmalloc(4 * n + 1);
    for (size_t i = 0; i < n; i++) {
        if (dtype == 8) ((uint16_t*)bin)[i] = (uint16_t)tokens[i];
        else ((int32_t*)bin)[i] = (int32_t)tokens[i];
    }
    write_bytes(file, bin, n * (dtype == 8 ? 2 : 4));
    free(bin);
}

// A binidx corpus whose token i is i (int32), so a window's first token is its start position.
static TokenStream* counting_stream(size_t n) {
    uint32_t* t = xmalloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++) t[i] = (uint32_t)i;
    int32_t sizes[2] = {(int32_t)(n / 2), (int32_t)(n - n / 2)};
    write_binidx("count", 4, t, n, sizes, 2);
    free(t);
    TokenStream* s = NULL;
    Error e;
    if (tokenstream_open(&s, tmp_path("count"), "binidx", "text", NULL, &e) != 0) fatal("%s", e.msg);
    return s;
}

// ---------------------------------------------------------------------------- stream contents

static int count_zeros(const TokenStream* s) {
    int z = 0;
    for (size_t i = 0; i < tokenstream_len(s); i++) z += tokenstream_at(s, i) == 0;
    return z;
}

static size_t encoded_len(const Tokenizer* t, const char* text) {
    int32_t* ids;
    size_t n;
    tokenizer_encode(t, text, strlen(text), &ids, &n);
    free(ids);
    return n;
}

static int check_text(const Tokenizer* bytes, const Tokenizer* world) {
    const char* text = "The quick brown fox jumps over the lazy dog.\nÜber naïve café — 日本語 text.\n";
    write_text("corpus.txt", text);
    TokenStream* s;
    Error e = {{0}};
    int fails = 0;
    int rc = tokenstream_open(&s, tmp_path("corpus.txt"), "auto", "text", bytes, &e);
    fails += check_true("text file opens with the byte tokenizer", rc == 0, e.msg);
    if (rc) return fails;
    int same = tokenstream_len(s) == strlen(text);
    for (size_t i = 0; same && i < strlen(text); i++) same = tokenstream_at(s, i) == (unsigned char)text[i];
    printf("  %s\n", tokenstream_describe(s));
    fails += check_true("bytes: one token per byte, equal to the byte, no separator", same && count_zeros(s) == 0,
                        "tokens differ");
    tokenstream_free(s);

    rc = tokenstream_open(&s, tmp_path("corpus.txt"), "text", "text", world, &e);
    fails += check_true("text file opens with the World tokenizer", rc == 0, e.msg);
    if (rc) return fails;
    size_t want = encoded_len(world, text) + 1;
    printf("  %s (want %zu tokens: the encoding + 1 end-of-document)\n", tokenstream_describe(s), want);
    fails += check_true("world: whole file = one document followed by token 0",
                        tokenstream_len(s) == want && tokenstream_at(s, want - 1) == 0 && count_zeros(s) == 1 &&
                            tokenstream_documents(s) == 1, "count or separator wrong");
    tokenstream_free(s);
    return fails;
}

static int check_jsonl(const Tokenizer* bytes, const Tokenizer* world) {
    const char* docs[3] = {"first document", "second: \"quoted\" and \xc3\xa9", "third\nhas a newline"};
    write_text("corpus.jsonl",
               "{\"id\": 1, \"text\": \"first document\"}\n"
               "\n"
               "{\"text\": \"second: \\\"quoted\\\" and \\u00e9\", \"meta\": {\"x\": [1, 2]}}\r\n"
               "   \n"
               "{\"text\": \"third\\nhas a newline\"}");  // no final newline
    TokenStream* s;
    Error e = {{0}};
    int fails = 0;
    int rc = tokenstream_open(&s, tmp_path("corpus.jsonl"), "auto", "text", world, &e);
    fails += check_true("JSONL opens (blank lines, CRLF, extra fields, no final newline)", rc == 0, e.msg);
    if (rc) return fails;
    printf("  %s\n", tokenstream_describe(s));
    size_t at = 0;
    int ok = tokenstream_documents(s) == 3 && count_zeros(s) == 3;
    for (int d = 0; d < 3 && ok; d++) {
        at += encoded_len(world, docs[d]);
        ok = tokenstream_at(s, at) == 0;  // the separator right after document d
        at++;
    }
    ok = ok && at == tokenstream_len(s);
    fails += check_true("world JSONL: 3 documents, each followed by token 0 at the expected position", ok,
                        "separator positions differ");
    tokenstream_free(s);

    rc = tokenstream_open(&s, tmp_path("corpus.jsonl"), "jsonl", "text", bytes, &e);
    size_t want = strlen(docs[0]) + strlen(docs[1]) + strlen(docs[2]);
    fails += check_true("bytes JSONL: documents concatenated without separators",
                        rc == 0 && tokenstream_len(s) == want && tokenstream_at(s, strlen(docs[0])) == 's',
                        e.msg);
    if (rc == 0) tokenstream_free(s);
    return fails;
}

static int check_binidx(void) {
    const uint32_t toks[10] = {5, 6, 7, 0, 65535, 9, 0, 1, 2, 0};
    const int32_t sizes[3] = {4, 3, 3};
    write_binidx("u16", 8, toks, 10, sizes, 3);
    const char* spellings[4][2] = {{"u16", "auto"}, {"u16.bin", "auto"}, {"u16.idx", "binidx"}, {"u16", "binidx"}};
    int fails = 0;
    for (int i = 0; i < 4; i++) {
        TokenStream* s;
        Error e = {{0}};
        int rc = tokenstream_open(&s, tmp_path(spellings[i][0]), spellings[i][1], "text", NULL, &e);
        int ok = rc == 0 && tokenstream_len(s) == 10 && tokenstream_documents(s) == 4;
        for (size_t j = 0; ok && j < 10; j++) ok = tokenstream_at(s, j) == toks[j];
        if (rc == 0) printf("  %s\n", tokenstream_describe(s));
        char name[128];
        snprintf(name, sizeof name, "binidx uint16 as '%s' (format %s): 10 tokens read back exactly",
                 spellings[i][0], spellings[i][1]);
        fails += check_true(name, ok, rc ? e.msg : "tokens differ");
        if (rc == 0) tokenstream_free(s);
    }
    const uint32_t big[4] = {70000, 1, 0, 123456};
    const int32_t big_sizes[1] = {4};
    write_binidx("i32", 4, big, 4, big_sizes, 1);
    TokenStream* s;
    Error e = {{0}};
    int rc = tokenstream_open(&s, tmp_path("i32"), "auto", "text", NULL, &e);
    fails += check_true("binidx int32 (dtype 4) holds ids above 65535",
                        rc == 0 && tokenstream_len(s) == 4 && tokenstream_at(s, 0) == 70000 &&
                            tokenstream_at(s, 3) == 123456, e.msg);
    if (rc == 0) tokenstream_free(s);
    return fails;
}

// ---------------------------------------------------------------------------- sampling

static uint64_t brute_prime(uint64_t n) {
    for (uint64_t p = n; p >= 2; p--) {
        int prime = 1;
        for (uint64_t d = 2; d * d <= p && prime; d++) prime = p % d != 0;
        if (prime && p % 3 == 2) return p;
    }
    return 1;
}

static int check_primes(void) {
    int ok = 1;
    for (uint64_t n = 0; n < 3000 && ok; n++) ok = textloader_sampling_prime(n) == brute_prime(n);
    int fails = check_true("sampling prime = largest prime <= n with p % 3 == 2, for n < 3000 (brute force)", ok, "");
    // RWKV's MiniPile demo uses magic_prime 2926181 for 2926209 windows (reference/rwkv7.md §5.5).
    uint64_t p = textloader_sampling_prime(2926209);
    printf("  sampling_prime(2926209) = %" PRIu64 "\n", p);
    fails += check_true("MiniPile demo: sampling_prime(2926209) == 2926181", p == 2926181, "");
    double t0 = now_seconds();
    uint64_t big = textloader_sampling_prime(1000000000000ull);
    printf("  sampling_prime(1e12) = %" PRIu64 " in %.3f s\n", big, now_seconds() - t0);
    fails += check_true("a 1e12-window corpus gets a prime p = 2 mod 3 just below 1e12", big % 3 == 2 &&
                        big > 999999990000ull && big <= 1000000000000ull, "");
    return fails;
}

// The sampling formula written out directly (128-bit arithmetic), for any p.
static uint64_t formula_window(uint64_t p, uint64_t k, uint64_t r, uint64_t d) {
    unsigned __int128 ii = ((unsigned __int128)1 + (unsigned __int128)k * d + r) % p;
    unsigned __int128 cube = ii * ii % p * ii % p;
    uint64_t phi = (uint64_t)((double)p * 0.618033988749895);
    return (uint64_t)(cube * phi % p);
}

static int check_formula(void) {
    // Small, RWKV's MiniPile prime, the largest 32-bit prime, 2^61 - 1 and the largest 64-bit prime.
    const uint64_t primes[5] = {311, 2926181, 4294967291ull, 2305843009213693951ull, 18446744073709551557ull};
    int ok = 1;
    TestRng r;
    test_rng_seed(&r, 3);
    for (int i = 0; i < 5; i++) {
        uint64_t p = primes[i];
        for (int j = 0; j < 2000 && ok; j++) {
            uint64_t k = (uint64_t)test_rng_uniform(&r, 0.0f, 1e9f), rank = (uint64_t)(j % 8), d = 8;
            ok = textloader_sample_window(p, k, rank, d) == formula_window(p, k, rank, d);
            if (!ok) printf("  p %" PRIu64 " k %" PRIu64 " differs\n", p, k);
        }
    }
    return check_true("window index = (floor(p*0.618..) * ii^3) mod p, ii = 1 + k*D + r, for 64-bit p (vs 128-bit math)", ok, "");
}

// Reads n samples of B=1 from a loader; returns the window start token of each (x[0] in a counting stream).
static void read_starts(DataLoader* dl, int T, uint64_t* starts, size_t n) {
    Batch b;
    batch_alloc(&b, 1, T);
    Error e;
    for (size_t i = 0; i < n; i++) {
        if (dl->next_batch(dl, &b, &e) != 0) fatal("%s", e.msg);
        starts[i] = (uint64_t)b.tokens[0];
    }
    batch_free(&b);
}

static int check_train_sampling(void) {
    const size_t N = 5000;
    const int T = 16;
    TokenStream* s = counting_stream(N);
    Error e = {{0}};
    DataLoader* dl = textloader_create_train(s, 0, N, T, 0, 1, &e);
    if (!dl) fatal("%s", e.msg);
    printf("  %s\n", dl->describe);
    uint64_t n_windows = (N - 1) / T, p = textloader_sampling_prime(n_windows);
    int fails = 0;

    // x/y: x = window[:-1], y = window[1:], starting at a multiple of ctx_len.
    Batch b;
    batch_alloc(&b, 4, T);
    int ok = dl->next_batch(dl, &b, &e) == 0;
    for (int row = 0; row < 4 && ok; row++) {
        int32_t start = b.tokens[row * T];
        ok = start % T == 0 && (uint64_t)start / T < p &&
             (uint64_t)start / T == formula_window(p, (uint64_t)row, 0, 1);
        for (int t = 0; t < T && ok; t++)
            ok = b.tokens[row * T + t] == start + t && b.targets[row * T + t] == start + t + 1;
    }
    fails += check_true("x = window[:-1], y = window[1:] (targets = inputs shifted by one), windows per formula", ok,
                        e.msg);
    batch_free(&b);
    dl->destroy(dl);

    // p samples visit each of the windows 0..p-1 exactly once; the next p repeat the same order.
    dl = textloader_create_train(s, 0, N, T, 0, 1, &e);
    uint64_t* starts = xmalloc(2 * p * sizeof *starts);
    read_starts(dl, T, starts, 2 * p);
    int* seen = xcalloc(p, sizeof *seen);
    ok = 1;
    for (uint64_t i = 0; i < p && ok; i++) {
        ok = starts[i] % T == 0 && starts[i] / T < p && starts[i] + T < N;
        if (ok) seen[starts[i] / T]++;
    }
    for (uint64_t w = 0; w < p && ok; w++) ok = seen[w] == 1;
    printf("  %" PRIu64 " windows, p = %" PRIu64 ": first starts %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
           n_windows, p, starts[0], starts[1], starts[2], starts[3]);
    fails += check_true("over p samples every window 0..p-1 is visited exactly once", ok, "a window repeated or missed");
    ok = memcmp(starts, starts + p, p * sizeof *starts) == 0;
    fails += check_true("samples p..2p-1 repeat samples 0..p-1 (next epoch)", ok, "");
    fails += check_true("position counts samples", dl->get_position(dl) == 2 * p, "");
    dl->destroy(dl);

    // Determinism and exact resume: set_position(k) reproduces the batches after k samples.
    DataLoader* a = textloader_create_train(s, 0, N, T, 0, 1, &e);
    DataLoader* c = textloader_create_train(s, 0, N, T, 0, 1, &e);
    Batch ba, bc;
    batch_alloc(&ba, 3, T);
    batch_alloc(&bc, 3, T);
    for (int i = 0; i < 9; i++) a->next_batch(a, &ba, &e);  // 27 samples
    c->set_position(c, a->get_position(a));
    ok = a->get_position(a) == 27;
    for (int i = 0; i < 200 && ok; i++) {
        ok = a->next_batch(a, &ba, &e) == 0 && c->next_batch(c, &bc, &e) == 0 &&
             memcmp(ba.tokens, bc.tokens, 3 * T * sizeof(int32_t)) == 0 &&
             memcmp(ba.targets, bc.targets, 3 * T * sizeof(int32_t)) == 0;
    }
    fails += check_true("set_position(27) reproduces the next 200 batches exactly", ok, "");
    a->set_position(a, 0);
    DataLoader* fresh = textloader_create_train(s, 0, N, T, 0, 1, &e);
    ok = 1;
    for (int i = 0; i < 50 && ok; i++) {
        ok = a->next_batch(a, &ba, &e) == 0 && fresh->next_batch(fresh, &bc, &e) == 0 &&
             memcmp(ba.tokens, bc.tokens, 3 * T * sizeof(int32_t)) == 0;
    }
    fails += check_true("deterministic: a rewound loader equals a fresh one", ok, "");
    batch_free(&ba);
    batch_free(&bc);
    a->destroy(a);
    c->destroy(c);
    fresh->destroy(fresh);

    // Data parallel: rank r's sample k is global sample k*4 + r; ranks are disjoint within an epoch.
    const uint64_t K = p / 4;
    uint64_t* single = xmalloc(4 * K * sizeof *single);
    dl = textloader_create_train(s, 0, N, T, 0, 1, &e);
    read_starts(dl, T, single, 4 * K);
    dl->destroy(dl);
    memset(seen, 0, p * sizeof *seen);
    ok = 1;
    for (int r = 0; r < 4; r++) {
        uint64_t* mine = xmalloc(K * sizeof *mine);
        dl = textloader_create_train(s, 0, N, T, r, 4, &e);
        read_starts(dl, T, mine, K);
        dl->destroy(dl);
        for (uint64_t k = 0; k < K && ok; k++) {
            ok = mine[k] == single[4 * k + (uint64_t)r];
            seen[mine[k] / T]++;
        }
        free(mine);
    }
    size_t union_size = 0;
    for (uint64_t w = 0; w < p && ok; w++) {
        ok = seen[w] <= 1;
        union_size += (size_t)seen[w];
    }
    for (uint64_t i = 0; i < 4 * K && ok; i++) ok = seen[single[i] / T] == 1;
    printf("  dp: 4 ranks x %" PRIu64 " samples, union %zu windows\n", K, union_size);
    fails += check_true("dp_size 4: ranks see disjoint windows whose union is the single-rank sequence",
                        ok && union_size == 4 * K, "");
    free(single);
    free(seen);
    free(starts);

    // A sub-range [1000, 3000): windows stay inside it.
    dl = textloader_create_train(s, 1000, 3000, T, 0, 1, &e);
    uint64_t q = textloader_sampling_prime((3000 - 1000 - 1) / T);
    starts = xmalloc(q * sizeof *starts);
    read_starts(dl, T, starts, q);
    ok = 1;
    for (uint64_t i = 0; i < q && ok; i++) ok = starts[i] >= 1000 && (starts[i] - 1000) % T == 0 && starts[i] + T < 3000;
    fails += check_true("windows of a token sub-range start inside it and end before its end", ok, "");
    free(starts);
    dl->destroy(dl);
    tokenstream_free(s);
    return fails;
}

static int check_eval(void) {
    const size_t N = 1000;
    const int T = 32;
    TokenStream* s = counting_stream(N);
    Error e = {{0}};
    DataLoader* a = textloader_create_eval(s, 100, N, T, &e);
    DataLoader* c = textloader_create_eval(s, 100, N, T, &e);
    printf("  %s\n", a->describe);
    uint64_t n_windows = (N - 100 - 1) / T;
    uint64_t* sa = xmalloc(3 * n_windows * sizeof *sa);
    uint64_t* sc = xmalloc(3 * n_windows * sizeof *sc);
    read_starts(a, T, sa, 3 * n_windows);
    read_starts(c, T, sc, 3 * n_windows);
    int ok = 1;
    for (uint64_t k = 0; k < 3 * n_windows && ok; k++) ok = sa[k] == 100 + (k % n_windows) * (uint64_t)T;
    int fails = check_true("eval: consecutive windows from the range start, wrapping after the last whole one", ok, "");
    fails += check_true("eval: deterministic", memcmp(sa, sc, 3 * n_windows * sizeof *sa) == 0, "");
    c->set_position(c, 5);
    read_starts(c, T, sc, 1);
    fails += check_true("eval: set_position(5) gives window 5", sc[0] == 100 + 5 * (uint64_t)T, "");
    Batch b;
    batch_alloc(&b, 2, T);
    ok = c->next_batch(c, &b, &e) == 0;
    for (int t = 0; t < T && ok; t++) ok = b.targets[t] == b.tokens[t] + 1 && b.targets[T + t] == b.tokens[T + t] + 1;
    fails += check_true("eval: targets are inputs shifted by one", ok, "");
    batch_free(&b);
    free(sa);
    free(sc);
    a->destroy(a);
    c->destroy(c);
    tokenstream_free(s);
    return fails;
}

// ---------------------------------------------------------------------------- errors

// Expects tokenstream_open to fail with a message containing `want`.
static int expect_open_error(const char* what, const char* file, const char* format, const Tokenizer* tok,
                             const char* want) {
    TokenStream* s = (TokenStream*)1;
    Error e = {{0}};
    int rc = tokenstream_open(&s, tmp_path(file), format, "text", tok, &e);
    printf("  %-32s -> %s\n", what, e.msg);
    char name[128], detail[256];
    snprintf(name, sizeof name, "rejects %s", what);
    snprintf(detail, sizeof detail, "want \"%s\" in the message", want);
    if (rc == 0) tokenstream_free(s);
    return check_true(name, rc == -1 && s == NULL && strstr(e.msg, want) != NULL, detail);
}

static void write_idx_variant(const char* name, size_t offset, const void* patch, size_t n, size_t cut) {
    const uint32_t toks[6] = {1, 2, 0, 3, 4, 0};
    const int32_t sizes[2] = {3, 3};
    write_binidx(name, 8, toks, 6, sizes, 2);
    Idx x = make_idx(8, sizes, 2);
    if (patch) memcpy(x.bytes + offset, patch, n);
    char file[256];
    snprintf(file, sizeof file, "%s.idx", name);
    write_bytes(file, x.bytes, cut ? cut : x.len);
    free(x.bytes);
}

static int check_stream_errors(const Tokenizer* bytes, const Tokenizer* world) {
    int fails = 0;
    fails += expect_open_error("missing text file", "nope.txt", "auto", bytes, "nope.txt: cannot open");
    fails += expect_open_error("missing JSONL file", "nope.jsonl", "jsonl", bytes, "nope.jsonl: cannot open");
    fails += expect_open_error("missing binidx pair", "nope", "binidx", NULL, "nope.idx: cannot open");
    write_text("empty.txt", "");
    fails += expect_open_error("empty text file", "empty.txt", "auto", world, "empty.txt: empty corpus");
    write_text("blank.jsonl", "\n  \n\n");
    fails += expect_open_error("JSONL with only blank lines", "blank.jsonl", "auto", world, "blank.jsonl: empty corpus");
    write_text("array.jsonl", "{\"text\": \"ok\"}\n[\"text\", \"no\"]\n");
    fails += expect_open_error("JSONL line not an object", "array.jsonl", "auto", bytes, "array.jsonl:2: not a JSON object");
    write_text("broken.jsonl", "{\"text\": \"ok\"}\n\n{\"text\": \"unterminated}\n");
    fails += expect_open_error("JSONL line not valid JSON", "broken.jsonl", "auto", bytes, "broken.jsonl:3: not valid JSON");
    write_text("nokey.jsonl", "{\"text\": \"ok\"}\n{\"content\": \"x\"}\n");
    fails += expect_open_error("JSONL line lacking the key", "nokey.jsonl", "auto", bytes,
                               "nokey.jsonl:2: the object has no field \"text\" (set data.jsonl_key");
    write_text("numkey.jsonl", "{\"text\": 42}\n");
    fails += expect_open_error("JSONL key not a string", "numkey.jsonl", "auto", bytes,
                               "numkey.jsonl:1: field \"text\" is not a string");
    fails += expect_open_error("unknown format", "empty.txt", "csv", bytes, "data format 'csv' is not one of");
    fails += expect_open_error("text without a tokenizer", "empty.txt", "text", NULL, "a tokenizer is needed");

    write_idx_variant("magic", 0, "XXIDIDX", 7, 0);
    fails += expect_open_error("binidx bad magic", "magic", "binidx", NULL, "magic.idx: not an MMIDIDX index");
    const uint64_t v2 = 2;
    write_idx_variant("version", 9, &v2, 8, 0);
    fails += expect_open_error("binidx bad version", "version", "binidx", NULL, "version.idx: MMIDIDX version 2");
    const unsigned char f32 = 7;
    write_idx_variant("dtype", 17, &f32, 1, 0);
    fails += expect_open_error("binidx unsupported dtype", "dtype", "binidx", NULL, "dtype.idx: token dtype code 7");
    write_idx_variant("shortidx", 0, NULL, 0, 50);
    fails += expect_open_error("binidx truncated .idx", "shortidx", "binidx", NULL, "shortidx.idx: 50 bytes");
    write_idx_variant("tinyidx", 0, NULL, 0, 20);
    fails += expect_open_error("binidx truncated header", "tinyidx", "binidx", NULL, "tinyidx.idx: truncated");
    const int64_t bad_ptr = 4;
    write_idx_variant("gap", 34 + 8 + 8, &bad_ptr, 8, 0);
    fails += expect_open_error("binidx sequences not back to back", "gap", "binidx", NULL,
                               "gap.idx: sequence 1 has size 3 at byte 4, expected");
    const int32_t big_size = 1000;
    write_idx_variant("shortbin", 34 + 4, &big_size, 4, 0);
    fails += expect_open_error("binidx .bin shorter than its .idx", "shortbin", "binidx", NULL,
                               "shortbin.bin: 12 bytes, but its .idx describes 2006 bytes");
    write_idx_variant("nobin", 0, NULL, 0, 0);
    unlink(tmp_path("nobin.bin"));
    fails += expect_open_error("binidx .bin missing", "nobin", "binidx", NULL, "nobin.bin: cannot open");
    const int32_t no_docs[1] = {0};
    write_binidx("emptybin", 8, NULL, 0, no_docs, 1);
    fails += expect_open_error("binidx with no tokens", "emptybin", "binidx", NULL, "emptybin: empty corpus");
    return fails;
}

static int check_loader_errors(const Tokenizer* bytes) {
    int fails = 0;
    write_text("short.txt", "0123456789");  // 10 tokens
    TokenStream* s;
    Error e = {{0}};
    tokenstream_open(&s, tmp_path("short.txt"), "auto", "text", bytes, &e);
    DataLoader* dl = textloader_create_train(s, 0, 10, 9, 0, 1, &e);
    printf("  10 tokens, ctx_len 9 -> %s\n", e.msg);
    fails += check_true("rejects a corpus shorter than ctx_len+2 (train)",
                        dl == NULL && strstr(e.msg, "only 10 tokens, need at least ctx_len+2 = 11: lower train.ctx_len"),
                        e.msg);
    dl = textloader_create_eval(s, 0, 10, 9, &e);
    fails += check_true("rejects a corpus shorter than ctx_len+2 (eval)", dl == NULL && strstr(e.msg, "only 10 tokens"),
                        e.msg);
    dl = textloader_create_train(s, 0, 10, 8, 0, 1, &e);
    fails += check_true("accepts exactly ctx_len+2 tokens", dl != NULL, e.msg);
    if (dl) {
        Batch b;
        batch_alloc(&b, 2, 8);
        int ok = dl->next_batch(dl, &b, &e) == 0 && b.tokens[0] == '0' && b.targets[7] == '8';
        fails += check_true("a single window (p = 1) is sampled every time", ok, e.msg);
        batch_free(&b);
        batch_alloc(&b, 1, 7);
        int rc = dl->next_batch(dl, &b, &e);
        printf("  T mismatch -> %s\n", e.msg);
        fails += check_true("rejects a batch whose T differs from ctx_len", rc == -1 && strstr(e.msg, "T = 7"), e.msg);
        batch_free(&b);
        dl->destroy(dl);
    }
    dl = textloader_create_train(s, 0, 10, 4, 4, 4, &e);
    printf("  rank 4 of 4 -> %s\n", e.msg);
    fails += check_true("rejects dp_rank >= dp_size", dl == NULL && strstr(e.msg, "rank 4 of 4"), e.msg);
    dl = textloader_create_train(s, 5, 20, 4, 0, 1, &e);
    printf("  range [5, 20) -> %s\n", e.msg);
    fails += check_true("rejects a token range past the stream", dl == NULL && strstr(e.msg, "[5, 20)"), e.msg);
    tokenstream_free(s);

    // A uint16 binidx made with a bigger vocabulary, read with the byte tokenizer.
    uint32_t toks[40];
    for (int i = 0; i < 40; i++) toks[i] = i == 17 ? 300 : (uint32_t)i;
    const int32_t sizes[1] = {40};
    write_binidx("wide", 8, toks, 40, sizes, 1);
    tokenstream_open(&s, tmp_path("wide"), "auto", "text", bytes, &e);
    dl = textloader_create_eval(s, 0, 40, 8, &e);
    Batch b;
    batch_alloc(&b, 4, 8);
    int rc = dl->next_batch(dl, &b, &e);
    printf("  token 300 with the byte tokenizer -> %s\n", e.msg);
    fails += check_true("rejects tokens outside the tokenizer's vocabulary (no crash)",
                        rc == -1 && strstr(e.msg, "token 300 at position 17"), e.msg);
    batch_free(&b);
    dl->destroy(dl);
    tokenstream_free(s);
    return fails;
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", g_dir);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/modrwkv_textloader_XXXXXX");
    if (!mkdtemp(g_dir)) fatal("cannot create a temporary directory");
    Error e;
    Tokenizer* bytes = tokenizer_bytes();
    Tokenizer* world = tokenizer_from_spec("world", &e);
    if (!world) fatal("%s", e.msg);
    int fails = 0;
    fails += check_text(bytes, world);
    fails += check_jsonl(bytes, world);
    fails += check_binidx();
    fails += check_primes();
    fails += check_formula();
    fails += check_train_sampling();
    fails += check_eval();
    fails += check_stream_errors(bytes, world);
    fails += check_loader_errors(bytes);
    tokenizer_free(bytes);
    tokenizer_free(world);
    remove_dir();
    return test_summary("test_textloader", fails);
}
