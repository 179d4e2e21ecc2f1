// convert_llava.c — `--from llava-json`: a LLaVA JSON list (reference/bone-data-slurm.md B.3) -> shards.
//
// Contract:
// - Input: a JSON list of {"id": str|int, "image": relpath | [relpath, ...] (optional), "conversations":
//   [{"from": "human"|"gpt", "value": str}, ...]}. Image paths are relative to image_dir (or, when image_dir
//   is NULL, to the JSON file's directory); absolute paths are used as they are. Samples without "image" are
//   text-only. The list is read one element at a time (memory bounded by the largest element, not the file).
// - Sample key = "id" (a missing id: the element index, 9 digits); repeated ids get "~<index>" (convert.h).
// - Each image file is read, checked to decode (image_decode) and stored as its original bytes
//   (MEDIA_IMAGE_ENCODED) behind o->image_tokens placeholders where its "<image>" tag stands; the conversation
//   goes through the chat template (chat_template.h).
// - Errors: the file cannot be read, is not a list or is cut short -> the run fails. Per sample (bad sample,
//   counted with --skip-bad): malformed JSON ("FILE: element N (line L): malformed JSON: ..."), missing fields,
//   a missing or undecodable image (naming the sample id and the image path), tags that do not match images.
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/convert.h"

enum {
    READ_BLOCK = 1 << 16,
    MAX_ELEMENT_BYTES = 64 << 20,   // one conversation record; LLaVA's are a few KB
    MAX_IMAGES = 64,
};

// ---------------------------------------------------------------------------------------------------- the list
// A streaming splitter of the top-level JSON list: it tracks strings and bracket depth to find where each
// element ends, and hands the element's bytes to jansson.

typedef struct JsonList {
    FILE* f;
    const char* path;
    char block[READ_BLOCK];
    size_t block_n, block_at;
    long line;             // line of the next byte (1-based)
    char* elem;            // the current element's bytes
    size_t elem_n, elem_cap;
    long elem_line;        // line where the current element starts
    size_t index;          // elements returned so far
    int ended;             // the closing ']' was read
} JsonList;

// Next byte of the file, or -1 at the end.
static int list_getc(JsonList* l) {
    if (l->block_at == l->block_n) {
        l->block_n = fread(l->block, 1, sizeof l->block, l->f);
        l->block_at = 0;
        if (l->block_n == 0) return -1;
    }
    int c = (unsigned char)l->block[l->block_at++];
    if (c == '\n') l->line++;
    return c;
}

static int is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int list_open(JsonList* l, const char* path, Error* e) {
    memset(l, 0, sizeof *l);
    l->path = path;
    l->line = 1;
    struct stat st;
    if (stat(path, &st) != 0) return errorf(e, "%s: cannot open the LLaVA JSON list: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return errorf(e, "%s: not a regular file (give the LLaVA JSON list)", path);
    l->f = fopen(path, "rb");
    if (!l->f) return errorf(e, "%s: cannot open the LLaVA JSON list: %s", path, strerror(errno));
    int c = list_getc(l);
    if (c == 0xEF && list_getc(l) == 0xBB && list_getc(l) == 0xBF) c = list_getc(l);   // UTF-8 byte order mark
    while (is_space(c)) c = list_getc(l);
    if (c != '[') {
        fclose(l->f);
        l->f = NULL;
        return errorf(e, "%s:%ld: not a JSON list (a LLaVA file is [ {\"id\": ..., \"conversations\": [...]}, ... ])",
                      path, l->line);
    }
    return 0;
}

static void list_close(JsonList* l) {
    if (l->f) fclose(l->f);
    free(l->elem);
    l->f = NULL;
    l->elem = NULL;
}

static void elem_push(JsonList* l, int c) {
    if (l->elem_n + 1 >= l->elem_cap) {
        l->elem_cap = l->elem_cap ? l->elem_cap * 2 : 4096;
        l->elem = xrealloc(l->elem, l->elem_cap);
    }
    l->elem[l->elem_n++] = (char)c;
}

static int only_space(const char* s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_space((unsigned char)s[i])) return 0;
    return 1;
}

// After the closing ']' only white space may follow.
static int list_check_tail(JsonList* l, Error* e) {
    int c;
    while ((c = list_getc(l)) != -1)
        if (!is_space(c)) return errorf(e, "%s:%ld: text after the end of the JSON list", l->path, l->line);
    return 0;
}

// Reads the next element's bytes into l->elem. Returns 1 (an element), 0 (the list ended) or -1.
static int list_next(JsonList* l, Error* e) {
    if (l->ended) return 0;
    l->elem_n = 0;
    l->elem_line = l->line;
    int depth = 0, in_string = 0, escaped = 0, c;
    while ((c = list_getc(l)) != -1) {
        if (in_string) {
            if (escaped) escaped = 0;
            else if (c == '\\') escaped = 1;
            else if (c == '"') in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            depth++;
        } else if ((c == ',' || c == ']') && depth == 0) {
            l->ended = c == ']';
            break;
        } else if (c == ']' || c == '}') {
            depth--;
        }
        elem_push(l, c);
        if (l->elem_n > MAX_ELEMENT_BYTES)
            return errorf(e, "%s: element %zu (line %ld) is larger than %d MB: is the file one JSON list?", l->path,
                          l->index, l->elem_line, MAX_ELEMENT_BYTES >> 20);
    }
    if (c == -1) return errorf(e, "%s:%ld: the JSON list is cut short (no closing ']')", l->path, l->line);
    if (l->ended && l->index == 0 && only_space(l->elem, l->elem_n)) return list_check_tail(l, e) == 0 ? 0 : -1;
    if (l->ended && list_check_tail(l, e) != 0) return -1;
    l->index++;
    return 1;
}

