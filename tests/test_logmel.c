// test_logmel.c — Whisper's log-mel front end (trainer/logmel.h) against the float64 reference of
// tests/reference/logmel_reference.py (vectors/logmel.safetensors): filterbanks, clips with and without
// 30-second padding, trimming of long audio, and the rejection of bad input.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "tests/testutil.h"
#include "trainer/logmel.h"
#include "trainer/safetensors.h"

static const double TOL = 1e-4;   // max abs error of the (x + 4) / 4 output

// The reference tensor `name` as floats (numel in *n); fatal if absent (the vectors file is committed).
static const float* ref(const TensorSet* s, const char* name, size_t* n) {
    const NamedTensor* t = tensorset_find(s, name);
    if (!t || t->dtype != DT_F32) fatal("logmel.safetensors: no F32 tensor %s: rerun logmel_reference.py", name);
    if (n) *n = (size_t)tensor_numel(t);
    return t->data;
}

// The integer-LCG noise of logmel_reference.py lcg_audio (exact in float32, so bit-identical to numpy).
static float* lcg_audio(int n) {
    float* x = xmalloc((size_t)n * sizeof(float));
    uint64_t s = 42;
    for (int i = 0; i < n; i++) {
        s = (s * 1103515245u + 12345u) % (1u << 31);
        double u = (double)(s >> 7) / (double)(1 << 24);
        double amp = ldexp(1.0, -(1 + (i / 16000) % 4));
        x[i] = (float)((u * 2.0 - 1.0) * amp);
    }
    return x;
}

static int check_filters(const TensorSet* s, LogMel* lm) {
    char name[64];
    int n_mels = logmel_n_mels(lm);
    snprintf(name, sizeof name, "filters_%d", n_mels);
    size_t n;
    const float* want = ref(s, name, &n);
    float* got = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) got[i] = (float)logmel_filters(lm)[i];
    int fail = check_true("filterbank shape (n_mels, 201)", n == (size_t)n_mels * LOGMEL_N_BINS, name);
    fail += check_rel_to_max(name, got, want, n, 1e-6);
    free(got);
    return fail;
}

// A whole clip without padding: out (frames, n_mels) vs the reference.
static int check_clip(const TensorSet* s, LogMel* lm, const char* clip) {
    char name[64];
    int n_mels = logmel_n_mels(lm);
    size_t n_audio, n_want;
    snprintf(name, sizeof name, "%s.audio", clip);
    const float* audio = ref(s, name, &n_audio);
    snprintf(name, sizeof name, "%s.mel_%d", clip, n_mels);
    const float* want = ref(s, name, &n_want);
    int frames = logmel_frames(lm, (int)n_audio, 0);
    float* got = test_poisoned_floats((size_t)frames * n_mels);
    Error e = {0};
    int rc = logmel_compute(lm, audio, (int)n_audio, 0, got, &e);
    int fail =
        check_true("computed with the reference frame count", rc == 0 && (size_t)frames * n_mels == n_want, e.msg);
    if (rc == 0 && (size_t)frames * n_mels == n_want) fail += check_close_abs(name, got, want, n_want, TOL);
    free(got);
    return fail;
}

// 0.7 s padded to 30 s: the first 96 frames vs the reference, every later frame vs its constant row.
static int check_short30(const TensorSet* s, LogMel* lm) {
    char name[64];
    int n_mels = logmel_n_mels(lm);
    size_t n_audio, n_head;
    const float* audio = ref(s, "short30.audio", &n_audio);
    snprintf(name, sizeof name, "short30.head_%d", n_mels);
    const float* head = ref(s, name, &n_head);
    snprintf(name, sizeof name, "short30.tail_row_%d", n_mels);
    const float* tail = ref(s, name, NULL);
    int frames = logmel_frames(lm, (int)n_audio, 1);
    float* got = test_poisoned_floats((size_t)frames * n_mels);
    Error e = {0};
    int fail = check_true("short30: 3000 frames, computed", frames == 3000 &&
                          logmel_compute(lm, audio, (int)n_audio, 1, got, &e) == 0, e.msg);
    snprintf(name, sizeof name, "short30 head frames 0..95 (%d mels)", n_mels);
    fail += check_close_abs(name, got, head, n_head, TOL);
    float* tail_rows = xmalloc((size_t)(frames - 96) * n_mels * sizeof(float));
    for (int t = 96; t < frames; t++)
        memcpy(tail_rows + (size_t)(t - 96) * n_mels, tail, (size_t)n_mels * sizeof(float));
    snprintf(name, sizeof name, "short30 padded frames 96..2999 (%d mels)", n_mels);
    fail += check_close_abs(name, got + (size_t)96 * n_mels, tail_rows, (size_t)(frames - 96) * n_mels, TOL);
    free(tail_rows);
    free(got);
    return fail;
}

