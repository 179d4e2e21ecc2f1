// safetensors.c — reads and writes safetensors files (see safetensors.h).
//
// Contract: the header is parsed with jansson and fully validated against the file length before any
// tensor memory is allocated; tensor bytes are then copied (from memory) or read straight into each
// tensor (from a file, so a checkpoint is never held twice). Writing streams through an AtomicFile,
// so path holds the whole file or is left untouched.
#include "trainer/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { MAX_HEADER = 100 * 1000 * 1000 };  // the spec's limit on the JSON header

typedef struct Entry {
    const char* name;  // points into the JSON document
    DType dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    uint64_t begin, end;  // byte range inside the data buffer
    int order;            // position in the header (tie-break for empty tensors)
} Entry;

// Where the bytes come from: a memory image or an open file.
typedef struct Source {
    const char* name;
    const uint8_t* mem;
    FILE* f;
    uint64_t len;         // total file length
    uint64_t data_start;  // 8 + header size
} Source;

static int parse_dtype(const char* s, DType* dt) {
    static const DType all[] = {DT_F32, DT_BF16, DT_F16, DT_F64, DT_I64, DT_I32, DT_I16, DT_I8, DT_U8, DT_BOOL};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, dtype_name(all[i])) == 0) { *dt = all[i]; return 0; }
    return -1;
}

static int read_at(const Source* S, uint64_t off, void* dst, uint64_t n, Error* e) {
    if (n == 0) return 0;
    if (S->mem) { memcpy(dst, S->mem + off, (size_t)n); return 0; }
    if (fseeko(S->f, (off_t)off, SEEK_SET) != 0 || fread(dst, 1, (size_t)n, S->f) != n)
        return errorf(e, "%s: read failed at byte %llu: %s (the file is truncated?)", S->name, (unsigned long long)off,
                      ferror(S->f) ? strerror(errno) : "unexpected end of file");
    return 0;
}

// Parses one tensor entry {"dtype", "shape", "data_offsets"} and checks it against the buffer size.
static int parse_entry(const Source* S, const char* key, json_t* v, uint64_t data_len, Entry* out, Error* e) {
    const char* n = S->name;
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"), *offs = json_object_get(v, "data_offsets");
    if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs))
        return errorf(e, "%s: header entry '%s' needs \"dtype\", \"shape\" and \"data_offsets\"", n, key);
    out->name = key;
    if (parse_dtype(json_string_value(dt), &out->dtype))
        return errorf(e, "%s: tensor '%s' has unsupported dtype '%s' (supported: F32 BF16 F16 F64 I64 I32 I16 I8 U8 BOOL)",
                      n, key, json_string_value(dt));
    if (json_array_size(shape) > TENSOR_MAX_DIMS)
        return errorf(e, "%s: tensor '%s' has %zu dimensions (at most %d)", n, key, json_array_size(shape), TENSOR_MAX_DIMS);
    out->ndim = (int)json_array_size(shape);
    int64_t bytes = (int64_t)dtype_size(out->dtype);
    for (int i = 0; i < out->ndim; i++) {
        json_t* d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0) return errorf(e, "%s: tensor '%s' shape[%d] is not a non-negative integer", n, key, i);
        out->shape[i] = json_integer_value(d);
        if (__builtin_mul_overflow(bytes, out->shape[i], &bytes)) return errorf(e, "%s: tensor '%s' is too large", n, key);
    }
    json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
    if (json_array_size(offs) != 2 || !json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 ||
        json_integer_value(en) < json_integer_value(b))
        return errorf(e, "%s: tensor '%s' data_offsets must be [begin, end] with 0 <= begin <= end", n, key);
    out->begin = (uint64_t)json_integer_value(b);
    out->end = (uint64_t)json_integer_value(en);
    if (out->end > data_len)
        return errorf(e, "%s: tensor '%s' data_offsets [%llu, %llu] run past the %llu-byte data buffer; the file is truncated or corrupt",
                      n, key, (unsigned long long)out->begin, (unsigned long long)out->end, (unsigned long long)data_len);
    if (out->end - out->begin != (uint64_t)bytes)
        return errorf(e, "%s: tensor '%s' has %llu data bytes but its shape and dtype %s need %lld", n, key,
                      (unsigned long long)(out->end - out->begin), dtype_name(out->dtype), (long long)bytes);
    return 0;
}

