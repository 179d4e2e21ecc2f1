// test_fuzz_checkpoints.c — deterministic mutation fuzzing of the checkpoint readers.
//
// Three targets, each fed seeded random mutations (bit flips, special bytes, truncations, insertions,
// deletions, duplicated chunks) for a bounded number of iterations and time:
//   (a) the whole tiny bf16 .pth in memory -> pth_read_mem; some mutations stay inside data.pkl and
//       re-stamp its zip CRC so that they reach the pickle and storage checks through the zip path;
//   (b) its data.pkl bytes -> pickle_read_state_dict directly;
//   (c) a small safetensors file -> safetensors_read_mem.
// Every call must return 0 or -1; -1 must come with a one-line message naming the input; 0 must
// yield well-formed tensors whose data size matches their shape (every byte is read, so a short
// buffer trips AddressSanitizer) and, for (b), views inside their storage. A crash fails the test.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>
#include <zlib.h>

#include "tests/testutil.h"
#include "trainer/pickle.h"
#include "trainer/pth.h"
#include "trainer/safetensors.h"

enum { MAX_ITERS = 20000 };
static const double kSecondsPerTarget = 1.5;

// ------------------------------------------------------------------------------------------ mutation

static uint64_t rnd(uint64_t* s) {  // splitmix64
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static size_t below(uint64_t* s, size_t n) { return n ? (size_t)(rnd(s) % n) : 0; }

typedef struct Buf {
    uint8_t* p;
    size_t len, cap;
} Buf;

static Buf buf_copy(const uint8_t* src, size_t len) {
    Buf b = {xmalloc(len + 64), len, len + 64};
    memcpy(b.p, src, len);
    return b;
}

// Position for a mutation: inside [lo, hi) two times out of three, anywhere otherwise.
static size_t pick(uint64_t* s, const Buf* b, size_t lo, size_t hi) {
    if (hi > b->len) hi = b->len;
    if (lo < hi && below(s, 3)) return lo + below(s, hi - lo);
    return below(s, b->len);
}

// In-place edits only: flips and special bytes (sizes and offsets stay valid).
static void mutate_in_place(uint64_t* s, Buf* b, size_t lo, size_t hi) {
    static const uint8_t special[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe, '(', ')', '.', 'K', 'X', 'q', 'h', 't', 'R', 'u'};
    int n = 1 + (int)below(s, 4);
    for (int i = 0; i < n && b->len; i++) {
        size_t at = pick(s, b, lo, hi);
        if (below(s, 2)) b->p[at] ^= (uint8_t)(1u << below(s, 8));
        else b->p[at] = special[below(s, sizeof special)];
    }
}

// Any edit, including ones that change the length.
static void mutate(uint64_t* s, Buf* b, size_t lo, size_t hi) {
    size_t at = pick(s, b, lo, hi);
    size_t n = 1 + below(s, 16);
    switch (below(s, 5)) {
    case 0: mutate_in_place(s, b, lo, hi); break;
    case 1: b->len = at; break;  // truncate
    case 2:                      // insert n random bytes
        if (b->len + n > b->cap) b->p = xrealloc(b->p, b->cap = b->len + n + 64);
        memmove(b->p + at + n, b->p + at, b->len - at);
        for (size_t i = 0; i < n; i++) b->p[at + i] = (uint8_t)rnd(s);
        b->len += n;
        break;
    case 3:  // delete n bytes
        if (n > b->len - at) n = b->len - at;
        memmove(b->p + at, b->p + at + n, b->len - at - n);
        b->len -= n;
        break;
    default: {  // duplicate a chunk somewhere else
        size_t from = below(s, b->len);
        if (n > b->len - from) n = b->len - from;
        if (b->len + n > b->cap) b->p = xrealloc(b->p, b->cap = b->len + n + 64);
        memmove(b->p + at + n, b->p + at, b->len - at);
        memmove(b->p + at, b->p + (from < at ? from : from + n), n);
        b->len += n;
    }
    }
}

// ------------------------------------------------------------------------------------------ outcomes

typedef struct Outcome {
    const char* target;
    long accepted, rejected, violations, iters;
    char example[4][300];
    int n_examples;
} Outcome;

static void record(Outcome* o, int rc, const Error* e, const char* name, int bad_result) {
    o->iters++;
    if (rc == 0) {
        o->accepted++;
        if (bad_result) o->violations++;
        return;
    }
    o->rejected++;
    if (!is_clean_rejection(rc, e, name)) {
        o->violations++;
        printf("  %s: bad rejection (rc %d): '%s'\n", o->target, rc, e->msg);
    }
    int fresh = o->n_examples < 4;
    for (int i = 0; fresh && i < o->n_examples; i++) fresh = strncmp(o->example[i], e->msg, 48) != 0;
    if (fresh) snprintf(o->example[o->n_examples++], sizeof o->example[0], "%.280s", e->msg);
}

static int report(const Outcome* o, double seconds) {
    printf("%s: %ld inputs in %.2f s: %ld accepted, %ld rejected, %ld contract violations\n", o->target, o->iters, seconds,
           o->accepted, o->rejected, o->violations);
    for (int i = 0; i < o->n_examples; i++) printf("  e.g. %s\n", o->example[i]);
    char label[128];
    snprintf(label, sizeof label, "%s: every input ends in 0 or -1 with a message, results well-formed", o->target);
    return check_true(label, o->violations == 0 && o->iters > 0, "violations");
}

// Accepted tensor sets must be well-formed; reading every byte lets ASan catch a short buffer.
static int bad_set(const TensorSet* s) {
    unsigned sum = 0;
    for (int i = 0; i < s->n; i++) {
        const NamedTensor* t = &s->t[i];
        if (!t->name || !t->data || t->ndim < 0 || t->ndim > TENSOR_MAX_DIMS || t->dtype < DT_F32 || t->dtype > DT_BOOL) return 1;
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0) return 1;
        const uint8_t* p = t->data;
        for (size_t k = 0; k < tensor_nbytes(t); k++) sum += p[k];
    }
    return sum == 0xFFFFFFFFu;  // never true in practice; keeps the reads
}

