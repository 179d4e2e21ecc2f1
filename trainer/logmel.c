// logmel.c — Whisper's log-mel spectrogram with FFTW (logmel.h).
#include "trainer/logmel.h"

#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct LogMel {
    int n_mels;
    double* filters;    // (n_mels, N_BINS) Slaney mel filterbank
    int* band_lo;       // (n_mels) first bin with a non-zero weight
    int* band_hi;       // (n_mels) one past the last non-zero bin
    double window[LOGMEL_N_FFT];  // periodic Hann
    double* frame;      // (N_FFT) FFTW input (fftw_malloc'ed, aligned)
    fftw_complex* spec; // (N_BINS) FFTW output
    fftw_plan plan;     // real-to-complex DFT of N_FFT points, created once
    double power[LOGMEL_N_BINS];
};

// ---------------------------------------------------------------------------------------------- Slaney mel scale
// Linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4), as librosa's
// hz_to_mel / mel_to_hz with htk=False.
static const double MEL_F_SP = 200.0 / 3.0;
static const double MEL_MIN_LOG_HZ = 1000.0;

static double mel_logstep(void) { return log(6.4) / 27.0; }

static double hz_to_mel(double hz) {
    if (hz < MEL_MIN_LOG_HZ) return hz / MEL_F_SP;
    return MEL_MIN_LOG_HZ / MEL_F_SP + log(hz / MEL_MIN_LOG_HZ) / mel_logstep();
}

static double mel_to_hz(double mel) {
    double min_log_mel = MEL_MIN_LOG_HZ / MEL_F_SP;
    if (mel < min_log_mel) return mel * MEL_F_SP;
    return MEL_MIN_LOG_HZ * exp(mel_logstep() * (mel - min_log_mel));
}

// filters (n_mels, N_BINS): triangle i rises from edge i to edge i+1 and falls to edge i+2, where the
// n_mels + 2 edges are equally spaced in mel between 0 Hz and 8 kHz; scaled by 2 / (edge[i+2] - edge[i]).
static void build_filters(LogMel* lm) {
    int n_mels = lm->n_mels;
    double* edges = xmalloc((size_t)(n_mels + 2) * sizeof(double));
    double mel_max = hz_to_mel(LOGMEL_SAMPLE_RATE / 2.0);
    for (int i = 0; i < n_mels + 2; i++) edges[i] = mel_to_hz(mel_max * i / (n_mels + 1));
    for (int m = 0; m < n_mels; m++) {
        double lo = edges[m], mid = edges[m + 1], hi = edges[m + 2];
        double enorm = 2.0 / (hi - lo);
        lm->band_lo[m] = LOGMEL_N_BINS;
        lm->band_hi[m] = 0;
        for (int k = 0; k < LOGMEL_N_BINS; k++) {
            double f = (double)k * LOGMEL_SAMPLE_RATE / LOGMEL_N_FFT;
            double rise = (f - lo) / (mid - lo), fall = (hi - f) / (hi - mid);
            double w = fmax(0.0, fmin(rise, fall)) * enorm;
            lm->filters[(size_t)m * LOGMEL_N_BINS + k] = w;
            if (w > 0 && k < lm->band_lo[m]) lm->band_lo[m] = k;
            if (w > 0) lm->band_hi[m] = k + 1;
        }
        if (lm->band_hi[m] == 0) lm->band_lo[m] = 0;  // an empty filter (not with 80 or 128 mels)
    }
    free(edges);
}

// ---------------------------------------------------------------------------------------------- lifetime
LogMel* logmel_create(int n_mels, Error* e) {
    if (n_mels != 80 && n_mels != 128) {
        errorf(e, "log-mel: n_mels = %d is not supported: use 80 (Whisper tiny to large-v2) or 128 (large-v3)", n_mels);
        return NULL;
    }
    LogMel* lm = xcalloc(1, sizeof *lm);
    lm->n_mels = n_mels;
    lm->filters = xmalloc((size_t)n_mels * LOGMEL_N_BINS * sizeof(double));
    lm->band_lo = xmalloc((size_t)n_mels * sizeof(int));
    lm->band_hi = xmalloc((size_t)n_mels * sizeof(int));
    build_filters(lm);
    for (int i = 0; i < LOGMEL_N_FFT; i++) lm->window[i] = 0.5 - 0.5 * cos(2.0 * M_PI * i / LOGMEL_N_FFT);
    lm->frame = fftw_malloc(LOGMEL_N_FFT * sizeof(double));
    lm->spec = fftw_malloc(LOGMEL_N_BINS * sizeof(fftw_complex));
    if (!lm->frame || !lm->spec) fatal("out of memory (FFTW buffers of the log-mel front end)");
    lm->plan = fftw_plan_dft_r2c_1d(LOGMEL_N_FFT, lm->frame, lm->spec, FFTW_ESTIMATE);
    if (!lm->plan) fatal("internal: FFTW could not plan a %d-point real DFT", LOGMEL_N_FFT);
    return lm;
}

