// speech.c — see speech.h. Part 1 runs in the child process and drives espeak-ng; part 2 runs in the caller:
// it starts the child, reads its messages and resamples the clips to 16 kHz.
//
// Pipe protocol (child -> parent, native byte order: both ends are the same program on the same machine):
//   start     int32 status; 0: espeak-ng is ready, then int32 native sample rate; else a message
//   voices    per voice: int32 present (0 or 1)
//   synth     per request: int32 status; 0: uint64 n, then n int16 samples; else a message
//   message   uint32 length + that many bytes (no NUL); the child exits after sending one
#include "datasets/speech.h"

#include <errno.h>
#include <espeak-ng/espeak_ng.h>
#include <espeak-ng/speak_lib.h>
#include <samplerate.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
    MAX_VOICE_NAME = 40,                   // espeak-ng copies names into small fixed buffers
    MAX_NATIVE_SAMPLES = 22050 * 600,      // 10 minutes: longer means the child sent garbage
    MAX_MESSAGE = 900,
};

// ==================================================================================================== child

// The samples of the utterance being synthesised (child process only: the callback gets no context pointer we
// could rely on). The child never calls exit() (xmalloc's out-of-memory path does): atexit handlers inherited
// from the caller (HDF5's, for instance) must not run twice; it reports failures and calls _exit.
static int16_t* child_pcm;
static size_t child_n, child_cap;
static int child_oom;

static int on_samples(short* wav, int n, espeak_EVENT* events) {
    (void)events;
    if (!wav || n <= 0) return 0;
    if (child_n + (size_t)n > child_cap) {
        size_t cap = child_n + (size_t)n > 2 * child_cap ? child_n + (size_t)n : 2 * child_cap;
        int16_t* p = realloc(child_pcm, cap * sizeof *p);
        if (!p) {
            child_oom = 1;
            return 1;   // abort the synthesis
        }
        child_pcm = p;
        child_cap = cap;
    }
    memcpy(child_pcm + child_n, wav, (size_t)n * sizeof *wav);
    child_n += (size_t)n;
    return 0;   // continue
}

static void write_all(int fd, const void* data, size_t n) {
    const char* p = data;
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) _exit(1);   // the parent went away: nothing left to report to
        p += k;
        n -= (size_t)k;
    }
}

static void write_i32(int fd, int32_t v) { write_all(fd, &v, sizeof v); }

// Sends status -1 and a message, then ends the child.
static void child_fail(int fd, const char* msg) {
    uint32_t len = (uint32_t)strnlen(msg, MAX_MESSAGE);
    write_i32(fd, -1);
    write_all(fd, &len, sizeof len);
    write_all(fd, msg, len);
    _exit(0);
}

// Finds espeak-ng-data, initialises espeak-ng and sends the start message.
static void child_start(int fd) {
    char msg[MAX_MESSAGE];
    const char* data = NULL;
    espeak_ng_InitializePath(NULL);
    espeak_Info(&data);
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/phontab", data ? data : "");
    if (!data || access(probe, R_OK) != 0) {
        snprintf(msg, sizeof msg,
                 "espeak-ng: voice data not found at '%s' (install Debian's espeak-ng-data package, or set "
                 "ESPEAK_DATA_PATH to the directory that contains espeak-ng-data)", data ? data : "(none)");
        child_fail(fd, msg);
    }
    int rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, NULL, espeakINITIALIZE_DONT_EXIT);
    if (rate <= 0) {
        snprintf(msg, sizeof msg, "espeak-ng: initialisation failed with the data at '%s' (reinstall espeak-ng-data)",
                 data);
        child_fail(fd, msg);
    }
    espeak_SetSynthCallback(on_samples);
    write_i32(fd, 0);
    write_i32(fd, rate);
}

static void child_voices(int fd, const char* const* voices, int n) {
    child_start(fd);
    for (int i = 0; i < n; i++) write_i32(fd, espeak_SetVoiceByName(voices[i]) == EE_OK);
    _exit(0);
}

static void child_synthesize(int fd, const SpeechRequest* req, int n) {
    char msg[MAX_MESSAGE];
    child_start(fd);
    for (int i = 0; i < n; i++) {
        const SpeechRequest* r = &req[i];
        if (espeak_SetVoiceByName(r->voice) != EE_OK) {
            snprintf(msg, sizeof msg, "espeak-ng: voice '%s' is not installed (see `espeak-ng --voices=en`)", r->voice);
            child_fail(fd, msg);
        }
        espeak_SetParameter(espeakRATE, r->rate, 0);
        espeak_SetParameter(espeakPITCH, r->pitch, 0);
        child_n = 0;
        espeak_ERROR rc = espeak_Synth(r->text, strlen(r->text) + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, NULL, NULL);
        if (rc == EE_OK) rc = espeak_Synchronize();
        if (child_oom) child_fail(fd, "espeak-ng: out of memory while synthesising");
        if (rc != EE_OK) {
            snprintf(msg, sizeof msg, "espeak-ng: synthesis of '%.200s' with voice '%s' failed (error %d)", r->text,
                     r->voice, (int)rc);
            child_fail(fd, msg);
        }
        uint64_t count = child_n;
        write_i32(fd, 0);
        write_all(fd, &count, sizeof count);
        write_all(fd, child_pcm, child_n * sizeof *child_pcm);
    }
    _exit(0);
}

