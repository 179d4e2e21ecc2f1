// convert_text.c — `--from jsonl-text` and `--from binidx`: text corpora -> shards of plain documents.
//
// Contract:
// - jsonl-text: every non-blank line is a JSON object whose string field `key` is one document (no chat
//   template, every token trained), tokenized with the run's tokenizer and, with a World-size vocabulary,
//   followed by the end-of-document token 0 (as RWKV's make_data.py and datasets/textloader.c do). Sample key
//   "<file name>:<line>". Bad lines (counted with --skip-bad): malformed JSON, no string field `key`, an empty
//   text — "FILE:LINE: ...".
// - binidx: the documents of an MMIDIDX pair (datasets/binidx.h): the sequences grouped by the .idx's doc_idx
//   (RWKV writes one sequence per document, each already ending with 0), copied token for token, every token
//   trained. Sample key "<prefix name>:<document>". A token outside the tokenizer's vocabulary or equal to a
//   media placeholder id makes its document bad ("FILE: document N: ..."); a doc_idx that is not monotone
//   inside [0, n_seq] stops the run.
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/binidx.h"
#include "datasets/convert.h"

enum { IDX_HEADER_BYTES = 9 + 8 + 1 + 8 + 8 };   // magic, version, dtype, n_seq, n_doc

static char* base_name(const char* path) {
    char* copy = xstrdup(path);
    char* b = xstrdup(basename(copy));
    free(copy);
    return b;
}

// Builds one document's sample from `src` (a JsonlLine or a BinidxDoc); failures are bad samples named `what`.
typedef int (*BuildDoc)(const ConvertRun* r, const void* src, Sample* s, const char* what, Error* e);

// One input document, in input order: every rank takes its index and key; the owning rank builds it with
// `build` and writes it, or passes it to convert_bad.
static int convert_doc(ConvertRun* r, const char* raw_key, const char* what, BuildDoc build, const void* src,
                       Error* e) {
    int64_t index = convert_next_index(r);
    Error bad;
    Sample s = {0};
    s.key = convert_unique_key(r, raw_key, index, what, &bad);
    int rc = 0;
    if (!convert_owns(r, index)) rc = 0;
    else if (!s.key || build(r, src, &s, what, &bad) != 0) rc = convert_bad(r, &bad, e);
    else rc = convert_write(r, &s, e);
    sample_free(&s);
    return rc;
}

// ---------------------------------------------------------------------------------------------------- jsonl-text

// One non-blank line of a JSONL file and the name of its text field.
typedef struct JsonlLine {
    const char* line;
    size_t n;
    const char* key;
} JsonlLine;

static int is_blank(const char* s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

static int build_jsonl(const ConvertRun* r, const void* src, Sample* s, const char* what, Error* e) {
    const JsonlLine* l = src;
    const char* key = l->key;
    json_error_t jerr;
    json_t* obj = json_loadb(l->line, l->n, JSON_DECODE_ANY, &jerr);
    if (!obj) return errorf(e, "%s: malformed JSON: %s (column %d)", what, jerr.text, jerr.column);
    const json_t* field = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    int rc = 0;
    if (!json_is_string(field))
        rc = errorf(e, "%s: no string field \"%s\" (choose the text field with --key)", what, key);
    else if (json_string_length(field) == 0)
        rc = errorf(e, "%s: the field \"%s\" is empty", what, key);
    else
        chat_build_document(r->tok, json_string_value(field), json_string_length(field),
                            tokenizer_vocab_size(r->tok) > 256, s);
    json_decref(obj);
    return rc;
}

static int convert_jsonl_line(ConvertRun* r, const char* path, const char* name, long line_no, const char* line,
                              size_t n, const char* key, Error* e) {
    char what[1024], raw_key[512];
    snprintf(what, sizeof what, "%s:%ld", path, line_no);
    snprintf(raw_key, sizeof raw_key, "%.200s:%ld", name, line_no);
    JsonlLine l = {line, n, key};
    return convert_doc(r, raw_key, what, build_jsonl, &l, e);
}

int convert_jsonl_text(const char* path, const char* key, const ConvertOptions* o, Error* e) {
    FILE* f = fopen(path, "rb");
    if (!f) return errorf(e, "%s: cannot open the JSONL file", path);
    ConvertRun r;
    if (convert_begin(&r, o, "jsonl-text", path, e) != 0) {
        fclose(f);
        return -1;
    }
    char* name = base_name(path);
    char* line = NULL;
    size_t cap = 0;
    long line_no = 0;
    ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        line_no++;
        if (!is_blank(line, (size_t)n))
            rc = convert_jsonl_line(&r, path, name, line_no, line, (size_t)n, key ? key : "text", e);
    }
    if (rc == 0 && ferror(f)) rc = errorf(e, "%s: read error after line %ld", path, line_no);
    free(line);
    free(name);
    fclose(f);
    return convert_end(&r, rc, e);
}

// ---------------------------------------------------------------------------------------------------- binidx