static int by_offset(const void* a, const void* b) {
    const Entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->order - y->order;
}

// Sorted by offset, the tensors must tile the data buffer exactly: no overlap, no hole, no tail.
static int check_tiling(const Source* S, Entry* ents, int n, uint64_t data_len, Error* e) {
    qsort(ents, (size_t)n, sizeof *ents, by_offset);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        if (ents[i].begin < pos)
            return errorf(e, "%s: tensors '%s' and '%s' overlap in the data buffer; the file is corrupt", S->name, ents[i - 1].name, ents[i].name);
        if (ents[i].begin > pos)
            return errorf(e, "%s: data bytes %llu..%llu belong to no tensor (before '%s'); the file is corrupt", S->name,
                          (unsigned long long)pos, (unsigned long long)ents[i].begin, ents[i].name);
        pos = ents[i].end;
    }
    if (pos != data_len)
        return errorf(e, "%s: the last %llu data bytes belong to no tensor; the file is corrupt", S->name, (unsigned long long)(data_len - pos));
    return 0;
}

static int parse_metadata(const Source* S, json_t* meta, TensorSet* out, Error* e) {
    const char* k;
    json_t* v;
    if (!json_is_object(meta)) return errorf(e, "%s: \"__metadata__\" is not a JSON object", S->name);
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v)) return errorf(e, "%s: \"__metadata__\" value of '%s' is not a string (the spec allows only strings)", S->name, k);
    }
    out->metadata = json_dumps(meta, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!out->metadata) fatal("out of memory serializing safetensors metadata");
    return 0;
}

static int read_tensors(const Source* S, json_t* root, TensorSet* out, Error* e) {
    uint64_t data_len = S->len - S->data_start;
    size_t cap = json_object_size(root);
    Entry* ents = xcalloc(cap + 1, sizeof *ents);
    int n = 0, rc = 0;
    const char* key;
    json_t* v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) rc = parse_metadata(S, v, out, e);
        else if ((rc = parse_entry(S, key, v, data_len, &ents[n], e)) == 0) ents[n].order = n, n++;
        if (rc) break;
    }
    if (rc == 0) rc = check_tiling(S, ents, n, data_len, e);
    for (int i = 0; rc == 0 && i < n; i++) {
        NamedTensor* t = tensorset_add(out, ents[i].name, ents[i].dtype, ents[i].ndim, ents[i].shape, NULL);
        rc = read_at(S, S->data_start + ents[i].begin, t->data, ents[i].end - ents[i].begin, e);
    }
    free(ents);
    return rc;
}

static int read_source(Source* S, const char* header, uint64_t hlen, TensorSet* out, Error* e) {
    json_error_t je;
    json_t* root = json_loadb(header, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) return errorf(e, "%s: the JSON header is invalid (%s at header byte %d); the file is corrupt or not safetensors", S->name, je.text, je.position);
    int rc = json_is_object(root) ? read_tensors(S, root, out, e) : errorf(e, "%s: the JSON header is not an object", S->name);
    json_decref(root);
    if (rc) tensorset_free(out);
    return rc;
}

// Reads and checks the 8-byte header size: it must fit in the file and within the spec's limit.
static int header_size(const Source* S, const uint8_t size_le[8], uint64_t* hlen, Error* e) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | size_le[i];
    if (n > S->len - 8)
        return errorf(e, "%s: header size %llu is larger than the file (%llu bytes); the file is truncated or not safetensors",
                      S->name, (unsigned long long)n, (unsigned long long)S->len);
    if (n > MAX_HEADER) return errorf(e, "%s: header size %llu exceeds the 100 MB limit of the spec", S->name, (unsigned long long)n);
    *hlen = n;
    return 0;
}

int safetensors_read_mem(const void* buf, size_t len, const char* name, TensorSet* out, Error* e) {
    tensorset_init(out);
    Source S = {.name = name, .mem = buf, .len = len};
    if (len < 8) return errorf(e, "%s: %zu bytes is too short for a safetensors file (8-byte header size first)", name, len);
    uint64_t hlen = 0;
    if (header_size(&S, buf, &hlen, e)) return -1;
    S.data_start = 8 + hlen;
    return read_source(&S, (const char*)buf + 8, hlen, out, e);
}

