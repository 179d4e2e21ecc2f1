// test_tokenizer.c — specification of the World and byte tokenizers (datasets/tokenizer.h,
// reference/rwkv7.md §7).
//
// Checks: the shipped test vectors exactly; decode(encode(s)) == s for the vectors, real text,
// random byte strings (invalid UTF-8, NULs, 0x80-0xFF) and random valid UTF-8; greedy longest match
// by brute force over the whole token list; escapes and CRLF in a hand-written vocab; every kind of
// bad vocab line rejected with FILE:LINE; decode range errors; spec resolution; load time, heap
// size and encoding speed of the World vocab.
#include "datasets/tokenizer.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_UNDER_ASAN 1
#endif
#endif

#ifdef TEST_UNDER_ASAN
// From the sanitizer runtime (declared here: GCC does not install sanitizer/allocator_interface.h).
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_in_use(void) { return __sanitizer_get_current_allocated_bytes(); }
#else
#include <malloc.h>
static size_t heap_in_use(void) {
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}
#endif

static const char* WORLD_VOCAB = "datasets/vocab/rwkv_vocab_v20230424.txt";

// ------------------------------------------------------------------------------------ helpers

static int rand_below(TestRng* r, int n) {
    int v = (int)test_rng_uniform(r, 0.0f, (float)n);
    return v < n ? v : n - 1;
}

// Printable rendering of up to 40 bytes of s for check names.
static const char* show(const char* s, size_t n) {
    static char buf[256];
    size_t o = 0;
    for (size_t i = 0; i < n && i < 40 && o < sizeof buf - 8; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\') buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", c);
    }
    if (n > 40) o += (size_t)snprintf(buf + o, sizeof buf - o, "...");
    buf[o] = '\0';
    return buf;
}

// True if decode(encode(s)) == s and encode never emits World id 0 (end-of-document) for text.
static bool round_trips(const Tokenizer* t, const char* s, size_t n, bool world) {
    int32_t* ids = NULL;
    size_t n_ids = 0;
    tokenizer_encode(t, s, n, &ids, &n_ids);
    bool ok = true;
    for (size_t i = 0; i < n_ids && world; i++)
        if (ids[i] == 0) ok = false;
    char* out = NULL;
    size_t out_len = 0;
    Error e = {{0}};
    if (tokenizer_decode(t, ids, n_ids, &out, &out_len, &e) != 0) ok = false;
    else ok = ok && out_len == n && memcmp(out, s, n) == 0 && out[out_len] == '\0';
    free(ids);
    free(out);
    return ok;
}

// The vocab file's own text: about 1 MB of real, mixed-script text.
static char* vocab_text(size_t* len) {
    Error e = {{0}};
    char* text = read_file(src_path(WORLD_VOCAB), len, &e);
    if (!text) fatal("%s", e.msg);
    return text;
}

// LAMBADA test passages (one JSON object with "text" per line); NULL if the file is absent.
static char** lambada_lines(size_t* n_lines, const char** path_used) {
    const char* candidates[] = {src_path("tests/data/lambada_test.jsonl")};
    for (int c = 0; c < 1; c++) {
        size_t len = 0;
        Error e = {{0}};
        char* text = candidates[c][0] && access(candidates[c], R_OK) == 0 ? read_file(candidates[c], &len, &e) : NULL;
        if (!text) continue;
        char** lines = NULL;
        size_t n = 0;
        for (char* line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            json_t* obj = json_loads(line, 0, NULL);
            json_t* s = obj ? json_object_get(obj, "text") : NULL;
            if (json_is_string(s)) {
                lines = xrealloc(lines, (n + 1) * sizeof *lines);
                lines[n++] = xstrdup(json_string_value(s));
            }
            json_decref(obj);
        }
        free(text);
        *n_lines = n;
        *path_used = candidates[c];
        return lines;
    }
    return NULL;
}

// ------------------------------------------------------------------------------------ World: basics

