// convert_webdataset.c — `--from webdataset`: WebDataset tar shards (reference/bone-data-slurm.md B.1) -> shards.
//
// Contract:
// - The pattern is brace-expanded (convert_brace_expand) into tar files read in that order (plain or gzip'ed
//   tar, through libarchive). A member's key is its path up to the first '.' of the last path component (a
//   leading "./" dropped), its field the rest, lower-cased ("a/b/001.seg.png" -> key "a/b/001", field
//   "seg.png"). Members of one sample must be contiguous in the tar; directories and links are skipped.
// - Fields used: jpg / jpeg / png (the image, kept as its bytes after checking it decodes), wav / flac (audio,
//   resampled to 16 kHz mono, ceil(seconds * audio_tokens_per_s) placeholders), txt (text, trailing white space
//   removed), json (used when it holds "conversations"; otherwise it is metadata and ignored). Any other field
//   (cls, seg.png, mp3, ...) is ignored: the run prints how many members were ignored, with an example.
// - A sample becomes:
//     json with "conversations"   the conversation (chat_template.h); its <image> / <audio> tags place the
//                                 sample's image / audio (the txt, if any, is not used);
//     image + txt                 caption: user "<image>", assistant = txt;
//     audio + txt                 transcription: user "<audio>", assistant = txt;
//     txt alone                   a plain document, every token trained (+ end-of-document 0 for World);
//   anything else (no text, image and audio with only a txt, two members with one field) is a bad sample.
// - Bad samples name the tar file and the key: an undecodable image or audio, a malformed json, members that
//   are not contiguous (the key appears again after another key), a member too large. A tar that cannot be
//   opened or is corrupt stops the run ("FILE: ..."), with or without --skip-bad.
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "datasets/audio.h"
#include "datasets/convert.h"

enum {
    MAX_EXPANSIONS = 1000000,
    MAX_MEMBERS = 16,                 // members of one sample that are kept
    MAX_MEMBER_BYTES = 256 << 20,
    MAX_FIELD = 64,
};

// ---------------------------------------------------------------------------------------------------- braces

typedef struct StrList {
    char** items;
    size_t n, cap;
} StrList;

static void strlist_push(StrList* l, char* s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->items = xrealloc(l->items, l->cap * sizeof(char*));
    }
    l->items[l->n++] = s;
}

