// logmel.h — Whisper's log-mel spectrogram front end (the input of the Whisper audio encoder), on the CPU
// with FFTW (double precision, pkg-config name "fftw3", link -lfftw3).
//
// Contract (Whisper's audio.py log_mel_spectrogram, reproduced step by step):
// - Input: mono 16 kHz float samples, nominally in [-1, 1] (not checked; NaN/Inf are rejected).
// - Length: pad30 != 0 zero-pads or trims the audio to 30 s (LOGMEL_N_SAMPLES = 480000 samples) first,
//   giving 3000 frames; pad30 == 0 uses the audio as it is ("none").
// - STFT: n_fft 400, hop 160, periodic Hann window of 400, center=True with REFLECT padding of 200
//   samples on both sides; power |X|^2 of the 201 one-sided bins; the LAST frame is dropped (Whisper's
//   stft[..., :-1]), so n_frames = n / 160 (floor).
// - Mel filterbank: librosa.filters.mel(sr=16000, n_fft=400, n_mels, fmin=0, fmax=8000, htk=False: the
//   Slaney mel scale, norm="slaney": each triangle scaled by 2 / (its width in Hz)), computed here in double.
// - mel = filters @ power; log10(max(mel, 1e-10)); clamped below at (global max over the whole output
//   - 8); then (x + 4) / 4.
// - Output: (n_frames, n_mels) float, FRAME-MAJOR (Whisper's is (n_mels, n_frames)): row t holds the
//   n_mels features of frame t, i.e. channels-last as the encoder's Conv1d input wants it.
// - Arithmetic is double throughout (window, FFT, power, mel, log, max); only the output is rounded to float.
//
// Threads: a LogMel owns its FFTW plan and work buffers, so one LogMel must not be used by two threads at
// once (create one per thread). FFTW's planner is NOT thread-safe: logmel_create and logmel_free (which
// plan and destroy plans) must not run concurrently with each other or with other FFTW planning in the
// process. logmel_compute only executes the plan and may run in parallel on DIFFERENT LogMel objects.
// Plans use FFTW_ESTIMATE, so the plan (and every result bit) is the same on every run.
#pragma once
#include "kernels/common.h"

enum {
    LOGMEL_SAMPLE_RATE = 16000,
    LOGMEL_N_FFT = 400,
    LOGMEL_HOP = 160,
    LOGMEL_N_BINS = LOGMEL_N_FFT / 2 + 1,     // 201 one-sided frequency bins
    LOGMEL_N_SAMPLES = 30 * LOGMEL_SAMPLE_RATE, // 480000: Whisper's 30-second window
    LOGMEL_N_FRAMES_30S = LOGMEL_N_SAMPLES / LOGMEL_HOP,  // 3000
};

typedef struct LogMel LogMel;

// n_mels: 80 (Whisper tiny..large-v2) or 128 (large-v3). Returns NULL with e filled otherwise.
LogMel* logmel_create(int n_mels, Error* e);
void logmel_free(LogMel* lm);
int logmel_n_mels(const LogMel* lm);
// The mel filterbank, (n_mels, LOGMEL_N_BINS) row-major, owned by lm.
const double* logmel_filters(const LogMel* lm);

// Number of output frames for n_samples input samples: 3000 with pad30, n_samples / 160 without; 0 when
// logmel_compute would reject the length (n_samples <= 0, or <= 200 without pad30: reflect padding needs
// more than n_fft / 2 samples).
int logmel_frames(const LogMel* lm, int n_samples, int pad30);

// samples: (n) -> out: (logmel_frames(lm, n, pad30), n_mels). Returns 0, or -1 with e filled: empty audio,
// audio too short for reflect padding, or a non-finite sample (the message names the problem and what to do).
int logmel_compute(LogMel* lm, const float* samples, int n, int pad30, float* out, Error* e);