// ---------------------------------------------------------------------------------------------------- one sample

typedef struct Llava {
    ConvertRun run;
    const char* json_path;
    char* image_dir;     // owned
} Llava;

static char* sample_key_of(const json_t* obj, int64_t index) {
    const json_t* id = json_object_get(obj, "id");
    char buf[64];
    if (json_is_string(id)) return xstrdup(json_string_value(id));
    if (json_is_integer(id)) snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(id));
    else snprintf(buf, sizeof buf, "%09lld", (long long)index);
    return xstrdup(buf);
}

static char* image_path(const Llava* c, const char* rel) {
    if (rel[0] == '/') return xstrdup(rel);
    size_t n = strlen(c->image_dir) + strlen(rel) + 2;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/%s", c->image_dir, rel);
    return p;
}

// Reads image `rel` of the sample into media item m.
static int load_image(Llava* c, const char* rel, const char* what, MediaItem* m, Error* e) {
    char* path = image_path(c, rel);
    size_t n;
    Error inner;
    uint8_t* bytes = convert_read_file(path, &n, &inner);
    int rc = bytes ? convert_image_item(bytes, n, c->run.o->image_tokens, path, m, &inner) : -1;
    if (rc != 0) errorf(e, "%s: image \"%s\": %s", what, rel, inner.msg);
    free(path);
    return rc;
}

// "image": "a.jpg" or ["a.jpg", "b.jpg"] -> s->media.
static int load_images(Llava* c, const json_t* obj, Sample* s, const char* what, Error* e) {
    const json_t* img = json_object_get(obj, "image");
    if (!img || json_is_null(img)) return 0;
    size_t n = json_is_array(img) ? json_array_size(img) : 1;
    if (!json_is_string(img) && !json_is_array(img))
        return errorf(e, "%s: \"image\" must be a path or a list of paths", what);
    if (n > MAX_IMAGES) return errorf(e, "%s: %zu images (at most %d per sample)", what, n, (int)MAX_IMAGES);
    s->media = xcalloc(n ? n : 1, sizeof(MediaItem));
    for (size_t i = 0; i < n; i++) {
        const json_t* one = json_is_array(img) ? json_array_get(img, i) : img;
        if (!json_is_string(one)) return errorf(e, "%s: \"image\"[%zu] is not a path", what, i);
        if (load_image(c, json_string_value(one), what, &s->media[i], e) != 0) return -1;
        s->n_media = (int)i + 1;
    }
    return 0;
}

static int build_sample(Llava* c, const json_t* obj, Sample* s, const char* what, Error* e) {
    if (!json_is_object(obj)) return errorf(e, "%s: the element is not an object", what);
    if (load_images(c, obj, s, what, e) != 0) return -1;
    ChatTurn* turns;
    int n_turns;
    if (convert_turns_from_json(json_object_get(obj, "conversations"), &turns, &n_turns, what, e) != 0) return -1;
    int rc = chat_build(c->run.tok, turns, n_turns, s, what, e);
    free(turns);
    return rc;
}

// One element: every rank registers its key; the owner converts it. Returns 0 or -1 (the run must stop).
static int convert_element(Llava* c, const JsonList* l, Error* e) {
    int64_t index = convert_next_index(&c->run);
    int owner = convert_owns(&c->run, index);
    json_error_t jerr;
    Error bad;
    json_t* obj = json_loadb(l->elem, l->elem_n, JSON_DECODE_ANY, &jerr);
    if (!obj) {
        if (!owner) return 0;
        long line = l->elem_line + (jerr.line > 0 ? jerr.line - 1 : 0);
        errorf(&bad, "%s: element %zu (line %ld): malformed JSON: %s", c->json_path, l->index - 1, line, jerr.text);
        return convert_bad(&c->run, &bad, e);
    }
    char* raw_key = sample_key_of(obj, index);
    char what[512];
    snprintf(what, sizeof what, "%s: sample '%.200s'", c->json_path, raw_key);
    Sample s = {0};
    s.key = convert_unique_key(&c->run, raw_key, index, what, &bad);
    free(raw_key);
    int rc = 0;
    if (owner && !s.key) rc = convert_bad(&c->run, &bad, e);
    else if (owner && build_sample(c, obj, &s, what, &bad) != 0) rc = convert_bad(&c->run, &bad, e);
    else if (owner) rc = convert_write(&c->run, &s, e);
    sample_free(&s);
    json_decref(obj);
    return rc;
}

static char* dir_of(const char* path) {
    char* copy = xstrdup(path);
    char* d = xstrdup(dirname(copy));
    free(copy);
    return d;
}

int convert_llava_json(const char* json_path, const char* image_dir, const ConvertOptions* o, Error* e) {
    Llava c;
    JsonList l;
    if (list_open(&l, json_path, e) != 0) return -1;
    if (convert_begin(&c.run, o, "llava-json", json_path, e) != 0) {
        list_close(&l);
        return -1;
    }
    c.json_path = json_path;
    c.image_dir = image_dir ? xstrdup(image_dir) : dir_of(json_path);
    int rc = 0, more;
    while (rc == 0 && (more = list_next(&l, e)) != 0) rc = more < 0 ? -1 : convert_element(&c, &l, e);
    list_close(&l);
    free(c.image_dir);
    return convert_end(&c.run, rc, e);
}
