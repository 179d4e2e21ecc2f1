// audio.c — WAV/FLAC bytes -> 16 kHz mono int16 through libsndfile (virtual I/O over memory) and libsamplerate
// (contract in audio.h).
//
// Steps: open the bytes as a virtual file; read every frame as float (interleaved, libsndfile scales integer
// formats by 1/32768) in bounded chunks; average the channels; resample to 16 kHz unless the rate already
// is; scale by 32768 and clamp to int16. 16 kHz mono input skips all of that and is read as int16 directly.
#include "datasets/audio.h"

#include <math.h>
#include <samplerate.h>
#include <sndfile.h>
#include <stdlib.h>
#include <string.h>

enum {
    MIN_RATE = 1000,
    MAX_RATE = 768000,
    MAX_CHANNELS = 64,
    READ_CHUNK_FRAMES = 65536,
};

// ---------------------------------------------------------------------------------------------------- virtual I/O

typedef struct MemFile {
    const uint8_t* data;
    sf_count_t len, pos;
} MemFile;

static sf_count_t mem_len(void* user) { return ((MemFile*)user)->len; }

static sf_count_t mem_seek(sf_count_t offset, int whence, void* user) {
    MemFile* m = user;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->len;
    sf_count_t to = base + offset;
    if (to < 0 || to > m->len) return -1;
    m->pos = to;
    return to;
}

static sf_count_t mem_read(void* dst, sf_count_t count, void* user) {
    MemFile* m = user;
    sf_count_t left = m->len - m->pos;
    if (count > left) count = left;
    if (count <= 0) return 0;
    memcpy(dst, m->data + m->pos, (size_t)count);
    m->pos += count;
    return count;
}

static sf_count_t mem_write(const void* src, sf_count_t count, void* user) { return 0; }

static sf_count_t mem_tell(void* user) { return ((MemFile*)user)->pos; }

// ---------------------------------------------------------------------------------------------------- reading

static int check_info(const SF_INFO* info, const char* what, Error* e) {
    if (info->samplerate < MIN_RATE || info->samplerate > MAX_RATE)
        return errorf(e, "%s: sample rate %d Hz is outside %d..%d Hz", what, info->samplerate, MIN_RATE, MAX_RATE);
    if (info->channels < 1 || info->channels > MAX_CHANNELS)
        return errorf(e, "%s: %d channels (1..%d supported)", what, info->channels, MAX_CHANNELS);
    return 0;
}

// Reads every frame as int16 (16 kHz mono only) or float, in chunks, refusing more than the maximum length.
// elem is 2 (short) or 4 (float). Returns the frames read via *frames, the interleaved data via *out.
static int read_frames(SNDFILE* f, const SF_INFO* info, size_t elem, const char* what, void** out, size_t* frames,
                       Error* e) {
    size_t ch = (size_t)info->channels, cap = 0, n = 0;
    size_t max_frames = (size_t)AUDIO_MAX_SECONDS * (size_t)info->samplerate;
    uint8_t* buf = NULL;
    for (;;) {
        if (n + READ_CHUNK_FRAMES > cap) {
            cap = cap ? cap * 2 : READ_CHUNK_FRAMES;
            buf = xrealloc(buf, cap * ch * elem);
        }
        sf_count_t got = elem == 2 ? sf_readf_short(f, (short*)(buf + n * ch * elem), READ_CHUNK_FRAMES)
                                   : sf_readf_float(f, (float*)(buf + n * ch * elem), READ_CHUNK_FRAMES);
        if (got <= 0) break;
        n += (size_t)got;
        if (n > max_frames) {
            free(buf);
            return errorf(e, "%s: longer than %d s: split the recording", what, (int)AUDIO_MAX_SECONDS);
        }
    }
    int err = sf_error(f);
    if (err != SF_ERR_NO_ERROR) {
        free(buf);
        return errorf(e, "%s: cannot decode the audio: %s", what, sf_error_number(err));
    }
    if (n == 0) {
        free(buf);
        return errorf(e, "%s: no audio frames", what);
    }
    if (info->frames > 0 && info->frames < (sf_count_t)max_frames && (sf_count_t)n < info->frames) {
        free(buf);
        return errorf(e, "%s: truncated audio (%zu of %lld frames)", what, n, (long long)info->frames);
    }
    *out = buf;
    *frames = n;
    return 0;
}

