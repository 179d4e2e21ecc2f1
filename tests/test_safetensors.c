// test_safetensors.c — specification of the safetensors reader and writer (trainer/safetensors.h).
//
// Checks the exact bytes of a small file against the public spec, a write -> read round trip of every
// dtype with metadata, that tensors come back in data order whatever the JSON order, that corrupt
// headers are rejected with one-line messages naming the file, and that a write failing midway
// leaves the previous file untouched and no temporary file behind.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tests/testutil.h"
#include "trainer/safetensors.h"

// An in-memory safetensors image: 8-byte little-endian header size, header, data.
typedef struct Image {
    uint8_t* p;
    size_t len;
} Image;

static Image make_image(const char* header, const void* data, size_t dlen) {
    size_t hlen = strlen(header);
    Image im = {xmalloc(8 + hlen + dlen + 1), 8 + hlen + dlen};
    for (int i = 0; i < 8; i++) im.p[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(im.p + 8, header, hlen);
    if (dlen) memcpy(im.p + 8 + hlen, data, dlen);
    return im;
}

// {"a": F32 [2] = {1, 2}} is exactly: u64 56, the compact header padded with spaces to 56, 8 data bytes.
static int check_exact_bytes(void) {
    TensorSet s;
    Error e;
    tensorset_init(&s);
    float v[2] = {1, 2};
    tensorset_add(&s, "a", DT_F32, 1, (int64_t[]){2}, v);
    const char* path = "test_safetensors_exact.safetensors";
    int f = check_true("write a one-tensor file", safetensors_write(path, &s, &e) == 0, e.msg);
    tensorset_free(&s);
    const char* header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";  // 54 bytes
    uint8_t want[8 + 56 + 8] = {56};
    memcpy(want + 8, header, strlen(header));
    memset(want + 8 + strlen(header), ' ', 56 - strlen(header));
    memcpy(want + 64, v, 8);
    size_t len;
    uint8_t* got = (uint8_t*)read_file(path, &len, &e);
    f += check_true("file bytes == spec layout (size, header padded with spaces to 8, data)",
                    got && len == sizeof want && memcmp(got, want, len) == 0, "bytes differ");
    free(got);
    return f;
}

// Every dtype, a 0-d and an empty tensor, a UTF-8 name and metadata.
static void fill_all_dtypes(TensorSet* s) {
    static const DType all[] = {DT_F32, DT_BF16, DT_F16, DT_F64, DT_I64, DT_I32, DT_I16, DT_I8, DT_U8, DT_BOOL};
    TestRng r;
    test_rng_seed(&r, 7);
    tensorset_init(s);
    for (int i = 0; i < 10; i++) {
        char name[32];
        snprintf(name, sizeof name, "blocks.%d.%s", i, dtype_name(all[i]));
        NamedTensor* t = tensorset_add(s, name, all[i], 2, (int64_t[]){3, i + 1}, NULL);
        uint8_t* p = t->data;
        for (size_t k = 0; k < tensor_nbytes(t); k++) p[k] = (uint8_t)test_rng_uniform(&r, 0, 256);
        if (all[i] == DT_BOOL)
            for (size_t k = 0; k < tensor_nbytes(t); k++) p[k] &= 1;
    }
    float scalar = 3.5f;
    tensorset_add(s, "scalar", DT_F32, 0, NULL, &scalar);
    tensorset_add(s, "empty", DT_BF16, 2, (int64_t[]){0, 4}, NULL);
    tensorset_add(s, "h\xc3\xa9" "ad.weight", DT_F32, 1, (int64_t[]){1}, &scalar);
    s->metadata = xstrdup("{\"format\":\"pt\",\"step\":\"1200\",\"note\":\"quote \\\" and \xc3\xbc\"}");
}

static int check_roundtrip(void) {
    TensorSet s, back;
    Error e;
    fill_all_dtypes(&s);
    const char* path = "test_safetensors_all.safetensors";
    int f = check_true("write all dtypes with metadata", safetensors_write(path, &s, &e) == 0, e.msg);
    f += check_no_temp_file(path);
    if (safetensors_read(path, &back, &e)) {
        tensorset_free(&s);
        return f + check_true("read all dtypes back", 0, e.msg);
    }
    printf("round trip: %d tensors, metadata %s\n", back.n, back.metadata ? back.metadata : "(none)");
    f += check_same_tensorsets("round trip: names, order, dtypes, shapes, bytes", &s, &back);
    f += check_true("round trip: metadata text", back.metadata && strcmp(back.metadata, s.metadata) == 0, "metadata differs");
    size_t len;
    uint8_t* img = (uint8_t*)read_file(path, &len, &e);
    TensorSet mem;
    f += check_true("read from memory == read from file", img && safetensors_read_mem(img, len, "mem", &mem, &e) == 0, e.msg);
    if (img && mem.t) f += check_same_tensorsets("memory read", &s, &mem);
    tensorset_free(&mem);
    free(img);
    tensorset_free(&back);
    tensorset_free(&s);
    return f;
}

// Tensors come out in the order of their data, not of the JSON keys ("__metadata__" may be anywhere).
static int check_data_order(void) {
    const char* header =
        "{\"second\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[2,6]},\"__metadata__\":{\"k\":\"v\"},"
        "\"first\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}";
    uint8_t data[6] = {1, 2, 0x78, 0x56, 0x34, 0x12};
    Image im = make_image(header, data, sizeof data);
    TensorSet s;
    Error e;
    int f = check_true("header in non-data order is read", safetensors_read_mem(im.p, im.len, "order.safetensors", &s, &e) == 0, e.msg);
    if (f == 0) {
        int32_t v;
        memcpy(&v, s.t[1].data, 4);
        f += check_true("tensors in data order: first, second", s.n == 2 && !strcmp(s.t[0].name, "first") && !strcmp(s.t[1].name, "second"), "order");
        f += check_true("I32 value 0x12345678 little-endian", v == 0x12345678, "value");
        f += check_true("metadata returned", s.metadata && strcmp(s.metadata, "{\"k\":\"v\"}") == 0, s.metadata);
    }
    tensorset_free(&s);
    free(im.p);
    return f;
}

// A header, the number of (zero) data bytes after it, and a word the rejection message must contain.
typedef struct BadHeader {
    const char* label;
    const char* header;
    size_t data_len;
    const char* must_contain;
} BadHeader;

static const BadHeader kBadHeaders[] = {
    {"bad JSON", "{\"a\":{\"dtype\":\"F32\",", 0, "JSON"},
    {"header is not an object", "[1,2]", 0, "not an object"},
    {"offsets past the data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "'a'"},
    {"overlapping tensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, "overlap"},
    {"hole between tensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
     12, "no tensor"},
    {"trailing bytes after the last tensor", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "no tensor"},
    {"size disagrees with shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "'a'"},
    {"unknown dtype", "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8, "F8_E4M3"},
    {"end before begin", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, "'a'"},
    {"negative dimension", "{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, "'a'"},
    {"missing data_offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "'a'"},
    {"metadata value not a string", "{\"__metadata__\":{\"step\":5}}", 0, "step"},
    {"duplicate tensor name",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
     2, "JSON"},
};

static int reject_header(const BadHeader* b) {
    uint8_t data[64] = {0};
    Image im = make_image(b->header, data, b->data_len);
    TensorSet s;
    Error e;
    int f = expect_reject(b->label, safetensors_read_mem(im.p, im.len, "bad.safetensors", &s, &e), &e, "bad.safetensors",
                          b->must_contain);
    free(im.p);
    return f;
}

static int check_corrupt_headers(void) {
    int f = 0;
    for (size_t i = 0; i < sizeof kBadHeaders / sizeof kBadHeaders[0]; i++) f += reject_header(&kBadHeaders[i]);

    TensorSet s;
    Error e;
    uint8_t big[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    f += expect_reject("header size larger than the file (memory)", safetensors_read_mem(big, 10, "bad.safetensors", &s, &e), &e,
                       "bad.safetensors", "larger than the file");
    const char* path = "test_safetensors_bad.safetensors";
    Error we;
    if (write_file_atomic(path, big, 10, &we)) fatal("%s", we.msg);
    f += expect_reject("header size larger than the file (file)", safetensors_read(path, &s, &e), &e, path, "larger than the file");
    if (write_file_atomic(path, big, 5, &we)) fatal("%s", we.msg);
    f += expect_reject("file shorter than 8 bytes", safetensors_read(path, &s, &e), &e, path, "too short");
    f += expect_reject("missing file", safetensors_read("test_safetensors_missing.safetensors", &s, &e), &e,
                       "test_safetensors_missing.safetensors", NULL);
    return f;
}

static int check_write_errors(void) {
    TensorSet s;
    Error e;
    int f = 0;
    tensorset_init(&s);
    tensorset_add(&s, "x", DT_F32, 1, (int64_t[]){2}, NULL);
    s.metadata = xstrdup("{\"step\": 5}");
    f += expect_reject("metadata with a non-string value", safetensors_write("test_safetensors_w.safetensors", &s, &e), &e,
                       "test_safetensors_w.safetensors", "metadata");
    free(s.metadata);
    s.metadata = NULL;
    f += expect_reject("writing into a missing directory", safetensors_write("no_such_dir/x.safetensors", &s, &e), &e,
                       "no_such_dir/x.safetensors", NULL);
    tensorset_add(&s, "x", DT_F32, 1, (int64_t[]){2}, NULL);
    f += expect_reject("two tensors with one name", safetensors_write("test_safetensors_w.safetensors", &s, &e), &e,
                       "test_safetensors_w.safetensors", "'x'");
    tensorset_free(&s);
    return f;
}

// A write that fails midway (here: past the process's file size limit) keeps the previous file
// intact and leaves no temporary file behind.
static int check_failed_write_is_atomic(void) {
    const char* path = "test_safetensors_limit.safetensors";
    Error e;
    if (write_file_atomic(path, "previous", 8, &e)) fatal("%s", e.msg);
    TensorSet s;
    tensorset_init(&s);
    tensorset_add(&s, "big", DT_F32, 1, (int64_t[]){1 << 16}, NULL);  // 256 KiB, past the 4 KiB limit
    struct rlimit old = {0}, lim;
    int limited = getrlimit(RLIMIT_FSIZE, &old) == 0;
    lim = old;
    lim.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);  // the write then fails with EFBIG instead of killing the process
    limited = limited && setrlimit(RLIMIT_FSIZE, &lim) == 0;
    int f = check_true("lower the file size limit to 4 KiB", limited, "getrlimit/setrlimit failed");
    int rc = safetensors_write(path, &s, &e);
    if (limited) setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    tensorset_free(&s);
    f += expect_reject("write failing midway (file size limit)", rc, &e, path, "write failed");
    f += check_no_temp_file(path);
    size_t len = 0;
    char* kept = read_file(path, &len, &e);
    f += check_true("the previous file is untouched", kept && len == 8 && memcmp(kept, "previous", 8) == 0, "file changed");
    free(kept);
    return f;
}

// F16 tensors become fp32 exactly: all 65536 half values against the IEEE formula evaluated in double.
static int check_f16_conversion(void) {
    TensorSet s;
    tensorset_init(&s);
    NamedTensor* t = tensorset_add(&s, "all_halves", DT_F16, 1, (int64_t[]){65536}, NULL);
    uint16_t* h = t->data;
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    float* got = xmalloc(65536 * sizeof *got);
    int f = check_true("tensor_to_f32 accepts F16", tensor_to_f32(t, got) == 0, "returned -1");
    int bad = 0;
    for (int i = 0; i < 65536; i++) {
        int sign = i >> 15, exp = (i >> 10) & 31, mant = i & 1023;
        double mag = exp == 0 ? ldexp(mant, -24) : exp == 31 ? (mant ? NAN : INFINITY) : ldexp(1024 + mant, exp - 25);
        double want = sign ? -mag : mag;
        int same = isnan(want) ? isnan(got[i]) : ((double)got[i] == want && !signbit(got[i]) == !signbit(want));
        bad += !same;
    }
    printf("f16 -> f32: %d of 65536 values differ from the IEEE formula\n", bad);
    f += check_true("f16_to_float exact for every half (incl. subnormals, inf, NaN, -0)", bad == 0, "values differ");
    free(got);
    tensorset_free(&s);
    return f;
}

int main(void) {
    int f = 0;
    f += check_exact_bytes();
    f += check_roundtrip();
    f += check_data_order();
    f += check_corrupt_headers();
    f += check_write_errors();
    f += check_failed_write_is_atomic();
    f += check_f16_conversion();
    return test_summary("test_safetensors", f);
}