static int check_load_world(Tokenizer** out) {
    int fails = 0;
    Error e = {{0}};
    size_t heap_before = heap_in_use();
    double t0 = now_seconds();
    Tokenizer* t = tokenizer_load_world(src_path(WORLD_VOCAB), &e);
    double secs = now_seconds() - t0;
    double mb = (double)(heap_in_use() - heap_before) / 1e6;
    char detail[1100];
    snprintf(detail, sizeof detail, "%s", e.msg);
    fails += check_true("load shipped World vocab", t != NULL, detail);
    if (!t) return fails;
    // timings are printed for information only: speed goals live in benchmarks, not in unit tests
    printf("load time: %.3f s; heap: %.2f MB (limit 30 MB)\n", secs, mb);
    fails += check_true("heap for the World vocab < 30 MB", mb < 30.0, "too big");
    printf("vocab size %d, name %s\n", tokenizer_vocab_size(t), tokenizer_name(t));
    fails += check_true("World vocab size is 65536", tokenizer_vocab_size(t) == 65536, "wrong size");
    fails += check_true("World name is world:<path>", strncmp(tokenizer_name(t), "world:", 6) == 0 &&
                        strstr(tokenizer_name(t), "rwkv_vocab_v20230424.txt") != NULL, tokenizer_name(t));
    *out = t;
    return fails;
}

static int check_test_vectors(const Tokenizer* t) {
    int fails = 0;
    json_error_t jerr;
    json_t* root = json_load_file(src_path("tests/data/tokenizer-test-vectors.json"), 0, &jerr);
    fails += check_true("test vectors file parses", json_is_array(root), jerr.text);
    size_t i;
    json_t* v;
    json_array_foreach(root, i, v) {
        json_t* text = json_object_get(v, "text");
        json_t* want = json_object_get(v, "ids");
        const char* s = json_string_value(text);
        size_t n = json_string_length(text);
        int32_t* ids = NULL;
        size_t n_ids = 0;
        tokenizer_encode(t, s, n, &ids, &n_ids);
        bool same = n_ids == json_array_size(want);
        for (size_t k = 0; same && k < n_ids; k++) same = ids[k] == json_integer_value(json_array_get(want, k));
        char name[200], got[512] = "got";
        for (size_t k = 0, o = 3; k < n_ids && o < sizeof got - 16; k++) o += (size_t)snprintf(got + o, sizeof got - o, " %d", ids[k]);
        snprintf(name, sizeof name, "vector %zu \"%s\" (%zu ids)", i, show(s, n), json_array_size(want));
        fails += check_true(name, same, got);
        snprintf(name, sizeof name, "vector %zu round trip", i);
        fails += check_true(name, round_trips(t, s, n, true), "decode(encode(s)) != s");
        free(ids);
    }
    fails += check_true("at least 5 test vectors", json_array_size(root) >= 5, "too few");
    json_decref(root);
    return fails;
}

// Spot checks of ids whose literals use each escape form of the file.
static int check_token_bytes(const Tokenizer* t) {
    struct { int32_t id; const char* bytes; size_t len; } cases[] = {
        {1, "\x00", 1}, {11, "\n", 1}, {93, "\\", 1}, {40, "'", 1}, {256, "\xff", 1},
        {261, "\n\n", 2}, {327, " \\", 2}, {274, " '", 2}, {3133, "\xe6\xb7", 2},
        {9804, "\xe2\x80\x82", 3}, {65529, "                                                                "
                                          "                                                                ", 128},
    };
    int fails = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t len = 0;
        const uint8_t* b = tokenizer_token_bytes(t, cases[c].id, &len);
        char name[128];
        snprintf(name, sizeof name, "token %d is \"%s\"", cases[c].id, show(cases[c].bytes, cases[c].len));
        fails += check_true(name, b && len == cases[c].len && memcmp(b, cases[c].bytes, len) == 0, "wrong bytes");
    }
    size_t len = 1;
    fails += check_true("token 0 (end-of-document) has no bytes", tokenizer_token_bytes(t, 0, &len) == NULL && len == 0, "");
    fails += check_true("padding id 65535 has no bytes", tokenizer_token_bytes(t, 65535, &len) == NULL && len == 0, "");
    fails += check_true("id 65536 has no bytes", tokenizer_token_bytes(t, 65536, &len) == NULL && len == 0, "");
    return fails;
}

// ------------------------------------------------------------------------------------ World: round trips

