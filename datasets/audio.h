// audio.h — audio decoding for the converters: any file libsndfile reads (WAV, FLAC, ...) becomes 16 kHz mono
// int16 PCM, the layout of MEDIA_AUDIO_PCM (datasets/shard.h).
//
// Contract:
// - Channels are mixed to mono by averaging; other sample rates are resampled to 16 kHz with libsamplerate
//   (SRC_SINC_MEDIUM_QUALITY: about 0.1 dB ripple, > 97 dB stop-band — transparent for speech); input that is
//   already 16 kHz mono is copied sample for sample (bit exact). The resampled length is n * 16000 / rate
//   within one sample.
// - Samples are scaled by 32768 (libsndfile's own int16 <-> float scale) and clamped to [-32768, 32767].
// - Input is never trusted: an unreadable or truncated file, no frames, a rate outside 1 kHz..768 kHz, more than
//   64 channels or more than AUDIO_MAX_SECONDS of audio gives -1 with "<what>: <what is wrong>".
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"

enum {
    AUDIO_SAMPLE_RATE = 16000,  // the rate of every MEDIA_AUDIO_PCM item
    AUDIO_MAX_SECONDS = 1800,   // longer recordings are rejected: split them (30 min = 90k audio tokens at 50/s)
};

// Decodes file bytes (format sniffed by libsndfile). `what` names the source in messages (file, tar member).
// On success *pcm (malloc'ed, caller frees) holds *n_samples samples at 16 kHz, mono.
int audio_decode_16k(const uint8_t* bytes, size_t n, const char* what, int16_t** pcm, size_t* n_samples, Error* e);
// Reads and decodes a file (messages name the path).
int audio_load_16k(const char* path, int16_t** pcm, size_t* n_samples, Error* e);