// (frames, channels) interleaved -> (frames) mono by averaging, in place.
static void mix_to_mono(float* x, size_t frames, int channels) {
    if (channels == 1) return;
    for (size_t i = 0; i < frames; i++) {
        double sum = 0;
        for (int c = 0; c < channels; c++) sum += x[i * (size_t)channels + (size_t)c];
        x[i] = (float)(sum / channels);
    }
}

// (frames) at rate -> (*n_out) at 16 kHz; *out malloc'ed.
static int resample(const float* x, size_t frames, int rate, const char* what, float** out, size_t* n_out, Error* e) {
    double ratio = (double)AUDIO_SAMPLE_RATE / rate;
    size_t cap = (size_t)ceil((double)frames * ratio) + 64;
    float* y = xmalloc(cap * sizeof(float));
    SRC_DATA d = {.data_in = x, .data_out = y, .input_frames = (long)frames, .output_frames = (long)cap,
                  .src_ratio = ratio, .end_of_input = 1};
    int err = src_simple(&d, SRC_SINC_MEDIUM_QUALITY, 1);
    if (err != 0) {
        free(y);
        return errorf(e, "%s: cannot resample %d Hz to %d Hz: %s", what, rate, (int)AUDIO_SAMPLE_RATE,
                      src_strerror(err));
    }
    *out = y;
    *n_out = (size_t)d.output_frames_gen;
    return 0;
}

static int16_t to_int16(float v) {
    double s = nearbyint((double)v * 32768.0);
    if (!(s > -32768.0)) return -32768;  // also NaN
    if (s > 32767.0) return 32767;
    return (int16_t)s;
}

// The general path: float frames, mono mix, resample, int16.
static int decode_float(SNDFILE* f, const SF_INFO* info, const char* what, int16_t** pcm, size_t* n_samples,
                        Error* e) {
    void* raw;
    size_t frames;
    if (read_frames(f, info, sizeof(float), what, &raw, &frames, e) != 0) return -1;
    float* x = raw;  // (frames, channels)
    mix_to_mono(x, frames, info->channels);
    float* y = x;
    size_t n = frames;
    if (info->samplerate != AUDIO_SAMPLE_RATE && resample(x, frames, info->samplerate, what, &y, &n, e) != 0) {
        free(x);
        return -1;
    }
    if (n == 0) {
        if (y != x) free(y);
        free(x);
        return errorf(e, "%s: too short to resample to %d Hz", what, (int)AUDIO_SAMPLE_RATE);
    }
    int16_t* out = xmalloc(n * sizeof(int16_t));
    for (size_t i = 0; i < n; i++) out[i] = to_int16(y[i]);
    if (y != x) free(y);
    free(x);
    *pcm = out;
    *n_samples = n;
    return 0;
}

int audio_decode_16k(const uint8_t* bytes, size_t n, const char* what, int16_t** pcm, size_t* n_samples, Error* e) {
    *pcm = NULL;
    *n_samples = 0;
    MemFile m = {.data = bytes, .len = (sf_count_t)n, .pos = 0};
    SF_VIRTUAL_IO io = {mem_len, mem_seek, mem_read, mem_write, mem_tell};
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE* f = sf_open_virtual(&io, SFM_READ, &info, &m);
    if (!f) return errorf(e, "%s: not a readable audio file (%s)", what, sf_strerror(NULL));
    int rc = check_info(&info, what, e);
    if (rc == 0 && info.samplerate == AUDIO_SAMPLE_RATE && info.channels == 1) {
        void* raw;
        rc = read_frames(f, &info, sizeof(int16_t), what, &raw, n_samples, e);
        if (rc == 0) *pcm = raw;
    } else if (rc == 0) {
        rc = decode_float(f, &info, what, pcm, n_samples, e);
    }
    sf_close(f);
    return rc;
}

int audio_load_16k(const char* path, int16_t** pcm, size_t* n_samples, Error* e) {
    size_t len;
    char* bytes = read_file(path, &len, e);
    *pcm = NULL;
    *n_samples = 0;
    if (!bytes) return -1;
    int rc = audio_decode_16k((const uint8_t*)bytes, len, path, pcm, n_samples, e);
    free(bytes);
    return rc;
}