static int check_real_text(const Tokenizer* t) {
    int fails = 0;
    size_t n_lines = 0;
    const char* path = NULL;
    char** lines = lambada_lines(&n_lines, &path);
    if (lines) {
        size_t bad = 0, bytes = 0;
        for (size_t i = 0; i < n_lines; i++) {
            bytes += strlen(lines[i]);
            if (!round_trips(t, lines[i], strlen(lines[i]), true)) bad++;
        }
        printf("lambada (%s): %zu lines, %zu bytes, %zu failed round trips\n", path, n_lines, bytes, bad);
        fails += check_true("lambada lines round trip", n_lines > 1000 && bad == 0, "see counts above");
        for (size_t i = 0; i < n_lines; i++) free(lines[i]);
        free(lines);
    } else {
        fails += check_true("lambada lines round trip", 0, "tests/data/lambada_test.jsonl is missing or unreadable");
    }
    size_t len = 0, bad = 0, n = 0;
    char* text = vocab_text(&len);
    for (char* line = text; line < text + len; n++) {
        char* nl = memchr(line, '\n', (size_t)(text + len - line));
        size_t line_len = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
        if (!round_trips(t, line, line_len, true)) bad++;
        line += line_len + 1;
    }
    printf("vocab file text: %zu lines, %zu failed round trips\n", n, bad);
    fails += check_true("vocab file lines round trip", bad == 0 && n == 65529, "see counts above");
    fails += check_true("whole vocab file round trips", round_trips(t, text, len, true), "");
    free(text);
    return fails;
}

// Random bytes biased towards the hard cases: NUL, 0x80-0xFF, and pieces of real tokens.
static size_t random_bytes(TestRng* r, const Tokenizer* t, char* buf, size_t max) {
    size_t n = (size_t)rand_below(r, (int)max);
    size_t i = 0;
    while (i < n) {
        int kind = rand_below(r, 4);
        if (kind == 0) buf[i++] = 0;
        else if (kind == 1) buf[i++] = (char)(0x80 + rand_below(r, 128));
        else if (kind == 2) buf[i++] = (char)rand_below(r, 256);
        else {
            size_t len = 0;
            const uint8_t* b = tokenizer_token_bytes(t, 1 + rand_below(r, 65529), &len);
            for (size_t k = 0; k < len && i < n; k++) buf[i++] = (char)b[k];
        }
    }
    return n;
}

