// test_pth.c — specification of the .pth checkpoint reader and writer (trainer/pth.h).
//
// Reads the two official-layout tiny RWKV-7 files (fp32 and bf16), checks names, shapes, dtypes and
// that the bf16 file is exactly the fp32 one rounded to bf16; writes both back and reads them again
// bit-exactly (with every stored entry's data 64-byte aligned); reads views (storage offsets,
// strides, shared storages) and a protocol-4 pickle written by torch; and checks that broken inputs
// are rejected with one-line messages naming the file.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "kernels/bf16.h"
#include "tests/testutil.h"
#include "trainer/pickle.h"
#include "trainer/pth.h"

// ------------------------------------------------------------------------------------------ helpers

static int check_shape(const TensorSet* s, const char* name, int ndim, const int64_t* want) {
    const NamedTensor* t = tensorset_find(s, name);
    int ok = t && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
    char label[160];
    snprintf(label, sizeof label, "shape of %s", name);
    return check_true(label, ok, t ? "wrong shape" : "missing");
}

static int same_names_and_shapes(const char* label, const TensorSet* a, const TensorSet* b) {
    int ok = a->n == b->n;
    for (int i = 0; ok && i < a->n; i++)
        ok = strcmp(a->t[i].name, b->t[i].name) == 0 && a->t[i].ndim == b->t[i].ndim &&
             memcmp(a->t[i].shape, b->t[i].shape, sizeof a->t[i].shape) == 0;
    return check_true(label, ok, "names, order or shapes differ");
}

// Every zip entry's data must start on a 64-byte boundary (torch mmap-loads with that alignment).
// Walks the central directory of a small file without comment: EOCD is the last 22 bytes.
static int check_alignment(const char* label, const char* path) {
    size_t len;
    Error e;
    uint8_t* f = (uint8_t*)read_file(path, &len, &e);
    if (!f || len < 22) {
        free(f);
        return check_true(label, 0, "cannot read the file");
    }
    const uint8_t* eocd = f + len - 22;
    uint32_t count = test_le16(eocd + 10), cd = test_le32(eocd + 16), misaligned = 0, seen = 0;
    for (uint32_t i = 0; i < count && cd + 46 <= len; i++, seen++) {
        uint32_t nlen = test_le16(f + cd + 28), xlen = test_le16(f + cd + 30), clen = test_le16(f + cd + 32);
        uint32_t off = test_le32(f + cd + 42);
        uint32_t data = off + 30 + test_le16(f + off + 26) + test_le16(f + off + 28);
        misaligned += data % 64 != 0;
        cd += 46 + nlen + xlen + clen;
    }
    free(f);
    char detail[64];
    snprintf(detail, sizeof detail, "%u of %u entries misaligned", misaligned, count);
    printf("%s: %u entries, %u misaligned\n", label, seen, misaligned);
    return check_true(label, misaligned == 0 && seen == count && count > 0, detail);
}

// Writes a zip with STORED entries via libzip; returns 0 on success.
static int write_zip(const char* path, int n, const char* const* names, const void* const* data, const size_t* lens) {
    int err = 0;
    zip_t* z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
    if (!z) return -1;
    for (int i = 0; i < n; i++) {
        zip_source_t* src = zip_source_buffer(z, data[i], lens[i], 0);
        zip_int64_t idx = src ? zip_file_add(z, names[i], src, ZIP_FL_OVERWRITE) : -1;
        if (idx < 0) {
            zip_source_free(src);
            zip_discard(z);
            return -1;
        }
        zip_set_file_compression(z, (zip_uint64_t)idx, ZIP_CM_STORE, 0);
    }
    return zip_close(z);
}

// A zip holding arch/data.pkl and, when given, arch/data/0 and arch/data/1.
static void write_checkpoint(const char* path, const void* pkl, size_t pkl_len, const void* s0, size_t n0, const void* s1,
                             size_t n1) {
    const char* names[] = {"arch/data.pkl", "arch/data/0", "arch/data/1"};
    const void* data[] = {pkl, s0, s1};
    size_t lens[] = {pkl_len, n0, n1};
    if (write_zip(path, s1 ? 3 : (s0 ? 2 : 1), names, data, lens)) fatal("test: cannot write %s", path);
}

// ------------------------------------------------------------------------------------------ checks