// Accepted pickles must describe views inside their storages (recomputed independently).
static int bad_pickle(const PickleStateDict* d) {
    for (int i = 0; i < d->n; i++) {
        const PickleTensor* t = &d->t[i];
        if (!t->name || !t->storage_key || t->ndim < 0 || t->ndim > TENSOR_MAX_DIMS || t->offset < 0 || t->storage_numel < 0) return 1;
        double numel = 1, last = (double)t->offset;
        for (int k = 0; k < t->ndim; k++) {
            numel *= (double)t->shape[k];
            last += (double)(t->shape[k] - 1) * (double)t->stride[k];
        }
        if (numel > 0 && last >= (double)t->storage_numel) return 1;
    }
    return 0;
}

// ------------------------------------------------------------------------------------------ targets

// Where data.pkl's bytes and CRC fields sit in the zip image (central directory walk).
typedef struct PklLoc {
    size_t data, len, local_crc, central_crc, cd_start;
} PklLoc;

static PklLoc locate_pickle(const uint8_t* f, size_t len) {
    PklLoc L = {0};
    uint32_t count = test_le16(f + len - 22 + 10), cd = test_le32(f + len - 22 + 16);
    L.cd_start = cd;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t nlen = test_le16(f + cd + 28), xlen = test_le16(f + cd + 30), clen = test_le16(f + cd + 32);
        uint32_t off = test_le32(f + cd + 42);
        if (nlen >= 8 && memcmp(f + cd + 46 + nlen - 8, "data.pkl", 8) == 0) {
            L.central_crc = cd + 16;
            L.local_crc = off + 14;
            L.data = off + 30 + test_le16(f + off + 26) + test_le16(f + off + 28);
            L.len = test_le32(f + cd + 24);
        }
        cd += 46 + nlen + xlen + clen;
    }
    if (!L.len) fatal("test: data.pkl not found in the tiny checkpoint");
    return L;
}

static void put32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static int fuzz_pth(const uint8_t* file, size_t len) {
    Outcome o = {.target = "(a) whole .pth -> pth_read_mem"};
    PklLoc L = locate_pickle(file, len);
    uint64_t seed = 1;
    double t0 = now_seconds();
    for (int it = 0; it < MAX_ITERS && now_seconds() - t0 < kSecondsPerTarget; it++) {
        Buf b = buf_copy(file, len);
        size_t mode = below(&seed, 3);
        if (mode == 0) {  // inside data.pkl, CRC re-stamped: reaches the pickle and storage checks
            mutate_in_place(&seed, &b, L.data, L.data + L.len);
            uint32_t crc = (uint32_t)crc32(0L, b.p + L.data, (uInt)L.len);
            put32(b.p + L.local_crc, crc);
            put32(b.p + L.central_crc, crc);
        } else {
            mutate(&seed, &b, mode == 1 ? L.cd_start : 0, mode == 1 ? len : 4096);  // central directory / first headers
        }
        TensorSet s;
        Error e = {{0}};
        int rc = pth_read_mem(b.p, b.len, "fuzz.pth", &s, &e);
        record(&o, rc, &e, "fuzz.pth", rc == 0 && bad_set(&s));
        if (rc == 0) tensorset_free(&s);
        free(b.p);
    }
    return report(&o, now_seconds() - t0);
}

