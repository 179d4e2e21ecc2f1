// convert_audio.c — `--from audio-folder`: a LibriSpeech-style tree (reference/bone-data-slurm.md B.4) -> shards.
//
// Contract:
// - The tree under root is walked in byte-wise sorted order (deterministic, locale-free), symbolic links
//   followed, at most 64 levels deep. In each directory: every `*.trans.txt` (sorted) is read line by line,
//   each non-blank line `<utt-id> WORDS ...` being one sample with the audio `<utt-id>.flac` (or, when there is
//   no .flac, `<utt-id>.wav`) of the same directory; then sub-directories, in order.
// - Sample key = utt-id. Audio is decoded with libsndfile and resampled to 16 kHz mono int16 (audio.h);
//   the sample is user "<audio>" (ceil(seconds * audio_tokens_per_s) placeholders), assistant = the words.
// - Bad samples (counted with --skip-bad) name the transcript file and line or the audio file: a line with no
//   words, a line whose audio file is missing, an audio file that does not decode, and an audio file (.flac /
//   .wav) that no transcript line of its directory names (it would otherwise be dropped silently).
// - A root that is not a directory, or a directory that cannot be listed, stops the run.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/audio.h"
#include "datasets/convert.h"

enum { MAX_DEPTH = 64 };

static const char TRANS_SUFFIX[] = ".trans.txt";

typedef struct Folder {
    ConvertRun run;
} Folder;

// The entries of one directory, split by kind, each list sorted.
typedef struct Listing {
    char** trans;      // transcript file names
    char** audio;      // audio file names
    char** dirs;       // sub-directory names
    size_t n_trans, n_audio, n_dirs;
    StrSet* audio_set; // audio file names, for look-ups
} Listing;