static int check_tiny(const char* rel, DType dt, TensorSet* s) {
    Error e;
    if (pth_read(src_path(rel), s, &e)) return check_true(rel, 0, e.msg);
    int all_dt = 1, f = 0;
    for (int i = 0; i < s->n; i++) all_dt &= s->t[i].dtype == dt;
    printf("%s: %d tensors, first '%s', last '%s'\n", rel, s->n, s->t[0].name, s->t[s->n - 1].name);
    f += check_true("tensor count is 399 (emb, 12 x 33 block tensors, ln_out x2 ... head)", s->n == 399, "wrong count");
    f += check_true("order of the file: emb.weight first, head.weight last",
                    strcmp(s->t[0].name, "emb.weight") == 0 && strcmp(s->t[s->n - 1].name, "head.weight") == 0, "order");
    f += check_true("every tensor keeps its stored dtype", all_dt, dtype_name(dt));
    f += check_shape(s, "emb.weight", 2, (int64_t[]){256, 64});
    f += check_shape(s, "head.weight", 2, (int64_t[]){256, 64});
    f += check_shape(s, "blocks.0.ln0.weight", 1, (int64_t[]){64});
    f += check_shape(s, "blocks.11.att.w1", 2, (int64_t[]){64, 32});
    f += check_shape(s, "blocks.0.att.r_k", 2, (int64_t[]){1, 64});
    f += check_shape(s, "blocks.5.att.x_r", 3, (int64_t[]){1, 1, 64});
    f += check_shape(s, "blocks.11.ffn.value.weight", 2, (int64_t[]){64, 256});
    return f;
}

// The bf16 file is the fp32 file rounded to bf16, and the fp32 values are all bf16-representable.
static int check_bf16_equals_fp32(const TensorSet* a, const TensorSet* b) {
    int64_t mismatches = 0, total = 0;
    for (int i = 0; i < a->n && i < b->n; i++) {
        const float* x = a->t[i].data;
        const uint16_t* h = b->t[i].data;
        for (int64_t k = 0; k < tensor_numel(&a->t[i]); k++, total++) {
            float back = bf16_to_float(h[k]);
            mismatches += float_to_bf16(x[k]) != h[k] || memcmp(&back, &x[k], 4) != 0;
        }
    }
    printf("bf16 vs fp32: %lld of %lld values differ\n", (long long)mismatches, (long long)total);
    return check_true("bf16 file == fp32 file exactly after conversion", mismatches == 0 && total > 0, "values differ");
}

static int check_roundtrip(const char* label, const TensorSet* s, const char* out) {
    Error e;
    TensorSet back;
    int f = 0;
    if (pth_write(out, s, &e)) return check_true(label, 0, e.msg);
    f += check_no_temp_file(out);
    f += check_alignment("written entries are 64-byte aligned", out);
    if (pth_read(out, &back, &e)) return f + check_true(label, 0, e.msg);
    f += check_same_tensorsets(label, s, &back);
    tensorset_free(&back);
    return f;
}

