// tokenizer.c — the RWKV World tokenizer and the byte tokenizer (contract in tokenizer.h; file format
// and encoding rule in reference/rwkv7.md §7).
//
// Contract: encoding is greedy longest match from the left over the vocabulary's byte strings; a World
// vocab must contain all 256 single bytes, so every byte string encodes and decode(encode(s)) == s.
// Vocab lines are `<id> <python literal> <byte length>`: the id is the text before the first space,
// the literal the text between the first and the last space, the length the text after the last
// space. Any bad line fails the load with "FILE:LINE: what is wrong (expected ...)".
//
// Representation (about 7 MB for the 65,529-token World vocab):
//   * all token bytes in one arena; tok_off/tok_len give each id's bytes (len 0 = unused id);
//   * a byte trie in flat arrays: node i carries the token id ending there (-1 = none) and a run of
//     edges [first_edge, first_edge + n_edges) sorted by byte (edge_byte, edge_child); the root's
//     edges are also kept as a direct 256-entry table because every walk starts there.
// The model vocabulary size is the largest id + 1 rounded up to a multiple of 64 (World: 65536).
// Ids inside that size with no token (World: 0 = end-of-document, 65530..65535 = padding) decode to
// nothing; ids outside it fail to decode.
#include "datasets/tokenizer.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    MAX_TOKEN_BYTES = 128,     // reference/rwkv7.md §7: the longest World token
    MAX_VOCAB_ID = 1048575,    // sanity bound on ids in a vocab file (World uses 1..65529)
    VOCAB_ROUND = 64,          // model vocab sizes are padded to a multiple of this
    NO_TOKEN = -1,             // trie node that ends no token
};

static const char* const LINE_FORMAT = "expected `<id> <python literal> <byte length>`";
static const char* const WORLD_VOCAB_FILE = "rwkv_vocab_v20230424.txt";

typedef struct TrieNode {
    int32_t id;           // token ending at this node, or NO_TOKEN
    uint32_t first_edge;  // index of this node's first edge in edge_byte / edge_child
    uint32_t n_edges;
} TrieNode;

struct Tokenizer {
    char* name;           // "bytes" or "world:<path>"
    int vocab_size;
    uint8_t* arena;       // all token bytes
    uint32_t* tok_off;    // (vocab_size) offset of each id's bytes in arena
    uint8_t* tok_len;     // (vocab_size) byte length of each id, 0 = unused
    TrieNode* nodes;      // (n_nodes) node 0 is the root
    uint8_t* edge_byte;   // (n_edges)
    uint32_t* edge_child; // (n_edges) child node index (never 0: the root is nobody's child)
    uint32_t n_nodes, n_edges;
    uint32_t root_child[256];  // child of the root for each first byte, 0 = none
};

// One parsed vocab line; its bytes are arena[off, off + len).
typedef struct VocabEntry {
    int32_t id;
    int line;
    uint32_t off;
    uint32_t len;
} VocabEntry;

typedef struct VocabParse {
    const char* path;
    VocabEntry* entries;
    size_t n_entries, cap_entries;
    uint8_t* arena;
    size_t arena_len, arena_cap;
    int* line_of_id;      // line that defined each id (0 = not yet), grown on demand
    size_t cap_ids;
    int32_t max_id;
} VocabParse;

// ------------------------------------------------------------------------------------ UTF-8 helpers

// Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not valid (overlong, surrogate,
// beyond U+10FFFF, truncated).
static size_t utf8_valid_len(const uint8_t* p, size_t avail) {
    uint8_t c = p[0];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n > avail) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

// Writes code point cp (<= U+10FFFF, not a surrogate) as UTF-8; returns the byte count.
static size_t utf8_encode(uint32_t cp, uint8_t* out) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

// ------------------------------------------------------------------------------ literal decoding

// State while decoding one Python literal; `why` receives the description of a defect.
typedef struct Literal {
    const uint8_t* s;
    size_t pos, end;      // body is s[pos, end) (between the quotes)
    bool is_bytes;        // b'...' literal: \xHH is a raw byte, only ASCII characters allowed
    uint8_t quote;
    uint8_t* out;         // room for at least end - pos bytes (no escape expands)
    size_t n_out;
    char why[256];
} Literal;

static int literal_fail(Literal* L, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static int literal_fail(Literal* L, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->why, sizeof L->why, fmt, ap);
    va_end(ap);
    return -1;
}

