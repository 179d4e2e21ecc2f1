// testutil.h — helpers that make tests readable specifications: every check prints what it measured,
// the tolerance, and PASS/FAIL; a test's exit status is the number of failed checks (0 = pass).
#pragma once
#include <stddef.h>
#include <stdint.h>

// Path of a file in the source tree (tests/data/..., datasets/...), in a static buffer per call slot.
const char* src_path(const char* rel);

// Max |got - want| over n values and max relative error |got-want| / max(|want|, floor); prints one
// line "name: max abs err X, max rel err Y (tol T) PASS|FAIL"; returns 1 on failure, 0 on success.
int check_close_abs(const char* name, const float* got, const float* want, size_t n, double tol);
int check_close_rel(const char* name, const float* got, const float* want, size_t n, double rel_tol,
                    double floor);
// Prints "name: PASS" or "name: FAIL (detail)"; returns 1 on failure.
int check_true(const char* name, int ok, const char* detail);

// Deterministic random numbers for tests (xorshift64*).
typedef struct { uint64_t s; } TestRng;
void test_rng_seed(TestRng* r, uint64_t seed);
float test_rng_uniform(TestRng* r, float lo, float hi);
float test_rng_normal(TestRng* r);
void test_fill_uniform(TestRng* r, float* x, size_t n, float lo, float hi);
// Fills with NaN so that a kernel that forgets to write an output is caught ("poisoned" outputs).
void test_poison(float* x, size_t n);

// ---- buffers for kernel tests: each is allocated with xmalloc (kernels/common.h); the caller frees it.
float* test_random_floats(TestRng* r, size_t n, float lo, float hi);   // uniform in [lo, hi)
float* test_poisoned_floats(size_t n);                                 // all NaN
float* test_copy_floats(const float* x, size_t n);
double* test_to_doubles(const float* x, size_t n);
// base + delta, summed in double and rounded once: the expected value of a "+=" output.
float* test_plus(const float* base, const float* delta, size_t n);

// check_close_rel with a floor of 1% of the largest |want| (values near zero are judged on the scale of
// the whole tensor); returns 1 on failure.
int check_rel_to_max(const char* name, const float* got, const float* want, size_t n, double rel_tol);
// a and b (bytes long, a multiple of 4) equal bit for bit, compared as 32-bit words; prints how many words
// differ; returns 1 on failure.
int check_bitwise(const char* name, const void* a, const void* b, size_t bytes);

// ---- readers and writers of files (struct Error: kernels/common.h; struct TensorSet: trainer/tensorset.h)
struct Error;
struct TensorSet;

// 1 when a call failed the documented way: rc == -1 and a non-empty message on one line (no control
// characters) that contains `name` (the file or input name).
int is_clean_rejection(int rc, const struct Error* e, const char* name);
// Prints "  label -> rc N: message" and checks is_clean_rejection and, when must_contain is not NULL,
// that the message contains it; returns 1 on failure.
int expect_reject(const char* label, int rc, const struct Error* e, const char* name, const char* must_contain);
// Same names in the same order, dtypes, shapes and bytes; returns 1 on failure.
int check_same_tensorsets(const char* label, const struct TensorSet* a, const struct TensorSet* b);
// After a write to path by this process: no temporary file <path>.tmp.<pid> is left; returns 1 on failure.
int check_no_temp_file(const char* path);
// Little-endian 16- and 32-bit values, for walking binary formats.
uint32_t test_le16(const uint8_t* p);
uint32_t test_le32(const uint8_t* p);

// Ends a test program: prints "<program>: N checks failed" or "... all checks passed" and returns
// the exit status to pass to main's return.
int test_summary(const char* program, int failures);