// Random valid UTF-8: ASCII, 2-byte, CJK, emoji (4-byte) code points.
static size_t random_utf8(TestRng* r, char* buf, size_t max_chars) {
    static const uint32_t lo[] = {0x20, 0x0A, 0xA0, 0x400, 0x4E00, 0x3040, 0x1F300, 0x1F900, 0x10000};
    static const uint32_t hi[] = {0x7F, 0x0B, 0x800, 0x500, 0x9FFF, 0x30FF, 0x1F64F, 0x1F9FF, 0x10FFFF};
    size_t chars = (size_t)rand_below(r, (int)max_chars), o = 0;
    for (size_t c = 0; c < chars; c++) {
        int k = rand_below(r, 9);
        uint32_t cp = lo[k] + (uint32_t)rand_below(r, (int)(hi[k] - lo[k]));
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
        if (cp < 0x80) buf[o++] = (char)cp;
        else if (cp < 0x800) { buf[o++] = (char)(0xC0 | (cp >> 6)); buf[o++] = (char)(0x80 | (cp & 0x3F)); }
        else if (cp < 0x10000) {
            buf[o++] = (char)(0xE0 | (cp >> 12));
            buf[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            buf[o++] = (char)(0x80 | (cp & 0x3F));
        } else {
            buf[o++] = (char)(0xF0 | (cp >> 18));
            buf[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            buf[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            buf[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return o;
}

static int check_random_round_trips(const Tokenizer* t) {
    TestRng r;
    test_rng_seed(&r, 7);
    char buf[4 * 300];
    int bad_bytes = 0, bad_utf8 = 0;
    for (int i = 0; i < 2000; i++) {
        size_t n = random_bytes(&r, t, buf, 300);
        if (!round_trips(t, buf, n, true)) bad_bytes++;
    }
    for (int i = 0; i < 2000; i++) {
        size_t n = random_utf8(&r, buf, 300);
        if (!round_trips(t, buf, n, true)) bad_utf8++;
    }
    printf("random round trips: %d/2000 byte strings failed, %d/2000 UTF-8 strings failed\n", bad_bytes, bad_utf8);
    int fails = check_true("2000 random byte strings (NUL, 0x80-0xFF, invalid UTF-8) round trip", bad_bytes == 0, "");
    fails += check_true("2000 random valid UTF-8 strings (CJK, emoji) round trip", bad_utf8 == 0, "");
    fails += check_true("empty string round trips", round_trips(t, "", 0, true), "");
    return fails;
}

// Length of the longest vocab token that prefixes s[0, n), by brute force over every id.
static size_t brute_longest(const Tokenizer* t, const char* s, size_t n, int32_t* id) {
    size_t best = 0;
    for (int32_t k = 0; k < tokenizer_vocab_size(t); k++) {
        size_t len = 0;
        const uint8_t* b = tokenizer_token_bytes(t, k, &len);
        if (b && len > best && len <= n && memcmp(b, s, len) == 0) {
            best = len;
            *id = k;
        }
    }
    return best;
}

static int check_greedy_longest(const Tokenizer* t) {
    TestRng r;
    test_rng_seed(&r, 11);
    size_t vlen = 0;
    char* vocab = vocab_text(&vlen);
    char buf[4 * 400];
    int checked = 0, bad = 0;
    for (int text = 0; text < 30; text++) {
        size_t n;
        if (text % 3 == 0) n = random_bytes(&r, t, buf, 400);
        else if (text % 3 == 1) n = random_utf8(&r, buf, 300);
        else {
            n = 400;
            memcpy(buf, vocab + rand_below(&r, (int)(vlen - n)), n);
        }
        int32_t* ids = NULL;
        size_t n_ids = 0, pos = 0;
        tokenizer_encode(t, buf, n, &ids, &n_ids);
        for (size_t k = 0; k < n_ids; k++) {
            size_t len = 0;
            tokenizer_token_bytes(t, ids[k], &len);
            if (k % 4 == 0) {
                int32_t want = -1;
                size_t want_len = brute_longest(t, buf + pos, n - pos, &want);
                checked++;
                if (want != ids[k] || want_len != len) {
                    if (bad++ < 5) printf("  at byte %zu of \"%s\": encoder chose %d (%zu bytes), longest is %d (%zu bytes)\n",
                                          pos, show(buf + pos, n - pos), ids[k], len, want, want_len);
                }
            }
            pos += len;
        }
        free(ids);
    }
    free(vocab);
    printf("greedy longest match: %d positions checked by brute force over all ids, %d wrong\n", checked, bad);
    return check_true("each emitted token is the longest vocab entry prefixing the rest", checked >= 300 && bad == 0, "");
}

static int check_speed(const Tokenizer* t) {
    size_t len = 0;
    char* vocab = vocab_text(&len);
    size_t n = 0, target = 4u << 20;
    char* text = xmalloc(target + len);
    while (n < target) {
        memcpy(text + n, vocab, len);
        n += len;
    }
    int32_t* ids = NULL;
    size_t n_ids = 0;
    double t0 = now_seconds();
    tokenizer_encode(t, text, n, &ids, &n_ids);
    double secs = now_seconds() - t0;
    double mbps = (double)n / 1e6 / secs;
    printf("encode speed (information, not a check): %.1f MB of vocab-file text in %.3f s = %.1f MB/s "
           "(%.2f bytes/token)\n", (double)n / 1e6, secs, mbps, (double)n / (double)n_ids);
    int fails = 0;
    char* out = NULL;
    size_t out_len = 0;
    Error e = {{0}};
    t0 = now_seconds();
    int rc = tokenizer_decode(t, ids, n_ids, &out, &out_len, &e);
    printf("decode speed: %.1f MB/s\n", (double)n / 1e6 / (now_seconds() - t0));
    fails += check_true("4 MB text round trips", rc == 0 && out_len == n && memcmp(out, text, n) == 0, e.msg);
    free(out);
    free(ids);
    free(text);
    free(vocab);
    return fails;
}

static int check_decode_errors(const Tokenizer* t) {
    int fails = 0;
    int32_t bad_ids[][2] = {{33155, 65536}, {-1, 33155}, {2000000000, 1}};
    for (int c = 0; c < 3; c++) {
        char* out = NULL;
        size_t len = 0;
        Error e = {{0}};
        int rc = tokenizer_decode(t, bad_ids[c], 2, &out, &len, &e);
        char name[96];
        snprintf(name, sizeof name, "decode [%d, %d] fails with a message", bad_ids[c][0], bad_ids[c][1]);
        printf("  message: %s\n", e.msg);
        fails += check_true(name, rc == -1 && out == NULL && strstr(e.msg, "token id") != NULL, e.msg);
    }
    int32_t eod[] = {0, 33155, 0, 65535};
    char* out = NULL;
    size_t len = 0;
    Error e = {{0}};
    int rc = tokenizer_decode(t, eod, 4, &out, &len, &e);
    fails += check_true("decode of [0, 33155 \"Hello\", 0, padding 65535] is \"Hello\"",
                        rc == 0 && len == 5 && strcmp(out, "Hello") == 0, e.msg);
    free(out);
    return fails;
}

// ------------------------------------------------------------------------------------ byte tokenizer

static int check_byte_tokenizer(void) {
    Tokenizer* t = tokenizer_bytes();
    int fails = check_true("bytes vocab size is 256", tokenizer_vocab_size(t) == 256, "");
    fails += check_true("bytes name is \"bytes\"", strcmp(tokenizer_name(t), "bytes") == 0, tokenizer_name(t));
    const char s[] = "a\0\xff\x80 z";
    int32_t* ids = NULL;
    size_t n = 0;
    tokenizer_encode(t, s, sizeof s - 1, &ids, &n);
    bool ids_are_bytes = n == sizeof s - 1;
    for (size_t i = 0; ids_are_bytes && i < n; i++) ids_are_bytes = ids[i] == (unsigned char)s[i];
    fails += check_true("bytes: id = byte value, including 0x00 and 0xff", ids_are_bytes, "");
    free(ids);
    TestRng r;
    test_rng_seed(&r, 3);
    char buf[512];
    int bad = 0;
    for (int i = 0; i < 500; i++) {
        size_t len = (size_t)rand_below(&r, 512);
        for (size_t k = 0; k < len; k++) buf[k] = (char)rand_below(&r, 256);
        if (!round_trips(t, buf, len, false)) bad++;
    }
    fails += check_true("bytes: 500 random byte strings round trip", bad == 0, "");
    int32_t out_of_range = 256;
    char* out = NULL;
    size_t len = 0;
    Error e = {{0}};
    fails += check_true("bytes: decode of id 256 fails", tokenizer_decode(t, &out_of_range, 1, &out, &len, &e) == -1, "");
    printf("  message: %s\n", e.msg);
    tokenizer_free(t);
    return fails;
}

// ------------------------------------------------------------------------------------ vocab files

static char temp_paths[64][512];  // files written by write_temp, removed by remove_temps
static int n_temp_paths = 0;

static const char* write_temp(const char* dir, const char* name, const char* content, size_t len) {
    if (n_temp_paths == 64) fatal("write_temp: too many temporary files");
    char* path = temp_paths[n_temp_paths++];
    snprintf(path, sizeof temp_paths[0], "%s/%s", dir, name);
    Error e = {{0}};
    if (write_file_atomic(path, content, len, &e) != 0) fatal("%s", e.msg);
    return path;
}

static void remove_temps(const char* dir) {
    for (int i = 0; i < n_temp_paths; i++) unlink(temp_paths[i]);
    if (rmdir(dir) != 0) printf("note: could not remove %s\n", dir);
}

// A small valid vocab: all 256 bytes as b'\xHH' plus multi-byte tokens with every escape form,
// with CRLF line ends.
static char* small_vocab(size_t* len) {
    size_t cap = 256 * 32 + 1024, n = 0;
    char* s = xmalloc(cap);
    for (int b = 0; b < 256; b++) n += (size_t)snprintf(s + n, cap - n, "%d b'\\x%02x' 1\r\n", b + 1, b);
    n += (size_t)snprintf(s + n, cap - n,
                          "257 'ab' 2\r\n258 'abc' 3\r\n259 'bcd' 3\r\n260 '\\u00e9\\U0001F600' 6\r\n"
                          "261 \"it's\" 4\r\n262 b'\\x00\\377\\'' 3\r\n263 '\\101\\t\\\\' 3\r\n264 'é' 2\r\n");
    *len = n;
    return s;
}

static int check_small_vocab(const char* dir) {
    size_t len = 0;
    char* text = small_vocab(&len);
    const char* path = write_temp(dir, "small.txt", text, len);
    free(text);
    Error e = {{0}};
    Tokenizer* t = tokenizer_from_spec(path, &e);
    int fails = check_true("hand-written vocab (CRLF, all escape forms) loads", t != NULL, e.msg);
    if (!t) return fails;
    fails += check_true("its vocab size is 320 (264 rounded up to a multiple of 64)", tokenizer_vocab_size(t) == 320, "");
    struct { int32_t id; const char* bytes; size_t len; } cases[] = {
        {260, "\xc3\xa9\xf0\x9f\x98\x80", 6}, {261, "it's", 4}, {262, "\x00\xff'", 3}, {263, "A\t\\", 3},
        {264, "\xc3\xa9", 2}, {1, "\x00", 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = 0;
        const uint8_t* b = tokenizer_token_bytes(t, cases[c].id, &n);
        char name[128];
        snprintf(name, sizeof name, "hand-written token %d is \"%s\"", cases[c].id, show(cases[c].bytes, cases[c].len));
        fails += check_true(name, b && n == cases[c].len && memcmp(b, cases[c].bytes, n) == 0, "wrong bytes");
    }
    int32_t* ids = NULL;
    size_t n_ids = 0;
    tokenizer_encode(t, "abcdab", 6, &ids, &n_ids);
    fails += check_true("\"abcdab\" -> abc|d|ab = [258, 101, 257] (greedy, not optimal)",
                        n_ids == 3 && ids[0] == 258 && ids[1] == 101 && ids[2] == 257, "");
    free(ids);
    tokenizer_free(t);
    return fails;
}

typedef struct BadVocab {
    const char* what;     // defect, also the temp file name
    const char* line3;    // the bad third line (after two good ones)
    const char* expect;   // substring the message must contain
} BadVocab;

static int check_bad_line(const char* dir, const BadVocab* b) {
    char content[512];
    int n = snprintf(content, sizeof content, "1 'a' 1\n2 'b' 1\n%s\n4 'd' 1\n", b->line3);
    const char* path = write_temp(dir, b->what, content, (size_t)n);
    Error e = {{0}};
    Tokenizer* t = tokenizer_load_world(path, &e);
    char where[600], name[128];
    snprintf(where, sizeof where, "%s:3: ", path);
    snprintf(name, sizeof name, "bad vocab (%s) rejected at FILE:3", b->what);
    printf("  message: %s\n", e.msg);
    int fails = check_true(name, t == NULL && strstr(e.msg, where) == e.msg && strstr(e.msg, b->expect) != NULL &&
                           strstr(e.msg, "<python literal>") != NULL, e.msg);
    tokenizer_free(t);
    return fails;
}

static int check_bad_files(const char* dir) {
    char long_line[300];
    snprintf(long_line, sizeof long_line, "3 '%0129d' 129", 0);
    const BadVocab bad[] = {
        {"missing-length", "3 'c'", "missing fields"},
        {"id-only", "3", "missing fields"},
        {"empty-line", "", "missing fields"},
        {"id-not-number", "x3 'c' 1", "not a number"},
        {"id-zero", "0 'c' 1", "out of range"},
        {"id-too-large", "99999999 'c' 1", "out of range"},
        {"duplicate-id", "2 'c' 1", "duplicate id 2 (already defined on line 2)"},
        {"unquoted-literal", "3 c 1", "not a quoted"},
        {"unterminated-literal", "3 'c 1", "not a quoted"},
        {"unknown-escape", "3 '\\q' 1", "unsupported escape `\\q`"},
        {"short-hex-escape", "3 '\\x4' 1", "hex digits"},
        {"lone-backslash", "3 'c\\' 1", "lone backslash"},
        {"surrogate-escape", "3 '\\ud800' 3", "surrogate"},
        {"u-escape-in-bytes", "3 b'\\u0041' 1", "in a b'' literal"},
        {"non-ascii-in-bytes", "3 b'\xc3\xa9' 2", "non-ASCII"},
        {"invalid-utf8", "3 '\xff' 1", "invalid UTF-8"},
        {"unescaped-quote", "3 'c'd' 3", "unescaped '"},
        {"length-mismatch", "3 'cd' 3", "length mismatch: the literal is 2 bytes but the line says 3"},
        {"length-not-number", "3 'c' one", "not a number"},
        {"duplicate-bytes", "3 '\\x61' 1", "duplicate byte string (same bytes as id 1 on line 1)"},
        {"empty-token", "3 '' 0", "empty token"},
        {"too-long-token", long_line, "longer than the 128-byte maximum"},
    };
    int fails = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) fails += check_bad_line(dir, &bad[i]);

    Error e = {{0}};
    const char* path = write_temp(dir, "no-single-bytes.txt", "1 'a' 1\n2 'bc' 2\n", 17);
    Tokenizer* t = tokenizer_load_world(path, &e);
    printf("  message: %s\n", e.msg);
    fails += check_true("vocab without all 256 single bytes rejected", t == NULL && strstr(e.msg, path) &&
                        strstr(e.msg, "byte 0x00 has no single-byte token"), e.msg);
    path = write_temp(dir, "empty.txt", "", 0);
    t = tokenizer_load_world(path, &e);
    printf("  message: %s\n", e.msg);
    fails += check_true("empty vocab file rejected", t == NULL && strstr(e.msg, path) && strstr(e.msg, "no tokens"), e.msg);
    t = tokenizer_load_world("/nonexistent/vocab.txt", &e);
    printf("  message: %s\n", e.msg);
    fails += check_true("missing vocab file rejected", t == NULL && strstr(e.msg, "/nonexistent/vocab.txt"), e.msg);
    return fails;
}

// ------------------------------------------------------------------------------------ specs

static int check_specs(void) {
    int fails = 0;
    char* saved = getenv("MODRWKV_VOCAB") ? xstrdup(getenv("MODRWKV_VOCAB")) : NULL;
    unsetenv("MODRWKV_VOCAB");
    Error e = {{0}};
    Tokenizer* t = tokenizer_from_spec("world", &e);
    fails += check_true("spec \"world\" finds the shipped vocab", t && tokenizer_vocab_size(t) == 65536, e.msg);
    tokenizer_free(t);
    setenv("MODRWKV_VOCAB", "/nonexistent/from-env.txt", 1);
    t = tokenizer_from_spec("world", &e);
    printf("  message: %s\n", e.msg);
    fails += check_true("spec \"world\" uses $MODRWKV_VOCAB first", t == NULL && strstr(e.msg, "/nonexistent/from-env.txt"), e.msg);
    if (saved) setenv("MODRWKV_VOCAB", saved, 1);
    else unsetenv("MODRWKV_VOCAB");
    free(saved);
    t = tokenizer_from_spec("bytes", &e);
    fails += check_true("spec \"bytes\" is the byte tokenizer", t && tokenizer_vocab_size(t) == 256, "");
    tokenizer_free(t);
    t = tokenizer_from_spec("", &e);
    printf("  message: %s\n", e.msg);
    fails += check_true("empty spec rejected", t == NULL && e.msg[0], "");
    return fails;
}

int main(void) {
    int fails = 0;
    Tokenizer* world = NULL;
    fails += check_load_world(&world);
    if (world) {
        fails += check_test_vectors(world);
        fails += check_token_bytes(world);
        fails += check_real_text(world);
        fails += check_random_round_trips(world);
        fails += check_greedy_longest(world);
        fails += check_speed(world);
        fails += check_decode_errors(world);
        tokenizer_free(world);
    }
    fails += check_byte_tokenizer();
    char dir[] = "/tmp/modrwkv-test-tokenizer-XXXXXX";
    if (!mkdtemp(dir)) fatal("cannot create a temporary directory in /tmp");
    fails += check_small_vocab(dir);
    fails += check_bad_files(dir);
    remove_temps(dir);
    fails += check_specs();
    return test_summary("test_tokenizer", fails);
}