static int hex_digit(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Reads exactly `digits` hex digits at L->pos into *v. Returns 0, or -1 if they are not all there.
static int read_hex(Literal* L, int digits, uint32_t* v) {
    *v = 0;
    for (int i = 0; i < digits; i++) {
        int d = L->pos < L->end ? hex_digit(L->s[L->pos]) : -1;
        if (d < 0) return -1;
        *v = (*v << 4) | (uint32_t)d;
        L->pos++;
    }
    return 0;
}

// Emits a code point from \x, \u, \U or an octal escape: a raw byte in b'', UTF-8 in a str.
static int emit_code_point(Literal* L, uint32_t cp, const char* escape) {
    if (L->is_bytes) {
        if (cp > 0xFF) return literal_fail(L, "escape %s is above \\xff in a b'' literal", escape);
        L->out[L->n_out++] = (uint8_t)cp;
        return 0;
    }
    if (cp > 0x10FFFF) return literal_fail(L, "escape %s is beyond U+10FFFF", escape);
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return literal_fail(L, "escape %s is a surrogate, which has no UTF-8 encoding", escape);
    L->n_out += utf8_encode(cp, L->out + L->n_out);
    return 0;
}

static int simple_escape(uint8_t c) {
    switch (c) {
    case '\\': return '\\';
    case '\'': return '\'';
    case '"': return '"';
    case 'a': return 7;
    case 'b': return 8;
    case 'f': return 12;
    case 'n': return 10;
    case 'r': return 13;
    case 't': return 9;
    case 'v': return 11;
    default: return -1;
    }
}

// Decodes the escape starting at the backslash at L->pos.
static int decode_escape(Literal* L) {
    size_t start = L->pos;
    if (start + 1 >= L->end) return literal_fail(L, "lone backslash at the end of the literal");
    uint8_t c = L->s[start + 1];
    L->pos = start + 2;
    int simple = simple_escape(c);
    if (simple >= 0) {
        L->out[L->n_out++] = (uint8_t)simple;
        return 0;
    }
    char escape[16];
    uint32_t cp = 0;
    if (c == 'x' || ((c == 'u' || c == 'U') && !L->is_bytes)) {
        int digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        if (read_hex(L, digits, &cp) != 0)
            return literal_fail(L, "escape \\%c needs %d hex digits", c, digits);
    } else if (c >= '0' && c <= '7') {
        cp = c - '0';
        for (int i = 0; i < 2 && L->pos < L->end && L->s[L->pos] >= '0' && L->s[L->pos] <= '7'; i++)
            cp = cp * 8 + (L->s[L->pos++] - '0');
    } else if (c > 0x20 && c < 0x7F) {
        return literal_fail(L, "unsupported escape `\\%c`%s", c,
                            L->is_bytes && (c == 'u' || c == 'U') ? " in a b'' literal" : "");
    } else {
        return literal_fail(L, "unsupported escape: backslash followed by byte 0x%02x", c);
    }
    snprintf(escape, sizeof escape, "\\%.*s", (int)(L->pos - start - 1), (const char*)L->s + start + 1);
    return emit_code_point(L, cp, escape);
}

// Copies one raw (unescaped) character at L->pos.
static int copy_raw(Literal* L) {
    uint8_t c = L->s[L->pos];
    if (c == L->quote) return literal_fail(L, "unescaped %c inside the literal", c);
    if (c >= 0x80 && L->is_bytes)
        return literal_fail(L, "non-ASCII byte 0x%02x in a b'' literal (write it as \\x%02x)", c, c);
    size_t n = utf8_valid_len(L->s + L->pos, L->end - L->pos);
    if (n == 0) return literal_fail(L, "invalid UTF-8 (byte 0x%02x) in the literal", c);
    memcpy(L->out + L->n_out, L->s + L->pos, n);
    L->n_out += n;
    L->pos += n;
    return 0;
}

// Decodes a Python str ('...' or "...") or bytes (b'...' / b"...") literal s[0, n) into out, which
// has room for n bytes. Returns 0 with *out_len set, or -1 with the defect described in why.
static int decode_literal(const char* s, size_t n, uint8_t* out, size_t* out_len, char* why,
                          size_t why_size) {
    Literal L = {.s = (const uint8_t*)s, .pos = 0, .end = n, .out = out};
    if (n > 0 && (s[0] == 'b' || s[0] == 'B')) {
        L.is_bytes = true;
        L.pos = 1;
    }
    uint8_t q = L.pos < n ? L.s[L.pos] : 0;
    if ((q != '\'' && q != '"') || n - L.pos < 2 || L.s[n - 1] != q) {
        snprintf(why, why_size, "literal `%.*s` is not a quoted Python str or b'' literal",
                 (int)(n < 60 ? n : 60), s);
        return -1;
    }
    L.quote = q;
    L.pos++;
    L.end = n - 1;
    while (L.pos < L.end) {
        int rc = L.s[L.pos] == '\\' ? decode_escape(&L) : copy_raw(&L);
        if (rc != 0) {
            snprintf(why, why_size, "%s", L.why);
            return -1;
        }
    }
    *out_len = L.n_out;
    return 0;
}

// ------------------------------------------------------------------------------------ line parsing

static int line_error(Error* e, const VocabParse* p, int line, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int line_error(Error* e, const VocabParse* p, int line, const char* fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return errorf(e, "%s:%d: %s (%s)", p->path, line, what, LINE_FORMAT);
}

// Parses a non-negative decimal field. Returns 0 with *v set, -1 if it is not a plain number,
// -2 if it exceeds max.
static int parse_decimal(const char* s, size_t n, long max, long* v) {
    if (n == 0) return -1;
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        *v = *v * 10 + (s[i] - '0');
        if (*v > max) return -2;
    }
    return 0;
}

// Validates the id field and records which line defined it. Returns the id, or -1 with e filled.
static long parse_id(VocabParse* p, const char* s, size_t n, int line, Error* e) {
    long id;
    int rc = parse_decimal(s, n, MAX_VOCAB_ID, &id);
    if (rc == -1) return line_error(e, p, line, "id `%.*s` is not a number", (int)(n < 40 ? n : 40), s);
    if (rc == -2 || id == 0)
        return line_error(e, p, line, "id `%.*s` is out of range: ids must be 1..%d (0 is end-of-document)",
                          (int)(n < 40 ? n : 40), s, MAX_VOCAB_ID);
    if ((size_t)id >= p->cap_ids) {
        size_t cap = p->cap_ids ? p->cap_ids : 1024;
        while (cap <= (size_t)id) cap *= 2;
        p->line_of_id = xrealloc(p->line_of_id, cap * sizeof *p->line_of_id);
        memset(p->line_of_id + p->cap_ids, 0, (cap - p->cap_ids) * sizeof *p->line_of_id);
        p->cap_ids = cap;
    }
    if (p->line_of_id[id] != 0)
        return line_error(e, p, line, "duplicate id %ld (already defined on line %d)", id, p->line_of_id[id]);
    p->line_of_id[id] = line;
    return id;
}

static void grow_parse_buffers(VocabParse* p, size_t literal_len) {
    if (p->n_entries == p->cap_entries) {
        p->cap_entries = p->cap_entries ? 2 * p->cap_entries : 4096;
        p->entries = xrealloc(p->entries, p->cap_entries * sizeof *p->entries);
    }
    if (p->arena_len + literal_len > p->arena_cap) {
        size_t cap = p->arena_cap ? p->arena_cap : 65536;
        while (cap < p->arena_len + literal_len) cap *= 2;
        p->arena = xrealloc(p->arena, cap);
        p->arena_cap = cap;
    }
}

// Parses one line s[0, n) (no newline) into a new entry. Returns 0 or -1 with e filled.
static int parse_line(VocabParse* p, const char* s, size_t n, int line, Error* e) {
    const char* first = memchr(s, ' ', n);
    const char* last = first ? memrchr(s, ' ', n) : NULL;
    if (!first || first == last)
        return line_error(e, p, line, "missing fields: need an id, a literal and a byte length separated by spaces");
    long id = parse_id(p, s, (size_t)(first - s), line, e);
    if (id < 0) return -1;

    const char* lit = first + 1;
    size_t lit_len = (size_t)(last - lit);
    grow_parse_buffers(p, lit_len);
    uint8_t* out = p->arena + p->arena_len;
    size_t len = 0;
    char why[300];
    if (decode_literal(lit, lit_len, out, &len, why, sizeof why) != 0) return line_error(e, p, line, "%s", why);
    if (len == 0) return line_error(e, p, line, "empty token (every token needs at least one byte)");

    const char* len_field = last + 1;
    size_t len_field_n = (size_t)(s + n - len_field);
    long declared;
    if (parse_decimal(len_field, len_field_n, 1L << 30, &declared) != 0)
        return line_error(e, p, line, "byte length `%.*s` is not a number", (int)(len_field_n < 40 ? len_field_n : 40),
                          len_field);
    if ((size_t)declared != len)
        return line_error(e, p, line, "length mismatch: the literal is %zu bytes but the line says %ld", len, declared);
    if (len > MAX_TOKEN_BYTES)
        return line_error(e, p, line, "token is %zu bytes, longer than the %d-byte maximum", len, MAX_TOKEN_BYTES);

    p->entries[p->n_entries++] = (VocabEntry){.id = (int32_t)id, .line = line, .off = (uint32_t)p->arena_len,
                                              .len = (uint32_t)len};
    p->arena_len += len;
    if (id > p->max_id) p->max_id = (int32_t)id;
    return 0;
}

// Splits the file text into lines (a trailing "\r" is dropped) and parses each one.
static int parse_vocab_text(VocabParse* p, const char* text, size_t len, Error* e) {
    size_t pos = 0;
    int line = 0;
    while (pos < len) {
        const char* nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t n = end - pos;
        if (n > 0 && text[pos + n - 1] == '\r') n--;
        line++;
        if (parse_line(p, text + pos, n, line, e) != 0) return -1;
        pos = end + 1;
    }
    if (p->n_entries == 0) return errorf(e, "%s: no tokens in the vocab file (%s per line)", p->path, LINE_FORMAT);
    return 0;
}

static void free_parse(VocabParse* p) {
    free(p->entries);
    free(p->arena);
    free(p->line_of_id);
}

// ------------------------------------------------------------------------------------ trie build

// Byte-wise order with a prefix before its extensions; ties (duplicates) by line. arena: the bytes.
static int compare_entries(const void* a, const void* b, void* arena) {
    const VocabEntry* x = a;
    const VocabEntry* y = b;
    const uint8_t* bytes = arena;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(bytes + x->off, bytes + y->off, n);
    if (c != 0) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

// Sorts the entries by bytes and rejects the first (in file order) line repeating a byte string.
static int sort_and_check_unique(VocabParse* p, Error* e) {
    qsort_r(p->entries, p->n_entries, sizeof *p->entries, compare_entries, p->arena);
    const VocabEntry* dup = NULL;
    const VocabEntry* orig = NULL;
    for (size_t i = 1; i < p->n_entries; i++) {
        const VocabEntry* a = &p->entries[i - 1];
        const VocabEntry* b = &p->entries[i];
        bool same = a->len == b->len && memcmp(p->arena + a->off, p->arena + b->off, a->len) == 0;
        if (same && (!dup || b->line < dup->line)) {
            dup = b;
            orig = a;
        }
    }
    if (dup) return line_error(e, p, dup->line, "duplicate byte string (same bytes as id %d on line %d)", orig->id,
                               orig->line);
    return 0;
}

// Builds the subtrie for sorted entries [lo, hi), which all share their first `depth` bytes;
// returns its node index. Children of a node get contiguous edges, reserved before recursing.
static uint32_t build_node(Tokenizer* t, const VocabEntry* v, size_t lo, size_t hi, uint32_t depth) {
    uint32_t node = t->n_nodes++;
    t->nodes[node].id = NO_TOKEN;
    if (lo < hi && v[lo].len == depth) t->nodes[node].id = v[lo++].id;
    uint32_t n_edges = 0;
    for (size_t i = lo; i < hi; i++)
        if (i == lo || t->arena[v[i].off + depth] != t->arena[v[i - 1].off + depth]) n_edges++;
    uint32_t first = t->n_edges;
    t->n_edges += n_edges;
    t->nodes[node].first_edge = first;
    t->nodes[node].n_edges = n_edges;
    for (uint32_t k = 0; lo < hi; k++) {
        uint8_t c = t->arena[v[lo].off + depth];
        size_t group_end = lo + 1;
        while (group_end < hi && t->arena[v[group_end].off + depth] == c) group_end++;
        t->edge_byte[first + k] = c;
        t->edge_child[first + k] = build_node(t, v, lo, group_end, depth + 1);
        lo = group_end;
    }
    return node;
}

// Builds the id tables and the trie from sorted, unique entries; takes ownership of arena.
static void build_tokenizer(Tokenizer* t, const VocabEntry* v, size_t n, uint8_t* arena, size_t arena_len,
                            int vocab_size) {
    t->vocab_size = vocab_size;
    t->arena = arena;
    t->tok_off = xcalloc((size_t)vocab_size, sizeof *t->tok_off);
    t->tok_len = xcalloc((size_t)vocab_size, sizeof *t->tok_len);
    for (size_t i = 0; i < n; i++) {
        t->tok_off[v[i].id] = v[i].off;
        t->tok_len[v[i].id] = (uint8_t)v[i].len;
    }
    // A trie over byte strings totalling arena_len bytes has at most arena_len + 1 nodes.
    t->nodes = xmalloc((arena_len + 1) * sizeof *t->nodes);
    t->edge_byte = xmalloc(arena_len + 1);
    t->edge_child = xmalloc((arena_len + 1) * sizeof *t->edge_child);
    build_node(t, v, 0, n, 0);
    t->nodes = xrealloc(t->nodes, t->n_nodes * sizeof *t->nodes);
    t->edge_byte = xrealloc(t->edge_byte, t->n_edges + 1);
    t->edge_child = xrealloc(t->edge_child, (t->n_edges + 1) * sizeof *t->edge_child);
    const TrieNode* root = &t->nodes[0];
    for (uint32_t k = 0; k < root->n_edges; k++)
        t->root_child[t->edge_byte[root->first_edge + k]] = t->edge_child[root->first_edge + k];
}

// Every byte must be a token of its own, or some byte strings could not be encoded.
static int check_single_bytes(const Tokenizer* t, const char* path, Error* e) {
    for (int b = 0; b < 256; b++) {
        uint32_t node = t->root_child[b];
        if (node == 0 || t->nodes[node].id == NO_TOKEN)
            return errorf(e, "%s: byte 0x%02x has no single-byte token; a vocab must contain all 256 single bytes "
                          "so that any text can be encoded", path, b);
    }
    return 0;
}

// ------------------------------------------------------------------------------------ public API

Tokenizer* tokenizer_load_world(const char* vocab_path, Error* e) {
    size_t len = 0;
    char* text = read_file(vocab_path, &len, e);
    if (!text) return NULL;
    VocabParse p = {.path = vocab_path};
    int rc = parse_vocab_text(&p, text, len, e);
    free(text);
    if (rc == 0) rc = sort_and_check_unique(&p, e);
    if (rc != 0) {
        free_parse(&p);
        return NULL;
    }
    Tokenizer* t = xcalloc(1, sizeof *t);
    size_t name_len = strlen(vocab_path) + 7;
    t->name = xmalloc(name_len);
    snprintf(t->name, name_len, "world:%s", vocab_path);
    int vocab_size = (p.max_id + 1 + VOCAB_ROUND - 1) / VOCAB_ROUND * VOCAB_ROUND;
    build_tokenizer(t, p.entries, p.n_entries, p.arena, p.arena_len, vocab_size);
    p.arena = NULL;  // now owned by t
    free_parse(&p);
    if (check_single_bytes(t, vocab_path, e) != 0) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

Tokenizer* tokenizer_bytes(void) {
    Tokenizer* t = xcalloc(1, sizeof *t);
    t->name = xstrdup("bytes");
    uint8_t* arena = xmalloc(256);
    VocabEntry v[256];
    for (int b = 0; b < 256; b++) {
        arena[b] = (uint8_t)b;
        v[b] = (VocabEntry){.id = b, .line = 0, .off = (uint32_t)b, .len = 1};
    }
    build_tokenizer(t, v, 256, arena, 256, 256);
    return t;
}

// Finds the shipped World vocab: $MODRWKV_VOCAB, the source tree, or ../datasets/vocab next to the
// executable (so a binary in build/ of the source tree finds it).
static int find_world_vocab(char* path, size_t size, Error* e) {
    const char* env = getenv("MODRWKV_VOCAB");
    if (env && env[0]) {
        snprintf(path, size, "%s", env);
        return 0;
    }
    char tried[2][4096] = {"", ""};
#ifdef MODRWKV_SOURCE_DIR
    snprintf(tried[0], sizeof tried[0], "%s/datasets/vocab/%s", MODRWKV_SOURCE_DIR, WORLD_VOCAB_FILE);
#endif
    char exe[3072];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char* slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(tried[1], sizeof tried[1], "%s/../datasets/vocab/%s", exe, WORLD_VOCAB_FILE);
    }
    for (int i = 0; i < 2; i++) {
        if (tried[i][0] && access(tried[i], R_OK) == 0) {
            snprintf(path, size, "%s", tried[i]);
            return 0;
        }
    }
    return errorf(e, "cannot find the World vocab %s (looked at %s%s%s): set MODRWKV_VOCAB to its path or give "
                  "the vocab file's path as the tokenizer", WORLD_VOCAB_FILE, tried[0],
                  tried[0][0] && tried[1][0] ? " and " : "", tried[1]);
}

Tokenizer* tokenizer_from_spec(const char* spec, Error* e) {
    if (!spec || !spec[0]) {
        errorf(e, "tokenizer: empty tokenizer name; use \"bytes\", \"world\" or the path of a vocab file");
        return NULL;
    }
    if (strcmp(spec, "bytes") == 0) return tokenizer_bytes();
    if (strcmp(spec, "world") != 0) return tokenizer_load_world(spec, e);
    char path[4096];
    if (find_world_vocab(path, sizeof path, e) != 0) return NULL;
    return tokenizer_load_world(path, e);
}

void tokenizer_free(Tokenizer* t) {
    if (!t) return;
    free(t->name);
    free(t->arena);
    free(t->tok_off);
    free(t->tok_len);
    free(t->nodes);
    free(t->edge_byte);
    free(t->edge_child);
    free(t);
}

const char* tokenizer_name(const Tokenizer* t) { return t->name; }

int tokenizer_vocab_size(const Tokenizer* t) { return t->vocab_size; }

// Child of `node` along byte c, or 0 if there is none. Edges are sorted by byte.
static inline uint32_t trie_child(const Tokenizer* t, uint32_t node, uint8_t c) {
    const TrieNode* nd = &t->nodes[node];
    const uint8_t* bytes = t->edge_byte + nd->first_edge;
    uint32_t lo = 0, hi = nd->n_edges;
    while (hi - lo > 8) {
        uint32_t mid = (lo + hi) / 2;
        if (bytes[mid] <= c) lo = mid;
        else hi = mid;
    }
    for (uint32_t i = lo; i < hi; i++)
        if (bytes[i] == c) return t->edge_child[nd->first_edge + i];
    return 0;
}

// Greedy longest match at text[0, len), len >= 1: returns the token id and sets *match_len.
static inline int32_t longest_match(const Tokenizer* t, const uint8_t* text, size_t len, size_t* match_len) {
    uint32_t node = t->root_child[text[0]];  // never 0: every single byte is a token
    int32_t best = t->nodes[node].id;
    size_t best_len = 1;
    for (size_t j = 1; j < len; j++) {
        node = trie_child(t, node, text[j]);
        if (node == 0) break;
        if (t->nodes[node].id != NO_TOKEN) {
            best = t->nodes[node].id;
            best_len = j + 1;
        }
    }
    *match_len = best_len;
    return best;
}

int tokenizer_encode(const Tokenizer* t, const char* text, size_t len, int32_t** ids, size_t* n_ids) {
    const uint8_t* s = (const uint8_t*)text;
    size_t cap = len / 2 + 16;  // World averages well over 2 bytes per token on text; grows if not
    int32_t* out = xmalloc(cap * sizeof *out);
    size_t n = 0;
    for (size_t pos = 0; pos < len;) {
        if (n == cap) {
            cap *= 2;
            out = xrealloc(out, cap * sizeof *out);
        }
        size_t m;
        out[n++] = longest_match(t, s + pos, len - pos, &m);
        pos += m;
    }
    *ids = out;
    *n_ids = n;
    return 0;
}

int tokenizer_decode(const Tokenizer* t, const int32_t* ids, size_t n_ids, char** out, size_t* len, Error* e) {
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab_size)
            return errorf(e, "tokenizer %s: cannot decode token id %d at position %zu: ids must be 0..%d",
                          t->name, ids[i], i, t->vocab_size - 1);
        total += t->tok_len[ids[i]];
    }
    char* buf = xmalloc(total + 1);
    size_t pos = 0;
    for (size_t i = 0; i < n_ids; i++) {
        memcpy(buf + pos, t->arena + t->tok_off[ids[i]], t->tok_len[ids[i]]);
        pos += t->tok_len[ids[i]];
    }
    buf[total] = '\0';
    *out = buf;
    *len = total;
    return 0;
}

const uint8_t* tokenizer_token_bytes(const Tokenizer* t, int32_t id, size_t* len) {
    if (id < 0 || id >= t->vocab_size || t->tok_len[id] == 0) {
        *len = 0;
        return NULL;
    }
    *len = t->tok_len[id];
    return t->arena + t->tok_off[id];
}