void logmel_free(LogMel* lm) {
    if (!lm) return;
    fftw_destroy_plan(lm->plan);
    fftw_free(lm->frame);
    fftw_free(lm->spec);
    free(lm->filters);
    free(lm->band_lo);
    free(lm->band_hi);
    free(lm);
}

int logmel_n_mels(const LogMel* lm) { return lm->n_mels; }
const double* logmel_filters(const LogMel* lm) { return lm->filters; }

int logmel_frames(const LogMel* lm, int n_samples, int pad30) {
    if (n_samples <= 0) return 0;
    if (pad30) return LOGMEL_N_FRAMES_30S;
    if (n_samples <= LOGMEL_N_FFT / 2) return 0;
    return n_samples / LOGMEL_HOP;
}

// ---------------------------------------------------------------------------------------------- compute
// Sample i of the centred signal: the (padded or trimmed) audio of length len, reflected at both ends
// (x[-j] = x[j], x[len-1+j] = x[len-1-j]); audio beyond the n given samples (pad30) is zero.
static double centred_sample(const float* x, int n, int len, int i) {
    if (i < 0) i = -i;
    if (i >= len) i = 2 * (len - 1) - i;
    return i < n ? (double)x[i] : 0.0;
}

// Power spectrum |X_k|^2 of the windowed frame starting at centred position t * hop - n_fft / 2.
static void frame_power(LogMel* lm, const float* x, int n, int len, int t) {
    int start = t * LOGMEL_HOP - LOGMEL_N_FFT / 2;
    for (int i = 0; i < LOGMEL_N_FFT; i++) lm->frame[i] = lm->window[i] * centred_sample(x, n, len, start + i);
    fftw_execute(lm->plan);
    for (int k = 0; k < LOGMEL_N_BINS; k++)
        lm->power[k] = lm->spec[k][0] * lm->spec[k][0] + lm->spec[k][1] * lm->spec[k][1];
}

static int check_input(const float* samples, int n, int pad30, Error* e) {
    if (n <= 0)
        return errorf(e, "log-mel: empty audio (%d samples): give at least one sample of 16 kHz audio", n);
    if (!pad30 && n <= LOGMEL_N_FFT / 2)
        return errorf(e, "log-mel: audio of %d samples is too short for reflect padding without pad30: "
                         "give more than %d samples or pad to 30 s", n, LOGMEL_N_FFT / 2);
    int used = pad30 && n > LOGMEL_N_SAMPLES ? LOGMEL_N_SAMPLES : n;
    for (int i = 0; i < used; i++)
        if (!isfinite(samples[i]))
            return errorf(e, "log-mel: sample %d of the audio is not finite (%g): check the decoder", i,
                          (double)samples[i]);
    return 0;
}

int logmel_compute(LogMel* lm, const float* samples, int n, int pad30, float* out, Error* e) {
    if (check_input(samples, n, pad30, e) != 0) return -1;
    int len = pad30 ? LOGMEL_N_SAMPLES : n;   // length of the signal the STFT sees
    int used = n < len ? n : len;             // samples taken from the input (trimmed to 30 s)
    int n_frames = logmel_frames(lm, n, pad30);
    int n_mels = lm->n_mels;
    double max_log = -INFINITY;
    for (int t = 0; t < n_frames; t++) {
        frame_power(lm, samples, used, len, t);
        for (int m = 0; m < n_mels; m++) {
            const double* f = lm->filters + (size_t)m * LOGMEL_N_BINS;
            double mel = 0;
            for (int k = lm->band_lo[m]; k < lm->band_hi[m]; k++) mel += f[k] * lm->power[k];
            double lg = log10(fmax(mel, 1e-10));
            max_log = fmax(max_log, lg);
            out[(size_t)t * n_mels + m] = (float)lg;
        }
    }
    double floor_log = max_log - 8.0;
    for (size_t i = 0; i < (size_t)n_frames * n_mels; i++)
        out[i] = (float)((fmax((double)out[i], floor_log) + 4.0) / 4.0);
    return 0;
}
