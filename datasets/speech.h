// speech.h — text-to-speech with espeak-ng (Debian's libespeak-ng + espeak-ng-data): a batch of
// (text, voice, rate, pitch) requests -> 16 kHz mono int16 PCM clips. Used by the spoken-digit demo data.
//
// Contract:
// - Voices are espeak-ng voice names: a language/accent ("en", "en-us", "en-gb-x-rp", "en-gb-scotland",
//   "en-029", ...) optionally with a variant ("en-us+f3", "en+m3"). speech_voices_present says which exist.
// - Rate is in words per minute (80..450, espeak-ng's default 175); pitch is espeak-ng's base pitch 0..100
//   (default 50). Text is UTF-8.
// - espeak-ng renders at its native rate (22,050 Hz); clips are resampled to SPEECH_SAMPLE_RATE with
//   libsamplerate (SRC_SINC_MEDIUM_QUALITY) and rounded to int16.
// - Deterministic: the same batch gives the same samples, whatever ran before in the process. espeak-ng
//   keeps state between utterances that its API cannot reset (the pitch-flutter phase), and in version 1.51
//   espeak_Terminate() followed by a new espeak_Initialize() hangs; so every call runs espeak-ng in a fresh
//   child process (fork) that synthesises the batch in order and streams the samples back over a pipe. The
//   calling process never touches espeak-ng's global state.
// - espeak-ng-data is found where espeak-ng looks for it: $ESPEAK_DATA_PATH/espeak-ng-data,
//   $HOME/espeak-ng-data, then its compiled-in default (/usr/lib/<arch>/espeak-ng-data on Debian). A missing
//   data directory, an unknown voice or an out-of-range rate/pitch gives -1 with a one-line message.
// - Not thread-safe: call from one thread at a time (the call forks; the child must not race other threads'
//   locks, so call it before starting worker threads or from a process whose other threads are idle).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"

enum {
    SPEECH_SAMPLE_RATE = 16000,   // Hz, mono
    SPEECH_RATE_MIN = 80,         // words per minute
    SPEECH_RATE_MAX = 450,
    SPEECH_PITCH_MAX = 100,
};

typedef struct SpeechRequest {
    const char* text;    // UTF-8, non-empty
    const char* voice;   // espeak-ng voice name, e.g. "en-us+f3"
    int rate;            // words per minute, SPEECH_RATE_MIN..SPEECH_RATE_MAX
    int pitch;           // 0..SPEECH_PITCH_MAX
} SpeechRequest;

typedef struct SpeechClip {
    int16_t* pcm;        // (n_samples) mono at SPEECH_SAMPLE_RATE, owned
    size_t n_samples;
} SpeechClip;

// present[i] = 1 when voices[i] can be selected in the installed espeak-ng-data, else 0. Returns 0, or -1
// when espeak-ng cannot start (data directory missing).
int speech_voices_present(const char* const* voices, int n, int* present, Error* e);

// Synthesises req[0..n) into out[0..n) (zeroed first; free each with speech_clip_free, also after a failure).
int speech_synthesize(const SpeechRequest* req, int n, SpeechClip* out, Error* e);
void speech_clip_free(SpeechClip* c);

// Makes the silence around the speech exactly `margin` samples on each side: the clip becomes the samples from
// the first to the last whose magnitude is >= threshold, with `margin` samples before and after (the clip's own
// where it has them, zeros where it does not). A clip with no sample >= threshold is left as it is.
void speech_set_silence(SpeechClip* c, int threshold, size_t margin);