static void strlist_free(StrList* l) {
    for (size_t i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = l->cap = 0;
}

static char* concat3(const char* a, size_t na, const char* b, size_t nb, const char* c) {
    size_t nc = strlen(c);
    char* s = xmalloc(na + nb + nc + 1);
    memcpy(s, a, na);
    memcpy(s + na, b, nb);
    memcpy(s + na + nb, c, nc + 1);
    return s;
}

static int all_digits(const char* s, size_t n) {
    if (n == 0 || n > 18) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return 0;
    return 1;
}

// A numeric range body "a..b" -> its values, zero-padded to the wider end when either end has a leading zero,
// ascending or descending. Returns 1 (a range), 0 (not a range) or -1.
static int range_alternatives(const char* pattern, const char* body, size_t n, StrList* alts, Error* e) {
    const char* dots = NULL;
    for (size_t i = 0; i + 1 < n && !dots; i++)
        if (body[i] == '.' && body[i + 1] == '.') dots = body + i;
    size_t na = dots ? (size_t)(dots - body) : 0, nb = dots ? n - na - 2 : 0;
    if (!dots || !all_digits(body, na) || !all_digits(dots + 2, nb)) return 0;
    long long a = strtoll(body, NULL, 10), b = strtoll(dots + 2, NULL, 10);
    int width = ((na > 1 && body[0] == '0') || (nb > 1 && dots[2] == '0')) ? (int)(na > nb ? na : nb) : 0;
    long long step = a <= b ? 1 : -1, count = (a <= b ? b - a : a - b) + 1;
    if (count > MAX_EXPANSIONS)
        return errorf(e, "%s: the range {%.*s} has more than %d values", pattern, (int)n, body, (int)MAX_EXPANSIONS);
    for (long long v = a, k = 0; k < count; k++, v += step) {
        char buf[32];
        snprintf(buf, sizeof buf, "%0*lld", width, v);
        strlist_push(alts, xstrdup(buf));
    }
    return 1;
}

// A list body "x,y,z" -> its items. Returns 1 (a list) or 0 (no comma).
static int list_alternatives(const char* body, size_t n, StrList* alts) {
    if (!memchr(body, ',', n)) return 0;
    for (size_t start = 0, i = 0; i <= n; i++) {
        if (i < n && body[i] != ',') continue;
        strlist_push(alts, concat3(body + start, i - start, "", 0, ""));
        start = i + 1;
    }
    return 1;
}

static int push_path(const char* pattern, StrList* out, char* s, Error* e) {
    if (out->n >= MAX_EXPANSIONS) {
        free(s);
        return errorf(e, "%s: expands to more than %d files", pattern, (int)MAX_EXPANSIONS);
    }
    strlist_push(out, s);
    return 0;
}

// Expands s (whose first brace, if any, is the next to expand) into out.
static int expand_into(const char* pattern, const char* s, StrList* out, Error* e) {
    const char* open = strchr(s, '{');
    if (!open) return push_path(pattern, out, xstrdup(s), e);
    const char* close = strchr(open + 1, '}');
    const char* inner = strchr(open + 1, '{');
    if (!close) return errorf(e, "%s: a '{' has no matching '}'", pattern);
    if (inner && inner < close) return errorf(e, "%s: nested braces are not supported", pattern);
    const char* body = open + 1;
    size_t n = (size_t)(close - body);
    StrList alts = {0}, rest = {0};
    int rc = range_alternatives(pattern, body, n, &alts, e);
    if (rc == 0) rc = list_alternatives(body, n, &alts);
    if (rc == 0) {   // a literal brace: keep it, expand what follows it
        rc = expand_into(pattern, close + 1, &rest, e);
        for (size_t j = 0; rc == 0 && j < rest.n; j++)
            rc = push_path(pattern, out, concat3(s, (size_t)(close + 1 - s), "", 0, rest.items[j]), e);
    } else if (rc > 0) {
        rc = 0;
        for (size_t i = 0; rc == 0 && i < alts.n; i++) {
            char* next = concat3(s, (size_t)(open - s), alts.items[i], strlen(alts.items[i]), close + 1);
            rc = expand_into(pattern, next, out, e);
            free(next);
        }
    }
    strlist_free(&alts);
    strlist_free(&rest);
    return rc;
}

int convert_brace_expand(const char* pattern, char*** paths, size_t* n, Error* e) {
    StrList out = {0};
    *paths = NULL;
    *n = 0;
    if (expand_into(pattern, pattern, &out, e) != 0) {
        strlist_free(&out);
        return -1;
    }
    *paths = out.items;
    *n = out.n;
    return 0;
}

// ---------------------------------------------------------------------------------------------------- groups

typedef struct Member {
    char field[MAX_FIELD];
    uint8_t* bytes;
    size_t n;
} Member;

typedef struct Group {
    char* key;              // NULL = no group open
    int64_t index;
    int owned;
    int broken;             // the key reappeared after another key
    Member m[MAX_MEMBERS];
    int n;
    char extra_field[MAX_FIELD];   // a member beyond MAX_MEMBERS or a repeated field (bad sample)
    char too_large[MAX_FIELD];     // a member larger than MAX_MEMBER_BYTES (bad sample)
} Group;

typedef struct Wds {
    ConvertRun run;
    const char* tar;        // the tar being read
    Group g;
    StrSet* tar_keys;       // keys seen in this tar (contiguity check)
    int64_t n_ignored;
    char ignored_example[256];
} Wds;

static void group_clear(Group* g) {
    for (int i = 0; i < g->n; i++) free(g->m[i].bytes);
    free(g->key);
    memset(g, 0, sizeof *g);
}

static int is_image_field(const char* f) { return !strcmp(f, "jpg") || !strcmp(f, "jpeg") || !strcmp(f, "png"); }
static int is_audio_field(const char* f) { return !strcmp(f, "wav") || !strcmp(f, "flac"); }
static int is_known_field(const char* f) {
    return is_image_field(f) || is_audio_field(f) || !strcmp(f, "txt") || !strcmp(f, "json");
}

static int is_txt_field(const char* f) { return !strcmp(f, "txt"); }
static int is_json_field(const char* f) { return !strcmp(f, "json"); }

// The member whose field matches (NULL when none); *count gets how many match.
static const Member* find_member(const Group* g, int (*match)(const char*), int* count) {
    const Member* first = NULL;
    *count = 0;
    for (int i = 0; i < g->n; i++) {
        if (!match(g->m[i].field)) continue;
        if (!first) first = &g->m[i];
        (*count)++;
    }
    return first;
}

// ---------------------------------------------------------------------------------------------------- sample building

static int add_image(Wds* w, const Member* m, Sample* s, const char* what, Error* e) {
    char where[640];
    snprintf(where, sizeof where, "%s (.%s member)", what, m->field);
    uint8_t* copy = xmalloc(m->n ? m->n : 1);
    memcpy(copy, m->bytes, m->n);
    return convert_image_item(copy, m->n, w->run.o->image_tokens, where, &s->media[s->n_media++], e);
}

static int add_audio(Wds* w, const Member* m, Sample* s, const char* what, Error* e) {
    char where[640];
    snprintf(where, sizeof where, "%s (.%s member)", what, m->field);
    int16_t* pcm;
    size_t n;
    if (audio_decode_16k(m->bytes, m->n, where, &pcm, &n, e) != 0) return -1;
    convert_audio_item(pcm, n, w->run.o->audio_tokens_per_s, &s->media[s->n_media++]);
    return 0;
}

static size_t trimmed_len(const uint8_t* s, size_t n) {
    while (n > 0 && isspace(s[n - 1])) n--;
    return n;
}

// A json member with "conversations" -> the conversation; 1 when used, 0 when it has none, -1 on error.
static int build_from_json(Wds* w, const Member* js, Sample* s, const char* what, Error* e) {
    json_error_t jerr;
    json_t* obj = json_loadb((const char*)js->bytes, js->n, JSON_DECODE_ANY, &jerr);
    if (!obj) return errorf(e, "%s (.json member), line %d: malformed JSON: %s", what, jerr.line, jerr.text);
    const json_t* conv = json_is_object(obj) ? json_object_get(obj, "conversations") : NULL;
    int rc = 0;
    if (conv) {
        ChatTurn* turns;
        int n_turns;
        rc = convert_turns_from_json(conv, &turns, &n_turns, what, e);
        if (rc == 0) rc = chat_build(w->run.tok, turns, n_turns, s, what, e);
        free(turns);
        if (rc == 0) rc = 1;
    }
    json_decref(obj);
    return rc;
}

// The txt rules: caption, transcription or document.
static int build_from_txt(Wds* w, const Member* txt, Sample* s, const char* what, Error* e) {
    size_t n = trimmed_len(txt->bytes, txt->n);
    const char* text = (const char*)txt->bytes;
    if (s->n_media > 1)
        return errorf(e, "%s: an image and audio with only a .txt: give a .json with \"conversations\" that "
                         "places both", what);
    if (s->n_media == 0) {
        if (n == 0) return errorf(e, "%s (.txt member): empty text", what);
        chat_build_document(w->run.tok, text, n, tokenizer_vocab_size(w->run.tok) > 256, s);
        return 0;
    }
    int image = s->media[0].kind == MEDIA_IMAGE_ENCODED;
    ChatTurn turns[2] = {{CHAT_USER, image ? "<image>" : "<audio>", 7}, {CHAT_ASSISTANT, text, n}};
    return chat_build(w->run.tok, turns, 2, s, what, e);
}

static int build_sample(Wds* w, const Group* g, Sample* s, const char* what, Error* e) {
    if (g->broken)
        return errorf(e, "%s: its members are not contiguous (the key appears again after other keys): write each "
                         "sample's files next to each other", what);
    if (g->too_large[0])
        return errorf(e, "%s (.%s member): larger than %d MB (or of unknown size)", what, g->too_large,
                      MAX_MEMBER_BYTES >> 20);
    if (g->extra_field[0])
        return errorf(e, "%s: two members for one sample of field '%s' (or more than %d members)", what, g->extra_field,
                      (int)MAX_MEMBERS);
    int n_img, n_aud, n_txt, n_js;
    const Member* img = find_member(g, is_image_field, &n_img);
    const Member* aud = find_member(g, is_audio_field, &n_aud);
    const Member* txt = find_member(g, is_txt_field, &n_txt);
    const Member* js = find_member(g, is_json_field, &n_js);
    if (n_img > 1) return errorf(e, "%s: more than one image member (jpg/jpeg/png): keep one per sample", what);
    if (n_aud > 1) return errorf(e, "%s: more than one audio member (wav/flac): keep one per sample", what);
    s->media = xcalloc(2, sizeof(MediaItem));
    if (img && add_image(w, img, s, what, e) != 0) return -1;
    if (aud && add_audio(w, aud, s, what, e) != 0) return -1;
    int used = js ? build_from_json(w, js, s, what, e) : 0;
    if (used != 0) return used < 0 ? -1 : 0;
    if (txt) return build_from_txt(w, txt, s, what, e);
    return errorf(e, "%s: no .txt and no .json with \"conversations\": nothing to train on", what);
}

// Converts the finished group (owned ones only) and clears it.
static int finish_group(Wds* w, Error* e) {
    Group* g = &w->g;
    if (!g->key) return 0;
    int rc = 0;
    if (g->owned) {
        char what[512];
        snprintf(what, sizeof what, "%s: sample '%.200s'", w->tar, g->key);
        Sample s = {0};
        Error bad;
        s.key = g->broken ? NULL : convert_unique_key(&w->run, g->key, g->index, what, &bad);
        if (!g->broken && !s.key) rc = convert_bad(&w->run, &bad, e);
        else if (build_sample(w, g, &s, what, &bad) != 0) rc = convert_bad(&w->run, &bad, e);
        else rc = convert_write(&w->run, &s, e);
        sample_free(&s);
    } else if (!g->broken) {
        Error ignored;
        free(convert_unique_key(&w->run, g->key, g->index, "", &ignored));
    }
    group_clear(g);
    return rc;
}

// ---------------------------------------------------------------------------------------------------- tar reading

static const char* archive_message(struct archive* a) {
    const char* m = archive_error_string(a);
    return m ? m : "unknown libarchive error";
}

// Splits a member path into key and field ("./a/b/001.seg.PNG" -> "a/b/001", "seg.png"). 0, or -1 when the
// last path component has no '.' (not a sample member).
static int split_member(const char* path, char** key, char* field) {
    if (path[0] == '.' && path[1] == '/') path += 2;
    const char* base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char* dot = strchr(base, '.');
    if (!dot) return -1;
    size_t nf = strlen(dot + 1);
    if (nf >= MAX_FIELD) nf = MAX_FIELD - 1;
    for (size_t i = 0; i < nf; i++) field[i] = (char)tolower((unsigned char)dot[1 + i]);
    field[nf] = 0;
    *key = concat3(path, (size_t)(dot - path), "", 0, "");
    return 0;
}

// A new key starts a new group (after finishing the previous one).
static int start_group(Wds* w, char* key, Error* e) {
    if (finish_group(w, e) != 0) {
        free(key);
        return -1;
    }
    Group* g = &w->g;
    g->key = key;
    g->broken = strset_insert(w->tar_keys, key) != 0;
    g->index = convert_next_index(&w->run);
    g->owned = convert_owns(&w->run, g->index);
    return 0;
}

static void note_ignored(Wds* w, const char* path) {
    if (w->n_ignored++ == 0) snprintf(w->ignored_example, sizeof w->ignored_example, "%s", path);
}

// Reads the current member's data into the group (owned groups, known fields), or skips it.
static int take_member(Wds* w, struct archive* a, struct archive_entry* ent, const char* field, Error* e) {
    Group* g = &w->g;
    if (!g->owned || g->broken) return 0;
    if (!is_known_field(field)) {
        note_ignored(w, archive_entry_pathname(ent));
        return 0;
    }
    int repeated = 0;
    for (int i = 0; i < g->n; i++) repeated |= strcmp(g->m[i].field, field) == 0;
    if (g->n == MAX_MEMBERS || repeated) {
        snprintf(g->extra_field, sizeof g->extra_field, "%s", field);
        return 0;
    }
    Member* m = &g->m[g->n];
    int64_t size = archive_entry_size_is_set(ent) ? archive_entry_size(ent) : -1;
    if (size < 0 || size > MAX_MEMBER_BYTES) {
        snprintf(g->too_large, sizeof g->too_large, "%s", field);
        return 0;
    }
    m->bytes = xmalloc(size ? (size_t)size : 1);
    la_ssize_t got = archive_read_data(a, m->bytes, (size_t)size);
    if (got != size) {
        free(m->bytes);
        m->bytes = NULL;
        return errorf(e, "%s: member '%s': %s", w->tar, archive_entry_pathname(ent),
                      got < 0 ? archive_message(a) : "truncated");
    }
    snprintf(m->field, sizeof m->field, "%s", field);
    m->n = (size_t)size;
    g->n++;
    return 0;
}

// One tar member: group it by key and take its data.
static int read_member(Wds* w, struct archive* a, struct archive_entry* ent, Error* e) {
    const char* path = archive_entry_pathname(ent);
    if (archive_entry_filetype(ent) != AE_IFREG || !path) return 0;   // directories, links, devices
    char* key;
    char field[MAX_FIELD];
    if (split_member(path, &key, field) != 0) {
        if (w->run.o->rank == 0) note_ignored(w, path);   // belongs to no sample: reported once
        return 0;
    }
    if (!w->g.key || strcmp(w->g.key, key) != 0) {
        if (start_group(w, key, e) != 0) return -1;
    } else {
        free(key);
    }
    return take_member(w, a, ent, field, e);
}

static int read_tar(Wds* w, const char* path, Error* e) {
    struct archive* a = archive_read_new();
    archive_read_support_format_tar(a);
    archive_read_support_filter_gzip(a);
    w->tar = path;
    w->tar_keys = strset_new();
    int rc = 0, r;
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        rc = errorf(e, "%s: cannot open the tar: %s", path, archive_message(a));
    } else {
        struct archive_entry* ent;
        while (rc == 0 && (r = archive_read_next_header(a, &ent)) != ARCHIVE_EOF) {
            if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
                rc = errorf(e, "%s: corrupt tar after %" PRId64 " samples: %s", path, w->run.n_input,
                            archive_message(a));
            else rc = read_member(w, a, ent, e);
        }
    }
    if (rc == 0) rc = finish_group(w, e);
    group_clear(&w->g);
    archive_read_free(a);
    strset_free(w->tar_keys);
    w->tar_keys = NULL;
    return rc;
}

static void print_ignored(const Wds* w) {
    if (w->n_ignored == 0) return;
    printf("webdataset: ignored %" PRId64 " member(s) whose extension is not jpg/jpeg/png/txt/json/wav/flac "
           "(e.g. '%s')\n", w->n_ignored, w->ignored_example);
}

int convert_webdataset(const char* tar_pattern, const ConvertOptions* o, Error* e) {
    char** tars;
    size_t n_tars;
    if (convert_brace_expand(tar_pattern, &tars, &n_tars, e) != 0) return -1;
    Wds w;
    memset(&w, 0, sizeof w);
    int rc = convert_begin(&w.run, o, "webdataset", tar_pattern, e);
    if (rc == 0) {
        for (size_t i = 0; i < n_tars && rc == 0; i++) rc = read_tar(&w, tars[i], e);
        if (rc == 0) print_ignored(&w);
        rc = convert_end(&w.run, rc, e);
    }
    for (size_t i = 0; i < n_tars; i++) free(tars[i]);
    free(tars);
    return rc;
}