// Views of shared storages: offsets, transposes, steps, broadcast (stride 0), 0-d, tied weights.
static int check_views(void) {
    float st0[24];
    for (int i = 0; i < 24; i++) st0[i] = (float)i;
    int64_t st1[3] = {-5, 1LL << 40, 7};
    PickleTensor t[] = {
        {.name = "whole", .dtype = DT_F32, .storage_key = "0", .storage_numel = 24, .ndim = 2, .shape = {4, 6}, .stride = {6, 1}},
        {.name = "transposed", .dtype = DT_F32, .storage_key = "0", .storage_numel = 24, .ndim = 2, .shape = {6, 4}, .stride = {1, 6}},
        {.name = "row2", .dtype = DT_F32, .storage_key = "0", .storage_numel = 24, .offset = 12, .ndim = 1, .shape = {6}, .stride = {1}},
        {.name = "stepped", .dtype = DT_F32, .storage_key = "0", .storage_numel = 24, .offset = 7, .ndim = 2, .shape = {2, 3}, .stride = {6, 2}},
        {.name = "broadcast", .dtype = DT_F32, .storage_key = "0", .storage_numel = 24, .offset = 4, .ndim = 2, .shape = {3, 2}, .stride = {0, 1}},
        {.name = "scalar", .dtype = DT_F32, .storage_key = "0", .storage_numel = 24, .offset = 23, .ndim = 0},
        {.name = "ints", .dtype = DT_I64, .storage_key = "1", .storage_numel = 3, .ndim = 1, .shape = {3}, .stride = {1}},
        {.name = "tied", .dtype = DT_F32, .storage_key = "0", .storage_numel = 24, .ndim = 2, .shape = {4, 6}, .stride = {6, 1}},
    };
    size_t pkl_len;
    uint8_t* pkl = pickle_write_state_dict(t, 8, &pkl_len);
    const char* path = "test_pth_views.pth";
    write_checkpoint(path, pkl, pkl_len, st0, sizeof st0, st1, sizeof st1);
    free(pkl);
    TensorSet s;
    Error e;
    if (pth_read(path, &s, &e)) return check_true("views", 0, e.msg);
    const float want_t[24] = {0, 6, 12, 18, 1, 7, 13, 19, 2, 8, 14, 20, 3, 9, 15, 21, 4, 10, 16, 22, 5, 11, 17, 23};
    const float want_row2[6] = {12, 13, 14, 15, 16, 17}, want_step[6] = {7, 9, 11, 13, 15, 17}, want_bc[6] = {4, 5, 4, 5, 4, 5};
    int f = 0;
    f += check_true("views: 8 tensors in pickle order", s.n == 8 && strcmp(s.t[7].name, "tied") == 0, "count/order");
    if (s.n != 8) return f;
    f += check_close_abs("views: whole storage", s.t[0].data, st0, 24, 0);
    f += check_close_abs("views: transposed (strides 1,6)", s.t[1].data, want_t, 24, 0);
    f += check_close_abs("views: storage offset 12", s.t[2].data, want_row2, 6, 0);
    f += check_close_abs("views: offset 7, strides (6,2)", s.t[3].data, want_step, 6, 0);
    f += check_close_abs("views: broadcast, stride 0", s.t[4].data, want_bc, 6, 0);
    f += check_close_abs("views: 0-d tensor at offset 23", s.t[5].data, &st0[23], 1, 0);
    f += check_true("views: int64 storage", memcmp(s.t[6].data, st1, sizeof st1) == 0, "int64 values");
    f += check_close_abs("views: tied weight shares the storage", s.t[7].data, st0, 24, 0);
    f += check_roundtrip("views: write -> read round trip", &s, "test_pth_views-out.pth");
    tensorset_free(&s);
    return f;
}

// data.pkl of torch.save(nn.Linear(3, 2).state_dict(), f, pickle_protocol=4) from torch 1.13: FRAME,
// SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, and a BUILD that sets OrderedDict._metadata.
static const uint8_t kLinearProto4[] = {
    0x80, 0x04, 0x95, 0xf5, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x8c, 0x0b, 0x63, 0x6f, 0x6c,
    0x6c, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x94, 0x8c, 0x0b, 0x4f, 0x72, 0x64, 0x65, 0x72,
    0x65, 0x64, 0x44, 0x69, 0x63, 0x74, 0x94, 0x93, 0x94, 0x29, 0x52, 0x94, 0x28, 0x8c, 0x06, 0x77,
    0x65, 0x69, 0x67, 0x68, 0x74, 0x94, 0x8c, 0x0c, 0x74, 0x6f, 0x72, 0x63, 0x68, 0x2e, 0x5f, 0x75,
    0x74, 0x69, 0x6c, 0x73, 0x94, 0x8c, 0x12, 0x5f, 0x72, 0x65, 0x62, 0x75, 0x69, 0x6c, 0x64, 0x5f,
    0x74, 0x65, 0x6e, 0x73, 0x6f, 0x72, 0x5f, 0x76, 0x32, 0x94, 0x93, 0x94, 0x28, 0x28, 0x8c, 0x07,
    0x73, 0x74, 0x6f, 0x72, 0x61, 0x67, 0x65, 0x94, 0x8c, 0x05, 0x74, 0x6f, 0x72, 0x63, 0x68, 0x94,
    0x8c, 0x0c, 0x46, 0x6c, 0x6f, 0x61, 0x74, 0x53, 0x74, 0x6f, 0x72, 0x61, 0x67, 0x65, 0x94, 0x93,
    0x94, 0x8c, 0x01, 0x30, 0x94, 0x8c, 0x03, 0x63, 0x70, 0x75, 0x94, 0x4b, 0x06, 0x74, 0x94, 0x51,
    0x4b, 0x00, 0x4b, 0x02, 0x4b, 0x03, 0x86, 0x94, 0x4b, 0x03, 0x4b, 0x01, 0x86, 0x94, 0x89, 0x68,
    0x02, 0x29, 0x52, 0x94, 0x74, 0x94, 0x52, 0x94, 0x8c, 0x04, 0x62, 0x69, 0x61, 0x73, 0x94, 0x68,
    0x07, 0x28, 0x28, 0x68, 0x08, 0x68, 0x0b, 0x8c, 0x01, 0x31, 0x94, 0x68, 0x0d, 0x4b, 0x02, 0x74,
    0x94, 0x51, 0x4b, 0x00, 0x4b, 0x02, 0x85, 0x94, 0x4b, 0x01, 0x85, 0x94, 0x89, 0x68, 0x02, 0x29,
    0x52, 0x94, 0x74, 0x94, 0x52, 0x94, 0x75, 0x7d, 0x94, 0x8c, 0x09, 0x5f, 0x6d, 0x65, 0x74, 0x61,
    0x64, 0x61, 0x74, 0x61, 0x94, 0x68, 0x02, 0x29, 0x52, 0x94, 0x8c, 0x00, 0x94, 0x7d, 0x94, 0x8c,
    0x07, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x94, 0x4b, 0x01, 0x73, 0x73, 0x73, 0x62, 0x2e,
};

