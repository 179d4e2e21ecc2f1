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

// Ends a test program: prints "<program>: N checks failed" or "... all checks passed" and returns
// the exit status to pass to main's return.
int test_summary(const char* program, int failures);