// ==================================================================================================== parent

typedef struct Child {
    pid_t pid;
    int fd;        // read end of the pipe
    int reaped;
    int status;    // waitpid status once reaped
} Child;

typedef enum { JOB_VOICES, JOB_SYNTHESIZE } JobKind;

typedef struct Job {
    JobKind kind;
    const char* const* voices;
    const SpeechRequest* req;
    int n;
} Job;

static int child_spawn(Child* c, const Job* job, Error* e) {
    int fds[2];
    memset(c, 0, sizeof *c);
    if (pipe(fds) != 0) return errorf(e, "espeak-ng: cannot create a pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return errorf(e, "espeak-ng: cannot start the synthesis process: %s", strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        if (job->kind == JOB_VOICES) child_voices(fds[1], job->voices, job->n);
        else child_synthesize(fds[1], job->req, job->n);
        _exit(0);
    }
    close(fds[1]);
    c->pid = pid;
    c->fd = fds[0];
    return 0;
}

static void child_reap(Child* c) {
    if (c->reaped) return;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR) {
    }
    c->reaped = 1;
}

// Reaps the child; after a successful protocol exchange (rc == 0) the child must have exited with status 0.
static int child_finish(Child* c, int rc, Error* e) {
    child_reap(c);
    if (rc == 0 && !(WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0))
        return errorf(e, "espeak-ng: the synthesis process failed (wait status %d)", c->status);
    return rc;
}

