// testutil.c — see testutil.h.
#include "tests/testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kernels/common.h"
#include "trainer/tensorset.h"

const char* src_path(const char* rel) {
    static char buf[8][4096];
    static int slot = 0;
    slot = (slot + 1) % 8;
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", MODRWKV_SOURCE_DIR, rel);
    return buf[slot];
}

int check_close_abs(const char* name, const float* got, const float* want, size_t n, double tol) {
    double max_abs = 0;
    size_t worst = 0;
    int nan = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (isnan(d)) nan = 1;
        if (d > max_abs) { max_abs = d; worst = i; }
    }
    int fail = nan || !(max_abs <= tol);
    printf("%s: max abs err %.3e at [%zu] (got %.7g, want %.7g), tol %.1e %s\n", name, max_abs, worst,
           n ? got[worst] : 0.0f, n ? want[worst] : 0.0f, tol, fail ? (nan ? "FAIL (NaN)" : "FAIL") : "PASS");
    return fail;
}

int check_close_rel(const char* name, const float* got, const float* want, size_t n, double rel_tol,
                    double floor) {
    double max_rel = 0, max_abs = 0, scale = 0;
    size_t worst = 0;
    int nan = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)want[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (isnan(d)) nan = 1;
        double r = d / fmax(fabs((double)want[i]), floor);
        if (r > max_rel) { max_rel = r; worst = i; }
        if (d > max_abs) max_abs = d;
    }
    int fail = nan || !(max_rel <= rel_tol);
    printf("%s: max rel err %.3e at [%zu] (got %.7g, want %.7g; floor %.1e, max |want| %.3e, max abs %.3e), tol %.1e %s\n",
           name, max_rel, worst, n ? got[worst] : 0.0f, n ? want[worst] : 0.0f, floor, scale, max_abs, rel_tol,
           fail ? (nan ? "FAIL (NaN)" : "FAIL") : "PASS");
    return fail;
}

int check_true(const char* name, int ok, const char* detail) {
    if (ok) printf("%s: PASS\n", name);
    else printf("%s: FAIL (%s)\n", name, detail ? detail : "");
    return !ok;
}

void test_rng_seed(TestRng* r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ULL + 1; }

static uint64_t next_u64(TestRng* r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1DULL;
}

float test_rng_uniform(TestRng* r, float lo, float hi) {
    double u = (double)(next_u64(r) >> 11) / 9007199254740992.0;
    return lo + (float)u * (hi - lo);
}

float test_rng_normal(TestRng* r) {
    double u1 = ((double)(next_u64(r) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = (double)(next_u64(r) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void test_fill_uniform(TestRng* r, float* x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = test_rng_uniform(r, lo, hi);
}

void test_poison(float* x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

float* test_random_floats(TestRng* r, size_t n, float lo, float hi) {
    float* x = xmalloc(n * sizeof(float));
    test_fill_uniform(r, x, n, lo, hi);
    return x;
}

float* test_poisoned_floats(size_t n) {
    float* x = xmalloc(n * sizeof(float));
    test_poison(x, n);
    return x;
}

float* test_copy_floats(const float* x, size_t n) {
    float* y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

double* test_to_doubles(const float* x, size_t n) {
    double* y = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

float* test_plus(const float* base, const float* delta, size_t n) {
    float* y = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) y[i] = (float)((double)base[i] + (double)delta[i]);
    return y;
}

static double max_abs(const float* x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

int check_rel_to_max(const char* name, const float* got, const float* want, size_t n, double rel_tol) {
    return check_close_rel(name, got, want, n, rel_tol, fmax(1e-2 * max_abs(want, n), 1e-30));
}

int check_bitwise(const char* name, const void* a, const void* b, size_t bytes) {
    size_t n_words = bytes / 4, differ = 0;
    const uint32_t* x = a;
    const uint32_t* y = b;
    for (size_t i = 0; i < n_words; i++) differ += x[i] != y[i];
    char detail[96];
    snprintf(detail, sizeof detail, "%zu of %zu values differ", differ, n_words);
    printf("%s: %zu of %zu values differ bit-wise (tol 0)\n", name, differ, n_words);
    return check_true(name, differ == 0 && bytes % 4 == 0, detail);
}

int is_clean_rejection(int rc, const Error* e, const char* name) {
    int one_line = 1;
    for (const unsigned char* c = (const unsigned char*)e->msg; *c; c++) one_line &= *c >= 0x20 && *c != 0x7f;
    return rc == -1 && e->msg[0] && one_line && strstr(e->msg, name);
}

int expect_reject(const char* label, int rc, const Error* e, const char* name, const char* must_contain) {
    printf("  %s -> rc %d: %s\n", label, rc, e->msg);
    int ok = is_clean_rejection(rc, e, name) && (!must_contain || strstr(e->msg, must_contain));
    return check_true(label, ok, "expected -1 with a one-line message naming the file");
}

int check_same_tensorsets(const char* label, const TensorSet* a, const TensorSet* b) {
    char detail[256] = "";
    int ok = a->n == b->n;
    if (!ok) snprintf(detail, sizeof detail, "%d vs %d tensors", a->n, b->n);
    for (int i = 0; ok && i < a->n; i++) {
        const NamedTensor *x = &a->t[i], *y = &b->t[i];
        ok = strcmp(x->name, y->name) == 0 && x->dtype == y->dtype && x->ndim == y->ndim &&
             memcmp(x->shape, y->shape, (size_t)x->ndim * sizeof x->shape[0]) == 0 &&
             memcmp(x->data, y->data, tensor_nbytes(x)) == 0;
        if (!ok) snprintf(detail, sizeof detail, "tensor %d ('%s' vs '%s') differs", i, x->name, y->name);
    }
    return check_true(label, ok, detail);
}

int check_no_temp_file(const char* path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    return check_true("no temporary file left behind", access(tmp, F_OK) != 0, tmp);
}

uint32_t test_le16(const uint8_t* p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
uint32_t test_le32(const uint8_t* p) { return test_le16(p) | test_le16(p + 2) << 16; }

int test_summary(const char* program, int failures) {
    if (failures) printf("%s: %d checks FAILED\n", program, failures);
    else printf("%s: all checks passed\n", program);
    return failures ? 1 : 0;
}