static int check_protocol4(void) {
    float w[6] = {1, 2, 3, 4, 5, 6}, b[2] = {-1, -2};
    const char* path = "test_pth_proto4.pth";
    write_checkpoint(path, kLinearProto4, sizeof kLinearProto4, w, sizeof w, b, sizeof b);
    TensorSet s;
    Error e;
    if (pth_read(path, &s, &e)) return check_true("protocol-4 pickle from torch", 0, e.msg);
    int f = check_true("protocol 4: names weight, bias", s.n == 2 && !strcmp(s.t[0].name, "weight") && !strcmp(s.t[1].name, "bias"), "names");
    f += check_shape(&s, "weight", 2, (int64_t[]){2, 3});
    if (s.n == 2) {
        f += check_close_abs("protocol 4: weight values", s.t[0].data, w, 6, 0);
        f += check_close_abs("protocol 4: bias values", s.t[1].data, b, 2, 0);
    }
    tensorset_free(&s);
    return f;
}

static int check_truncations(const uint8_t* good, size_t good_len) {
    Error e, we;
    TensorSet s;
    int f = 0;
    const char* cut_path = "test_pth_truncated.pth";
    size_t cuts[] = {0, 1, 30, 4096, good_len / 2, good_len - 4096, good_len - 23, good_len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        if (write_file_atomic(cut_path, good, cuts[i], &we)) fatal("%s", we.msg);
        char label[80];
        snprintf(label, sizeof label, "truncated at byte %zu of %zu", cuts[i], good_len);
        f += expect_reject(label, pth_read(cut_path, &s, &e), &e, cut_path, NULL);
    }
    uint8_t* flipped = xmalloc(good_len);
    memcpy(flipped, good, good_len);
    flipped[good_len / 2] ^= 0x40;  // inside a storage: the CRC no longer matches
    f += expect_reject("one flipped byte in a storage (CRC)", pth_read_mem(flipped, good_len, "flipped.pth", &s, &e), &e,
                       "flipped.pth", NULL);
    free(flipped);
    return f;
}

static int check_bad_pickles(void) {
    Error e;
    TensorSet s;
    int f = 0;
    const char* nopkl = "test_pth_no_pickle.pth";
    write_zip(nopkl, 2, (const char*[]){"arch/data/0", "arch/version"}, (const void*[]){"abcd", "3\n"}, (size_t[]){4, 2});
    f += expect_reject("zip without data.pkl", pth_read(nopkl, &s, &e), &e, nopkl, "data.pkl");

    // pickle.loads of this would run os.system("ls")
    static const char evil[] = "\x80\x02" "cposix\nsystem\n" "q\x00X\x02\x00\x00\x00" "lsq\x01\x85q\x02Rq\x03.";
    const char* evil_path = "test_pth_evil.pth";
    write_checkpoint(evil_path, evil, sizeof evil - 1, NULL, 0, NULL, 0);
    f += expect_reject("pickle with global posix.system", pth_read(evil_path, &s, &e), &e, evil_path, "'posix.system' at byte 2");

    static const char list_pkl[] = "\x80\x02]q\x00.";
    write_checkpoint(evil_path, list_pkl, sizeof list_pkl - 1, NULL, 0, NULL, 0);
    f += expect_reject("pickle with an unsupported opcode (EMPTY_LIST)", pth_read(evil_path, &s, &e), &e, evil_path, "opcode 0x5d");

    static const char int_value[] = "\x80\x02}q\x00X\x01\x00\x00\x00" "aK\x01s.";  // {'a': 1}
    write_checkpoint(evil_path, int_value, sizeof int_value - 1, NULL, 0, NULL, 0);
    f += expect_reject("dict entry that is not a tensor", pth_read(evil_path, &s, &e), &e, evil_path, "'a' is not a tensor");
    return f;
}