static int child_read(Child* c, void* data, size_t n, Error* e) {
    char* p = data;
    while (n > 0) {
        ssize_t k = read(c->fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            child_reap(c);
            if (WIFSIGNALED(c->status))
                return errorf(e, "espeak-ng: the synthesis process died with signal %d", WTERMSIG(c->status));
            return errorf(e, "espeak-ng: the synthesis process ended early (wait status %d)", c->status);
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

// Reads an int32 status; when it is not 0 reads the child's message into e and returns -1.
static int child_status(Child* c, Error* e) {
    int32_t status;
    if (child_read(c, &status, sizeof status, e) != 0) return -1;
    if (status == 0) return 0;
    uint32_t len;
    char msg[MAX_MESSAGE + 1];
    if (child_read(c, &len, sizeof len, e) != 0) return -1;
    if (len > MAX_MESSAGE) return errorf(e, "espeak-ng: the synthesis process sent a malformed message");
    if (child_read(c, msg, len, e) != 0) return -1;
    msg[len] = '\0';
    return errorf(e, "%s", msg);
}

static int child_read_start(Child* c, int32_t* native_rate, Error* e) {
    if (child_status(c, e) != 0 || child_read(c, native_rate, sizeof *native_rate, e) != 0) return -1;
    if (*native_rate < 8000 || *native_rate > 192000)
        return errorf(e, "espeak-ng: unexpected native sample rate %d Hz", (int)*native_rate);
    return 0;
}

static int check_voice_name(const char* v, Error* e) {
    size_t len = v ? strlen(v) : 0;
    int ok = len > 0 && len <= MAX_VOICE_NAME;
    for (size_t i = 0; ok && i < len; i++) {
        char ch = v[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
             ch == '+' || ch == '_';
    }
    if (!ok)
        return errorf(e, "espeak-ng: voice name '%.60s' is not valid (1..%d characters of A-Z a-z 0-9 - + _)",
                      v ? v : "(null)", MAX_VOICE_NAME);
    return 0;
}

int speech_voices_present(const char* const* voices, int n, int* present, Error* e) {
    for (int i = 0; i < n; i++)
        if (check_voice_name(voices[i], e) != 0) return -1;
    Job job = {.kind = JOB_VOICES, .voices = voices, .n = n};
    Child c;
    if (child_spawn(&c, &job, e) != 0) return -1;
    int32_t rate;
    int rc = child_read_start(&c, &rate, e);
    for (int i = 0; rc == 0 && i < n; i++) {
        int32_t p;
        rc = child_read(&c, &p, sizeof p, e);
        if (rc == 0) present[i] = p != 0;
    }
    return child_finish(&c, rc, e);
}

static int check_request(const SpeechRequest* r, int i, Error* e) {
    if (check_voice_name(r->voice, e) != 0) return -1;
    if (!r->text || !r->text[0]) return errorf(e, "speech request %d: empty text", i);
    if (r->rate < SPEECH_RATE_MIN || r->rate > SPEECH_RATE_MAX)
        return errorf(e, "speech request %d ('%.100s'): rate %d words/min is outside %d..%d", i, r->text, r->rate,
                      SPEECH_RATE_MIN, SPEECH_RATE_MAX);
    if (r->pitch < 0 || r->pitch > SPEECH_PITCH_MAX)
        return errorf(e, "speech request %d ('%.100s'): pitch %d is outside 0..%d", i, r->text, r->pitch,
                      SPEECH_PITCH_MAX);
    return 0;
}

// (n) int16 at native_rate -> out at SPEECH_SAMPLE_RATE.
static int resample(const int16_t* in, size_t n, int native_rate, SpeechClip* out, Error* e) {
    double ratio = (double)SPEECH_SAMPLE_RATE / native_rate;
    size_t cap = (size_t)((double)n * ratio) + 64;
    float* fin = xmalloc((n ? n : 1) * sizeof *fin);
    float* fout = xmalloc(cap * sizeof *fout);
    src_short_to_float_array(in, fin, (int)n);
    SRC_DATA d = {.data_in = fin, .data_out = fout, .input_frames = (long)n, .output_frames = (long)cap,
                  .src_ratio = ratio, .end_of_input = 1};
    int err = src_simple(&d, SRC_SINC_MEDIUM_QUALITY, 1);
    if (err == 0) {
        out->n_samples = (size_t)d.output_frames_gen;
        out->pcm = xmalloc((out->n_samples ? out->n_samples : 1) * sizeof *out->pcm);
        src_float_to_short_array(fout, out->pcm, (int)out->n_samples);
    }
    free(fin);
    free(fout);
    if (err != 0) return errorf(e, "libsamplerate: resampling %d Hz -> %d Hz failed: %s", native_rate,
                                SPEECH_SAMPLE_RATE, src_strerror(err));
    return 0;
}

// Reads request i's samples from the child and resamples them into out.
static int read_clip(Child* c, const SpeechRequest* r, int native_rate, SpeechClip* out, Error* e) {
    uint64_t count;
    if (child_status(c, e) != 0 || child_read(c, &count, sizeof count, e) != 0) return -1;
    if (count > MAX_NATIVE_SAMPLES) return errorf(e, "espeak-ng: '%.100s' gave %llu samples (more than 10 minutes)",
                                                  r->text, (unsigned long long)count);
    if (count == 0) return errorf(e, "espeak-ng: '%.100s' with voice '%s' gave no audio", r->text, r->voice);
    int16_t* native = xmalloc(count * sizeof *native);
    int rc = child_read(c, native, count * sizeof *native, e);
    if (rc == 0) rc = resample(native, count, native_rate, out, e);
    free(native);
    return rc;
}

int speech_synthesize(const SpeechRequest* req, int n, SpeechClip* out, Error* e) {
    memset(out, 0, (size_t)(n > 0 ? n : 0) * sizeof *out);
    for (int i = 0; i < n; i++)
        if (check_request(&req[i], i, e) != 0) return -1;
    if (n <= 0) return 0;
    Job job = {.kind = JOB_SYNTHESIZE, .req = req, .n = n};
    Child c;
    if (child_spawn(&c, &job, e) != 0) return -1;
    int32_t rate;
    int rc = child_read_start(&c, &rate, e);
    for (int i = 0; rc == 0 && i < n; i++) rc = read_clip(&c, &req[i], rate, &out[i], e);
    return child_finish(&c, rc, e);
}

void speech_clip_free(SpeechClip* c) {
    free(c->pcm);
    c->pcm = NULL;
    c->n_samples = 0;
}

void speech_set_silence(SpeechClip* c, int threshold, size_t margin) {
    size_t first = c->n_samples, last = 0;
    for (size_t i = 0; i < c->n_samples; i++) {
        if (abs(c->pcm[i]) < threshold) continue;
        if (first == c->n_samples) first = i;
        last = i;
    }
    if (first == c->n_samples) return;   // nothing loud enough: leave it
    size_t n = last + 1 - first + 2 * margin;
    int16_t* out = xcalloc(n, sizeof *out);   // zeros where the clip had fewer than margin samples
    size_t begin = first > margin ? first - margin : 0;                                   // source range
    size_t end = last + 1 + margin < c->n_samples ? last + 1 + margin : c->n_samples;    // (exclusive)
    memcpy(out + (begin + margin - first), c->pcm + begin, (end - begin) * sizeof *out);
    free(c->pcm);
    c->pcm = out;
    c->n_samples = n;
}