// The .idx's sizes (tokens per sequence) and doc_idx, read after binidx_open has validated the header.
typedef struct IdxTables {
    int32_t* sizes;     // (n_seq)
    int64_t* doc_idx;   // (n_doc)
} IdxTables;

static int read_tables(const char* prefix, const BinIdx* b, IdxTables* t, Error* e) {
    char path[4096];
    snprintf(path, sizeof path, "%s.idx", prefix);
    size_t len;
    char* idx = read_file(path, &len, e);
    if (!idx) return -1;
    size_t need = IDX_HEADER_BYTES + b->n_seq * 12 + b->n_doc * 8;
    if (b->n_seq > len || b->n_doc > len || len < need) {
        free(idx);
        return errorf(e, "%s: shorter than its header declares", path);
    }
    t->sizes = xmalloc(b->n_seq * sizeof(int32_t) + 1);
    t->doc_idx = xmalloc(b->n_doc * sizeof(int64_t) + 1);
    memcpy(t->sizes, idx + IDX_HEADER_BYTES, b->n_seq * sizeof(int32_t));
    memcpy(t->doc_idx, idx + IDX_HEADER_BYTES + b->n_seq * 12, b->n_doc * sizeof(int64_t));
    free(idx);
    for (size_t k = 0; k < b->n_doc; k++) {
        int64_t lo = k ? t->doc_idx[k - 1] : 0;
        if (t->doc_idx[k] < lo || t->doc_idx[k] > (int64_t)b->n_seq)
            return errorf(e, "%s: doc_idx[%zu] = %lld is not monotone inside [0, %zu]", path, k,
                          (long long)t->doc_idx[k], b->n_seq);
    }
    return 0;
}

// Document tokens [begin, end) of the stream.
typedef struct BinidxDoc {
    const BinIdx* b;
    size_t begin, end;
} BinidxDoc;

// A document -> a fully trained sample; checks every token.
static int build_binidx_doc(const ConvertRun* r, const void* src, Sample* s, const char* what, Error* e) {
    const BinidxDoc* d = src;
    const BinIdx* b = d->b;
    size_t begin = d->begin;
    uint32_t vocab = (uint32_t)tokenizer_vocab_size(r->tok);
    s->n_tokens = d->end - begin;
    s->tokens = xmalloc(s->n_tokens * sizeof(uint32_t));
    s->loss_mask = xmalloc(s->n_tokens);
    for (size_t i = 0; i < s->n_tokens; i++) {
        uint32_t t = binidx_token(b, begin + i);
        if (t >= vocab)
            return errorf(e, "%s: token %u at position %zu is outside the %s vocabulary (%u): was the data made with "
                             "another tokenizer? (--tokenizer)", what, t, i, tokenizer_name(r->tok), vocab);
        if (t == SHARD_PLACEHOLDER_IMAGE || t == SHARD_PLACEHOLDER_AUDIO || t == SHARD_PLACEHOLDER_TIMESERIES)
            return errorf(e, "%s: token %u at position %zu is a media placeholder id", what, t, i);
        s->tokens[i] = t;
        s->loss_mask[i] = 1;
    }
    return 0;
}

static int convert_binidx_doc(ConvertRun* r, const BinIdx* b, const char* prefix, const char* name, size_t doc,
                              size_t begin, size_t end, Error* e) {
    char what[1024], raw_key[512];
    snprintf(what, sizeof what, "%s.idx: document %zu", prefix, doc);
    snprintf(raw_key, sizeof raw_key, "%.200s:%zu", name, doc);
    BinidxDoc d = {b, begin, end};
    return convert_doc(r, raw_key, what, build_binidx_doc, &d, e);
}

// Documents = runs of sequences between consecutive boundaries 0, doc_idx..., n_seq (empty runs skipped).
static int convert_documents(ConvertRun* r, const BinIdx* b, const IdxTables* t, const char* prefix, Error* e) {
    char* name = base_name(prefix);
    size_t seq = 0, token = 0, doc = 0;
    int rc = 0;
    for (size_t k = 0; k <= b->n_doc && rc == 0; k++) {
        size_t stop = k < b->n_doc ? (size_t)t->doc_idx[k] : b->n_seq;
        size_t begin = token;
        for (; seq < stop; seq++) token += (size_t)t->sizes[seq];
        if (token > begin) rc = convert_binidx_doc(r, b, prefix, name, doc++, begin, token, e);
    }
    free(name);
    return rc;
}

int convert_binidx(const char* prefix, const ConvertOptions* o, Error* e) {
    BinIdx b;
    if (binidx_open(&b, prefix, e) != 0) return -1;
    IdxTables t = {NULL, NULL};
    ConvertRun r;
    int rc = read_tables(prefix, &b, &t, e);
    if (rc == 0 && convert_begin(&r, o, "binidx", prefix, e) == 0) {
        rc = convert_documents(&r, &b, &t, prefix, e);
        rc = convert_end(&r, rc, e);
    } else {
        rc = -1;
    }
    free(t.sizes);
    free(t.doc_idx);
    binidx_close(&b);
    return rc;
}