static int ends_with(const char* s, const char* suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int is_audio_name(const char* name) { return ends_with(name, ".flac") || ends_with(name, ".wav"); }

static char* join(const char* dir, const char* name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int byte_order(const struct dirent** a, const struct dirent** b) { return strcmp((*a)->d_name, (*b)->d_name); }

static void push_name(char*** list, size_t* n, const char* name) {
    *list = xrealloc(*list, (*n + 1) * sizeof(char*));
    (*list)[(*n)++] = xstrdup(name);
}

static void classify(Listing* l, const char* dir, const char* name) {
    char* path = join(dir, name);
    struct stat st;
    int ok = stat(path, &st) == 0;
    free(path);
    if (!ok) return;   // a dangling link: nothing to read
    if (S_ISDIR(st.st_mode)) push_name(&l->dirs, &l->n_dirs, name);
    else if (!S_ISREG(st.st_mode)) return;
    else if (ends_with(name, TRANS_SUFFIX)) push_name(&l->trans, &l->n_trans, name);
    else if (is_audio_name(name)) push_name(&l->audio, &l->n_audio, name), strset_insert(l->audio_set, name);
}

static int list_dir(const char* dir, Listing* l, Error* e) {
    memset(l, 0, sizeof *l);
    struct dirent** ents;
    int n = scandir(dir, &ents, NULL, byte_order);
    if (n < 0) return errorf(e, "%s: cannot list the directory: %s", dir, strerror(errno));
    l->audio_set = strset_new();
    for (int i = 0; i < n; i++) {
        if (ents[i]->d_name[0] != '.') classify(l, dir, ents[i]->d_name);
        free(ents[i]);
    }
    free(ents);
    return 0;
}

static void free_names(char** names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

static void listing_free(Listing* l) {
    free_names(l->trans, l->n_trans);
    free_names(l->audio, l->n_audio);
    free_names(l->dirs, l->n_dirs);
    strset_free(l->audio_set);
}

// ---------------------------------------------------------------------------------------------------- one utterance

// The audio file name of utterance id (flac preferred) into out; 0 when there is none. Both spellings are
// marked used, so that a .wav next to the chosen .flac is not reported as an orphan.
static int audio_of(const Listing* l, StrSet* used, const char* id, char* out, size_t size) {
    char flac[512], wav[512];
    snprintf(flac, sizeof flac, "%s.flac", id);
    snprintf(wav, sizeof wav, "%s.wav", id);
    int has_flac = strset_contains(l->audio_set, flac), has_wav = strset_contains(l->audio_set, wav);
    if (has_flac) strset_insert(used, flac);
    if (has_wav) strset_insert(used, wav);
    snprintf(out, size, "%s", has_flac ? flac : wav);
    return has_flac || has_wav;
}

static int build_utterance(Folder* f, const char* audio_path, const char* words, size_t n_words, Sample* s,
                           const char* what, Error* e) {
    int16_t* pcm;
    size_t n;
    Error inner;
    if (audio_load_16k(audio_path, &pcm, &n, &inner) != 0) return errorf(e, "%s: %s", what, inner.msg);
    s->media = xcalloc(1, sizeof(MediaItem));
    s->n_media = 1;
    convert_audio_item(pcm, n, f->run.o->audio_tokens_per_s, &s->media[0]);
    ChatTurn turns[2] = {{CHAT_USER, "<audio>", 7}, {CHAT_ASSISTANT, words, n_words}};
    return chat_build(f->run.tok, turns, 2, s, what, e);
}

// What is wrong with a line before its audio is read, or NULL.
static const char* line_problem(int has_words, const char* audio) {
    if (!has_words) return "no words after the utterance id";
    if (!audio) return "no <utt-id>.flac or <utt-id>.wav next to the transcript";
    return NULL;
}

// One transcript line "<id> WORDS": numbered on every rank, converted by its owner.
static int convert_line(Folder* f, const char* dir, const Listing* l, StrSet* used, const char* trans_path, int line_no,
                        const char* line, size_t len, Error* e) {
    size_t n_id = 0;
    while (n_id < len && line[n_id] != ' ' && line[n_id] != '\t') n_id++;
    size_t w = n_id;
    while (w < len && (line[w] == ' ' || line[w] == '\t')) w++;
    char* id = xmalloc(n_id + 1);
    memcpy(id, line, n_id);
    id[n_id] = 0;
    char name[512], what[1024];
    const char* audio = n_id < 400 && audio_of(l, used, id, name, sizeof name) ? name : NULL;
    snprintf(what, sizeof what, "%s:%d: utterance '%.200s'", trans_path, line_no, id);
    int64_t index = convert_next_index(&f->run);
    Error bad;
    Sample s = {0};
    s.key = convert_unique_key(&f->run, id, index, what, &bad);
    free(id);
    if (!convert_owns(&f->run, index)) {
        sample_free(&s);
        return 0;
    }
    const char* problem = s.key ? line_problem(w < len, audio) : NULL;
    char* audio_path = audio ? join(dir, audio) : NULL;
    int ok = s.key != NULL && !problem;
    if (problem) errorf(&bad, "%s: %s", what, problem);
    if (ok) ok = build_utterance(f, audio_path, line + w, len - w, &s, what, &bad) == 0;
    int rc = ok ? convert_write(&f->run, &s, e) : convert_bad(&f->run, &bad, e);
    free(audio_path);
    sample_free(&s);
    return rc;
}

static int convert_transcript(Folder* f, const char* dir, const Listing* l, StrSet* used, const char* name, Error* e) {
    char* path = join(dir, name);
    size_t len;
    char* text = read_file(path, &len, e);
    int rc = text ? 0 : -1;
    int line_no = 0;
    for (size_t at = 0; rc == 0 && at < len;) {
        const char* nl = memchr(text + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - text) : len, n = end - at;
        line_no++;
        while (n > 0 && (text[at + n - 1] == '\r' || text[at + n - 1] == ' ' || text[at + n - 1] == '\t')) n--;
        if (n > 0) rc = convert_line(f, dir, l, used, path, line_no, text + at, n, e);
        at = end + 1;
    }
    free(text);
    free(path);
    return rc;
}

// An audio file no transcript line names: a bad sample of its own (its owner reports it).
static int orphan_audio(Folder* f, const char* dir, const char* name, Error* e) {
    int64_t index = convert_next_index(&f->run);
    if (!convert_owns(&f->run, index)) return 0;
    Error bad;
    char* path = join(dir, name);
    errorf(&bad, "%s: no line of a *.trans.txt in its directory names it (no transcript)", path);
    free(path);
    return convert_bad(&f->run, &bad, e);
}

static int walk(Folder* f, const char* dir, int depth, Error* e) {
    if (depth > MAX_DEPTH) return errorf(e, "%s: more than %d directory levels (a link loop?)", dir, (int)MAX_DEPTH);
    Listing l;
    if (list_dir(dir, &l, e) != 0) return -1;
    StrSet* used = strset_new();
    int rc = 0;
    for (size_t i = 0; i < l.n_trans && rc == 0; i++) rc = convert_transcript(f, dir, &l, used, l.trans[i], e);
    for (size_t i = 0; i < l.n_audio && rc == 0; i++)
        if (strset_insert(used, l.audio[i]) == 0) rc = orphan_audio(f, dir, l.audio[i], e);
    for (size_t i = 0; i < l.n_dirs && rc == 0; i++) {
        char* sub = join(dir, l.dirs[i]);
        rc = walk(f, sub, depth + 1, e);
        free(sub);
    }
    strset_free(used);
    listing_free(&l);
    return rc;
}

int convert_audio_folder(const char* root, const ConvertOptions* o, Error* e) {
    struct stat st;
    if (stat(root, &st) != 0) return errorf(e, "%s: cannot open the audio folder: %s", root, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return errorf(e, "%s: not a directory (give the LibriSpeech-style root)", root);
    Folder f;
    if (convert_begin(&f.run, o, "audio-folder", root, e) != 0) return -1;
    int rc = walk(&f, root, 0, e);
    return convert_end(&f.run, rc, e);
}