static int fuzz_pickle(const uint8_t* pkl, size_t len) {
    Outcome o = {.target = "(b) data.pkl -> pickle_read_state_dict"};
    uint64_t seed = 2;
    double t0 = now_seconds();
    for (int it = 0; it < MAX_ITERS && now_seconds() - t0 < kSecondsPerTarget; it++) {
        Buf b = buf_copy(pkl, len);
        int edits = 1 + (int)below(&seed, 3);
        for (int k = 0; k < edits; k++) mutate(&seed, &b, 0, b.len);
        PickleStateDict d;
        Error e = {{0}};
        int rc = pickle_read_state_dict(b.p, b.len, "fuzz.pkl", &d, &e);
        record(&o, rc, &e, "fuzz.pkl", rc == 0 && bad_pickle(&d));
        if (rc == 0) pickle_state_dict_free(&d);
        free(b.p);
    }
    return report(&o, now_seconds() - t0);
}

static int fuzz_safetensors(const uint8_t* file, size_t len) {
    Outcome o = {.target = "(c) safetensors -> safetensors_read_mem"};
    size_t header_end = 8 + (size_t)test_le32(file);
    uint64_t seed = 3;
    double t0 = now_seconds();
    for (int it = 0; it < MAX_ITERS && now_seconds() - t0 < kSecondsPerTarget; it++) {
        Buf b = buf_copy(file, len);
        int edits = 1 + (int)below(&seed, 2);
        for (int k = 0; k < edits; k++) mutate(&seed, &b, 0, header_end);
        TensorSet s;
        Error e = {{0}};
        int rc = safetensors_read_mem(b.p, b.len, "fuzz.safetensors", &s, &e);
        record(&o, rc, &e, "fuzz.safetensors", rc == 0 && bad_set(&s));
        if (rc == 0) tensorset_free(&s);
        free(b.p);
    }
    return report(&o, now_seconds() - t0);
}

// ------------------------------------------------------------------------------------------ inputs

static uint8_t* read_pickle_entry(const char* path, size_t* len) {
    int err = 0;
    zip_t* z = zip_open(path, ZIP_RDONLY, &err);
    zip_int64_t idx = z ? zip_name_locate(z, "tiny-rwkv7-834K-bf16/data.pkl", 0) : -1;
    zip_stat_t st;
    if (idx < 0 || zip_stat_index(z, (zip_uint64_t)idx, 0, &st) != 0) fatal("test: cannot find data.pkl in %s", path);
    uint8_t* p = xmalloc(st.size);
    zip_file_t* f = zip_fopen_index(z, (zip_uint64_t)idx, 0);
    if (!f || zip_fread(f, p, st.size) != (zip_int64_t)st.size) fatal("test: cannot read data.pkl of %s", path);
    zip_fclose(f);
    zip_discard(z);
    *len = st.size;
    return p;
}

static uint8_t* small_safetensors(size_t* len) {
    TensorSet s;
    Error e;
    tensorset_init(&s);
    float w[6] = {1, -2, 3, -4, 5, -6};
    int64_t ids[3] = {7, 8, 9};
    uint16_t h[4] = {0x3f80, 0x4000, 0xc040, 0x0000};
    tensorset_add(&s, "blocks.0.att.key.weight", DT_F32, 2, (int64_t[]){2, 3}, w);
    tensorset_add(&s, "ids", DT_I64, 1, (int64_t[]){3}, ids);
    tensorset_add(&s, "emb.weight", DT_BF16, 2, (int64_t[]){2, 2}, h);
    tensorset_add(&s, "scalar", DT_F32, 0, NULL, w);
    s.metadata = xstrdup("{\"format\":\"pt\",\"step\":\"10\"}");
    const char* path = "test_fuzz_small.safetensors";
    if (safetensors_write(path, &s, &e)) fatal("%s", e.msg);
    tensorset_free(&s);
    uint8_t* p = (uint8_t*)read_file(path, len, &e);
    if (!p) fatal("%s", e.msg);
    return p;
}

int main(void) {
    int f = 0;
    const char* tiny = src_path("tests/data/tiny-rwkv7-834K-bf16.pth");
    size_t len;
    Error e;
    uint8_t* file = (uint8_t*)read_file(tiny, &len, &e);
    if (!file) fatal("%s", e.msg);
    f += fuzz_pth(file, len);
    free(file);

    uint8_t* pkl = read_pickle_entry(tiny, &len);
    f += fuzz_pickle(pkl, len);
    free(pkl);

    uint8_t* st = small_safetensors(&len);
    f += fuzz_safetensors(st, len);
    free(st);
    return test_summary("test_fuzz_checkpoints", f);
}