// A checkpoint of the one tensor t over a storage holding `st` must be rejected.
static int reject_one_tensor(const char* label, const PickleTensor* t, const void* st, size_t st_bytes, const char* must_contain) {
    const char* path = "test_pth_short_storage.pth";
    size_t pkl_len;
    uint8_t* pkl = pickle_write_state_dict(t, 1, &pkl_len);
    write_checkpoint(path, pkl, pkl_len, st, st_bytes, NULL, 0);
    free(pkl);
    TensorSet s;
    Error e;
    return expect_reject(label, pth_read(path, &s, &e), &e, path, must_contain);
}

static int check_bad_storages(void) {
    Error e;
    TensorSet s;
    int f = 0;
    float st[10] = {0};
    PickleTensor t = {.name = "w", .dtype = DT_F32, .storage_key = "0", .storage_numel = 16, .ndim = 1, .shape = {16}, .stride = {1}};
    f += reject_one_tensor("storage entry shorter than declared", &t, st, sizeof st, "data/0");
    t.storage_numel = 10;  // a [16] view of a 10-element storage
    f += reject_one_tensor("tensor larger than its storage", &t, st, sizeof st, "'w'");
    t.shape[0] = 2, t.offset = 9;  // elements 9 and 10 of a 10-element storage
    f += reject_one_tensor("storage offset + size past the storage end", &t, st, sizeof st, "element 11");

    t.offset = 0;
    size_t pkl_len;
    uint8_t* pkl = pickle_write_state_dict(&t, 1, &pkl_len);
    const char* be_path = "test_pth_big_endian.pth";
    write_zip(be_path, 3, (const char*[]){"a/data.pkl", "a/byteorder", "a/data/0"}, (const void*[]){pkl, "big", st},
              (size_t[]){pkl_len, 3, sizeof st});
    free(pkl);
    f += expect_reject("big-endian archive", pth_read(be_path, &s, &e), &e, be_path, "big-endian");
    return f;
}

static int check_bad_writes(void) {
    Error e;
    TensorSet one;
    int f = 0;
    tensorset_init(&one);
    tensorset_add(&one, "x", DT_F32, 1, (int64_t[]){2}, NULL);
    f += expect_reject("writing into a missing directory", pth_write("no_such_dir/x.pth", &one, &e), &e, "no_such_dir/x.pth", NULL);
    tensorset_add(&one, "x", DT_F32, 1, (int64_t[]){2}, NULL);
    f += expect_reject("writing two tensors with one name", pth_write("test_pth_dup.pth", &one, &e), &e, "test_pth_dup.pth", "'x'");
    tensorset_free(&one);
    tensorset_init(&one);
    tensorset_add(&one, "x", DT_F32, 1, (int64_t[]){2}, NULL);
    const char* dir = "test_pth_is_a_directory.pth";
    if (mkdir_p(dir, &e)) fatal("%s", e.msg);
    f += expect_reject("writing over a directory (the final rename fails)", pth_write(dir, &one, &e), &e, dir, "rename");
    f += check_no_temp_file(dir);
    tensorset_free(&one);
    return f;
}

int main(void) {
    int f = 0;
    TensorSet f32, b16;
    f += check_tiny("tests/data/tiny-rwkv7-834K-fp32.pth", DT_F32, &f32);
    f += check_tiny("tests/data/tiny-rwkv7-834K-bf16.pth", DT_BF16, &b16);
    f += same_names_and_shapes("bf16 and fp32 files: same names, order and shapes", &f32, &b16);
    f += check_bf16_equals_fp32(&f32, &b16);
    f += check_roundtrip("fp32 write -> read is bit-exact", &f32, "test_pth_roundtrip-fp32.pth");
    f += check_roundtrip("bf16 write -> read is bit-exact", &b16, "test_pth_roundtrip-bf16.pth");
    tensorset_free(&f32);
    tensorset_free(&b16);
    f += check_views();
    f += check_protocol4();

    Error e;
    TensorSet s;
    const char* missing = "test_pth_no_such_file.pth";
    f += expect_reject("missing file", pth_read(missing, &s, &e), &e, missing, NULL);
    size_t len;
    uint8_t* good = (uint8_t*)read_file(src_path("tests/data/tiny-rwkv7-834K-fp32.pth"), &len, &e);
    if (!good) fatal("%s", e.msg);
    f += check_truncations(good, len);
    free(good);
    f += check_bad_pickles();
    f += check_bad_storages();
    f += check_bad_writes();
    return test_summary("test_pth", f);
}