int safetensors_read(const char* path, TensorSet* out, Error* e) {
    tensorset_init(out);
    FILE* f = fopen(path, "rb");
    if (!f) return errorf(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    Source S = {.name = path, .f = f};
    uint8_t size_le[8];
    uint64_t hlen = 0;
    int rc = fstat(fileno(f), &st) != 0 ? errorf(e, "%s: cannot stat: %s", path, strerror(errno)) : 0;
    if (rc == 0) S.len = (uint64_t)st.st_size;
    if (rc == 0 && S.len < 8) rc = errorf(e, "%s: %llu bytes is too short for a safetensors file (8-byte header size first)", path, (unsigned long long)S.len);
    if (rc == 0) rc = read_at(&S, 0, size_le, 8, e);
    if (rc == 0) rc = header_size(&S, size_le, &hlen, e);
    char* header = rc == 0 ? xmalloc((size_t)hlen + 1) : NULL;
    if (rc == 0) rc = read_at(&S, 8, header, hlen, e);
    S.data_start = 8 + hlen;
    if (rc == 0) rc = read_source(&S, header, hlen, out, e);
    free(header);
    fclose(f);
    return rc;
}

// ------------------------------------------------------------------------------------------ writer

static json_t* int_array2(int64_t a, int64_t b) {
    json_t* arr = json_array();
    json_array_append_new(arr, json_integer(a));
    json_array_append_new(arr, json_integer(b));
    return arr;
}

static int add_metadata(const char* path, const char* text, json_t* root, Error* e) {
    json_error_t je;
    json_t* meta = json_loads(text, 0, &je);
    const char* k;
    json_t* v;
    int ok = json_is_object(meta);
    if (ok) json_object_foreach(meta, k, v) ok &= json_is_string(v);
    if (!ok) {
        json_decref(meta);
        return errorf(e, "%s: metadata must be a JSON object with string values (got '%.60s')", path, text);
    }
    json_object_set_new(root, "__metadata__", meta);
    return 0;
}

// Header JSON: "__metadata__" first, then the tensors in the set's order with consecutive offsets.
static char* build_header(const char* path, const TensorSet* s, Error* e) {
    json_t* root = json_object();
    int rc = s->metadata ? add_metadata(path, s->metadata, root, e) : 0;
    int64_t off = 0;
    for (int i = 0; rc == 0 && i < s->n; i++) {
        const NamedTensor* t = &s->t[i];
        if (strcmp(t->name, "__metadata__") == 0 || json_object_get(root, t->name)) {
            rc = errorf(e, "%s: cannot save a tensor named '%s' (duplicate or reserved name)", path, t->name);
            break;
        }
        json_t* shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        int64_t nb = (int64_t)tensor_nbytes(t);
        json_t* ent = json_pack("{s:s, s:o, s:o}", "dtype", dtype_name(t->dtype), "shape", shape, "data_offsets", int_array2(off, off + nb));
        if (json_object_set_new(root, t->name, ent) != 0)
            rc = errorf(e, "%s: cannot save tensor name '%.80s': it is not valid UTF-8", path, t->name);
        off += nb;
    }
    char* text = rc == 0 ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (rc == 0 && !text) errorf(e, "%s: cannot serialize the safetensors header", path);
    return text;
}

// 8-byte little-endian header size, the header padded with spaces to a multiple of 8, the data.
static int write_body(AtomicFile* f, const TensorSet* s, const char* header, Error* e) {
    size_t hlen = strlen(header), padded = (hlen + 7) / 8 * 8;
    uint8_t size_le[8];
    for (int i = 0; i < 8; i++) size_le[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    if (atomic_file_write(f, size_le, 8, e) || atomic_file_write(f, header, hlen, e) ||
        atomic_file_write(f, spaces, padded - hlen, e))
        return -1;
    for (int i = 0; i < s->n; i++)
        if (atomic_file_write(f, s->t[i].data, tensor_nbytes(&s->t[i]), e)) return -1;
    return 0;
}

int safetensors_write(const char* path, const TensorSet* s, Error* e) {
    char* header = build_header(path, s, e);
    AtomicFile f;
    int rc = header ? atomic_file_open(&f, path, e) : -1;
    if (rc == 0) rc = atomic_file_finish(&f, write_body(&f, s, header, e), e);
    free(header);
    return rc;
}