// 31 s of LCG noise with pad30: trimmed to 30 s; first and last 16 frames vs the reference, and the whole
// output bit-identical to that of the first 30 s alone.
static int check_long30(const TensorSet* s, LogMel* lm) {
    int n = 31 * LOGMEL_SAMPLE_RATE;
    float* audio = lcg_audio(n);
    size_t n_head, n_last;
    const float* head = ref(s, "long30.head_80", &n_head);
    const float* last = ref(s, "long30.last_80", &n_last);
    size_t total = (size_t)LOGMEL_N_FRAMES_30S * 80;
    float* got = test_poisoned_floats(total);
    float* got30 = test_poisoned_floats(total);
    Error e = {0};
    int fail = check_true("long30 (31 s, pad30): 3000 frames", logmel_frames(lm, n, 1) == 3000, NULL);
    fail += check_true("long30 computed", logmel_compute(lm, audio, n, 1, got, &e) == 0, e.msg);
    fail += check_close_abs("long30 frames 0..15", got, head, n_head, TOL);
    fail += check_close_abs("long30 frames 2984..2999", got + total - n_last, last, n_last, TOL);
    fail +=
        check_true("first 30 s alone computed", logmel_compute(lm, audio, LOGMEL_N_SAMPLES, 1, got30, &e) == 0, e.msg);
    fail += check_bitwise("31 s with pad30 == its first 30 s (trimmed)", got, got30, total * sizeof(float));
    free(got);
    free(got30);
    free(audio);
    return fail;
}

// pad30 of a short clip equals the clip explicitly zero-padded to 480000 samples.
static int check_pad_equivalence(const TensorSet* s, LogMel* lm) {
    size_t n_audio;
    const float* audio = ref(s, "chirp.audio", &n_audio);
    float* padded = xcalloc(LOGMEL_N_SAMPLES, sizeof(float));
    memcpy(padded, audio, n_audio * sizeof(float));
    size_t total = (size_t)LOGMEL_N_FRAMES_30S * logmel_n_mels(lm);
    float* a = test_poisoned_floats(total);
    float* b = test_poisoned_floats(total);
    Error e = {0};
    int rc = logmel_compute(lm, audio, (int)n_audio, 1, a, &e) | logmel_compute(lm, padded, LOGMEL_N_SAMPLES, 0, b, &e);
    int fail = check_true("pad30 and explicit zero padding both computed", rc == 0, e.msg);
    fail += check_bitwise("pad30 == explicit zero padding to 480000 samples", a, b, total * sizeof(float));
    free(a);
    free(b);
    free(padded);
    return fail;
}

static int check_rejections(LogMel* lm) {
    Error e = {0};
    float x[300] = {0};
    float out[16 * 80];
    int fail = 0;
    LogMel* bad = logmel_create(64, &e);
    fail += expect_reject("n_mels 64 rejected", bad ? 0 : -1, &e, "n_mels", "80");
    logmel_free(bad);
    fail +=
        expect_reject("empty audio rejected (pad30)", logmel_compute(lm, x, 0, 1, out, &e), &e, "empty audio", NULL);
    fail += expect_reject("empty audio rejected (none)", logmel_compute(lm, x, 0, 0, out, &e), &e, "empty audio", NULL);
    fail += expect_reject("200 samples without pad30 rejected", logmel_compute(lm, x, 200, 0, out, &e), &e,
                          "too short", "pad");
    x[123] = NAN;
    fail += expect_reject("NaN sample rejected", logmel_compute(lm, x, 300, 0, out, &e), &e, "sample 123", NULL);
    fail +=
        check_true("frame counts: 0 -> 0, 200 -> 0, 201 -> 1, 20800 -> 130, 3217 -> 20, pad30 -> 3000",
                   logmel_frames(lm, 0, 1) == 0 && logmel_frames(lm, 200, 0) == 0 && logmel_frames(lm, 201, 0) == 1 &&
                       logmel_frames(lm, 20800, 0) == 130 && logmel_frames(lm, 3217, 0) == 20 &&
                       logmel_frames(lm, 17, 1) == 3000 && logmel_frames(lm, 600000, 1) == 3000,
                   NULL);
    return fail;
}

int main(void) {
    TensorSet s;
    Error e = {0};
    if (safetensors_read(src_path("tests/reference/vectors/logmel.safetensors"), &s, &e) != 0) fatal("%s", e.msg);
    int fail = 0;
    const int mels[2] = {80, 128};
    for (int i = 0; i < 2; i++) {
        LogMel* lm = logmel_create(mels[i], &e);
        if (!lm) fatal("%s", e.msg);
        fail += check_filters(&s, lm);
        fail += check_clip(&s, lm, "chirp");
        fail += check_clip(&s, lm, "odd");
        fail += check_short30(&s, lm);
        if (mels[i] == 80) {
            fail += check_long30(&s, lm);
            fail += check_pad_equivalence(&s, lm);
            fail += check_rejections(lm);
        }
        logmel_free(lm);
    }
    tensorset_free(&s);
    return test_summary("test_logmel", fail);
}
