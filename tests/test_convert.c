// test_convert.c — the dataset converters on small real fixtures made here: LLaVA JSON with PNG / JPEG images
// of the handwritten digits, WebDataset tars written with libarchive (images, captions, conversations, WAV and
// FLAC audio), a LibriSpeech-style folder, JSONL text and binidx. Each conversion is read back with the shard
// reader and checked: decoded tokens == the templated text, loss mask == exactly the assistant answers and
// their closing \x17, media bytes == the source files, resampled audio length and a 440 Hz tone's frequency,
// placeholders == media. Also: brace expansion, determinism (byte-identical shards), shard rolling, parallel
// conversion over ranks (disjoint and complete), and every bad input as a one-line error naming the file and
// the sample (or, with --skip-bad, a counted skip).
#include <archive.h>
#include <archive_entry.h>
#include <ftw.h>
#include <math.h>
#include <sndfile.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets/audio.h"
#include "datasets/chat_template.h"
#include "datasets/convert.h"
#include "datasets/data_tools.h"
#include "datasets/image.h"
#include "datasets/shard.h"
#include "datasets/tokenizer.h"
#include "tests/testutil.h"

static char g_dir[64];
static int g_fail = 0;

enum { IMAGE_TOKENS = 4, N_DIGITS = 6 };

// ---------------------------------------------------------------------------------------------------- files

static const char* tmp(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static const char* tmp(const char* fmt, ...) {
    static char buf[8][1024];
    static int slot = 0;
    slot = (slot + 1) % 8;
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", g_dir, rel);
    return buf[slot];
}

static void write_bytes(const char* path, const void* data, size_t n) {
    char* dir = xstrdup(path);
    *strrchr(dir, '/') = 0;
    Error e;
    if (mkdir_p(dir, &e) != 0) fatal("%s", e.msg);
    free(dir);
    FILE* f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) fatal("cannot write test fixture %s", path);
    fclose(f);
}

static void write_text(const char* path, const char* text) { write_bytes(path, text, strlen(text)); }

static uint8_t* slurp(const char* path, size_t* n) {
    Error e;
    char* b = read_file(path, n, &e);
    if (!b) fatal("%s", e.msg);
    return (uint8_t*)b;
}

static int remove_one(const char* path, const struct stat* st, int flag, struct FTW* ftw) { return remove(path); }
static void remove_tree(const char* dir) { nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS); }

// ---------------------------------------------------------------------------------------------------- fixtures

typedef struct Digit {
    uint8_t pixels[64];   // (8, 8) grey, 0..255
    int label;
} Digit;

static Digit g_digits[N_DIGITS];

// The first N_DIGITS rows of datasets/demo/digits.csv.gz (64 values 0..16, then the label).
static void load_digits(void) {
    gzFile f = gzopen(src_path("datasets/demo/digits.csv.gz"), "rb");
    if (!f) fatal("cannot open datasets/demo/digits.csv.gz");
    char line[1024];
    for (int i = 0; i < N_DIGITS; i++) {
        if (!gzgets(f, line, sizeof line)) fatal("digits.csv.gz: too short");
        char* p = line;
        for (int k = 0; k < 65; k++) {
            long v = strtol(p, &p, 10);
            if (*p == ',') p++;
            if (k < 64) g_digits[i].pixels[k] = (uint8_t)(v * 255 / 16);
            else g_digits[i].label = (int)v;
        }
    }
    gzclose(f);
}

static void write_digit_png(int i, const char* path) {
    uint8_t* png;
    size_t n;
    Error e;
    if (image_encode_png(g_digits[i].pixels, 8, 8, 1, &png, &n, &e) != 0) fatal("%s", e.msg);
    write_bytes(path, png, n);
    free(png);
}

// The digit upscaled to 32x32 RGB (nearest), as a JPEG.
static void write_digit_jpeg(int i, const char* path) {
    uint8_t rgb[32 * 32 * 3];
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int c = 0; c < 3; c++) rgb[(y * 32 + x) * 3 + c] = g_digits[i].pixels[(y / 4) * 8 + x / 4];
    tjhandle h = tjInitCompress();
    unsigned char* jpg = NULL;
    unsigned long n = 0;
    if (!h || tjCompress2(h, rgb, 32, 0, 32, TJPF_RGB, &jpg, &n, TJSAMP_444, 95, 0) != 0) fatal("tjCompress2 failed");
    write_bytes(path, jpg, n);
    tjFree(jpg);
    tjDestroy(h);
}

static short tone_sample(int rate, double freq, sf_count_t i) {
    return (short)lrint(12000.0 * sin(2 * M_PI * freq * (double)i / rate));
}

// A sine tone (interleaved channels, the same in each) written by libsndfile.
static void write_tone(const char* path, int format, int rate, int channels, double seconds, double freq) {
    sf_count_t frames = (sf_count_t)(seconds * rate);
    short* x = xmalloc((size_t)frames * (size_t)channels * sizeof(short));
    for (sf_count_t i = 0; i < frames; i++)
        for (int c = 0; c < channels; c++) x[i * channels + c] = tone_sample(rate, freq, i);
    SF_INFO info = {.samplerate = rate, .channels = channels, .format = format};
    SNDFILE* f = sf_open(path, SFM_WRITE, &info);
    if (!f || sf_writef_short(f, x, frames) != frames) fatal("cannot write %s: %s", path, sf_strerror(f));
    sf_close(f);
    free(x);
}

typedef struct TarMember {
    const char* name;
    const uint8_t* bytes;
    size_t n;
} TarMember;

static void write_tar_filtered(const char* path, const TarMember* m, int n, int gzip) {
    struct archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (gzip) archive_write_add_filter_gzip(a);
    if (archive_write_open_filename(a, path) != ARCHIVE_OK) fatal("cannot write %s", path);
    for (int i = 0; i < n; i++) {
        struct archive_entry* ent = archive_entry_new();
        archive_entry_set_pathname(ent, m[i].name);
        archive_entry_set_size(ent, (la_int64_t)m[i].n);
        archive_entry_set_filetype(ent, AE_IFREG);
        archive_entry_set_perm(ent, 0644);
        archive_entry_set_mtime(ent, 1700000000, 0);
        archive_write_header(a, ent);
        archive_write_data(a, m[i].bytes, m[i].n);
        archive_entry_free(ent);
    }
    archive_write_close(a);
    archive_write_free(a);
}

static void write_tar(const char* path, const TarMember* m, int n) { write_tar_filtered(path, m, n, 0); }

// ---------------------------------------------------------------------------------------------------- reading back

typedef struct Dataset {
    Sample* s;
    int n;
    int n_shards;
    int64_t manifest_samples;
} Dataset;

static int read_dataset(const char* dir, Dataset* d) {
    memset(d, 0, sizeof *d);
    Manifest m;
    Error e;
    if (manifest_read(dir, &m, &e) != 0) {
        printf("  cannot read %s: %s\n", dir, e.msg);
        return -1;
    }
    d->n_shards = m.n_shards;
    d->manifest_samples = m.n_samples;
    d->s = xcalloc((size_t)m.n_samples + 1, sizeof(Sample));
    for (int k = 0; k < m.n_shards; k++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, m.shards[k].file);
        ShardReader* r = shard_reader_open(path, &e);
        if (!r) fatal("%s", e.msg);
        for (int64_t i = 0; i < shard_reader_count(r) && d->n < m.n_samples; i++)
            if (shard_reader_get(r, i, &d->s[d->n++], &e) != 0) fatal("%s", e.msg);
        shard_reader_close(r);
    }
    manifest_free(&m);
    return 0;
}

static void free_dataset(Dataset* d) {
    for (int i = 0; i < d->n; i++) sample_free(&d->s[i]);
    free(d->s);
}

static const Sample* find_sample(const Dataset* d, const char* key) {
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->s[i].key, key) == 0) return &d->s[i];
    return NULL;
}

static char* decode_range(const Tokenizer* tok, const uint32_t* ids, size_t n) {
    int32_t* tmp_ids = xmalloc((n + 1) * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) tmp_ids[i] = (int32_t)ids[i];
    char* out;
    size_t len;
    Error e;
    if (tokenizer_decode(tok, tmp_ids, n, &out, &len, &e) != 0) fatal("%s", e.msg);
    free(tmp_ids);
    return out;
}

static void append(char** s, size_t* n, const char* more) {
    size_t m = strlen(more);
    *s = xrealloc(*s, *n + m + 1);
    memcpy(*s + *n, more, m + 1);
    *n += m;
}

// The sample's text with each media item's placeholder run written back as its tag.
static char* sample_text(const Tokenizer* tok, const Sample* s) {
    char* out = xstrdup("");
    size_t n = 0, at = 0;
    for (int k = 0; k <= s->n_media; k++) {
        size_t end = k < s->n_media ? (size_t)s->media[k].placeholder_pos : s->n_tokens;
        char* piece = decode_range(tok, s->tokens + at, end - at);
        append(&out, &n, piece);
        free(piece);
        if (k == s->n_media) break;
        append(&out, &n, s->media[k].kind == MEDIA_AUDIO_PCM ? "<audio>" : "<image>");
        at = end + (size_t)s->media[k].n_placeholder;
    }
    return out;
}

// The maximal runs of trained tokens, decoded and joined with '|'.
static char* trained_text(const Tokenizer* tok, const Sample* s) {
    char* out = xstrdup("");
    size_t n = 0;
    for (size_t i = 0; i < s->n_tokens;) {
        if (!s->loss_mask[i]) { i++; continue; }
        size_t j = i;
        while (j < s->n_tokens && s->loss_mask[j]) j++;
        char* piece = decode_range(tok, s->tokens + i, j - i);
        if (n) append(&out, &n, "|");
        append(&out, &n, piece);
        free(piece);
        i = j;
    }
    return out;
}

static int check_text(const char* label, const Tokenizer* tok, const Sample* s, const char* want_text,
                      const char* want_trained) {
    if (!s) return check_true(label, 0, "sample missing");
    char* text = sample_text(tok, s);
    char* trained = trained_text(tok, s);
    char detail[1024];
    snprintf(detail, sizeof detail, "text '%s' trained '%s'", text, trained);
    int f = check_true(label, strcmp(text, want_text) == 0 && strcmp(trained, want_trained) == 0, detail);
    printf("  %s: %zu tokens, trained '%s'\n", s->key, s->n_tokens, trained);
    free(text);
    free(trained);
    return f;
}

// Placeholders == media: every placeholder token lies in an item's range, ranges hold only their id.
static int count_placeholders(const Sample* s) {
    int n = 0;
    for (size_t i = 0; i < s->n_tokens; i++)
        n += s->tokens[i] == SHARD_PLACEHOLDER_IMAGE || s->tokens[i] == SHARD_PLACEHOLDER_AUDIO;
    return n;
}

static int check_image_item(const char* label, const Sample* s, const char* source_file) {
    if (!s || s->n_media != 1 || s->media[0].kind != MEDIA_IMAGE_ENCODED) return check_true(label, 0, "no image item");
    size_t n;
    uint8_t* want = slurp(source_file, &n);
    int same = s->media[0].n_bytes == n && memcmp(s->media[0].bytes, want, n) == 0;
    free(want);
    char detail[256];
    snprintf(detail, sizeof detail, "%zu bytes stored, %zu in the file; %d placeholders, want %d", s->media[0].n_bytes,
             n, count_placeholders(s), s->media[0].n_placeholder);
    return check_true(label, same && count_placeholders(s) == s->media[0].n_placeholder &&
                                 s->media[0].n_placeholder == IMAGE_TOKENS, detail);
}

// Output directories outlive tmp()'s rotating buffers.
static char* g_kept[64];
static int g_n_kept = 0;

static ConvertOptions options(const char* out) {
    if (g_n_kept == 64) fatal("test_convert: too many output directories");
    g_kept[g_n_kept] = xstrdup(out);
    ConvertOptions o = {.out_dir = g_kept[g_n_kept++], .split = "train", .compression = 4, .tokenizer = "bytes",
                        .image_tokens = IMAGE_TOKENS, .audio_tokens_per_s = 50, .rank = 0, .world = 1};
    return o;
}

// ---------------------------------------------------------------------------------------------------- the template

static void test_chat_template(void) {
    printf("\n== chat template\n");
    Tokenizer* tok = tokenizer_bytes();
    Sample s = {0};
    s.key = xstrdup("t");
    s.media = xcalloc(1, sizeof(MediaItem));
    s.n_media = 1;
    s.media[0] = (MediaItem){.kind = MEDIA_IMAGE_ENCODED, .n_placeholder = 3, .bytes = xmalloc(1), .n_bytes = 1};
    ChatTurn t[4] = {{CHAT_USER, "<image>\nWhat?", 13}, {CHAT_ASSISTANT, "Two.", 4}, {CHAT_USER, "Sure?", 5},
                     {CHAT_ASSISTANT, "Yes.", 4}};
    Error e;
    int rc = chat_build(tok, t, 4, &s, "t", &e);
    g_fail += check_true("chat_build succeeds", rc == 0, e.msg);
    if (rc == 0) {
        g_fail += check_text("template and mask", tok, &s, "\x16User: <image>\nWhat?\x17\x16" "Assistant: Two.\x17"
                             "\x16User: Sure?\x17\x16" "Assistant: Yes.\x17", " Two.\x17| Yes.\x17");
        g_fail += check_true("placeholders at the tag, loss 0", s.media[0].placeholder_pos == 7 &&
                             s.tokens[7] == SHARD_PLACEHOLDER_IMAGE && s.tokens[9] == SHARD_PLACEHOLDER_IMAGE &&
                             s.loss_mask[8] == 0 && s.tokens[10] == '\n', NULL);
        Error v;
        g_fail += check_true("sample_validate accepts it", sample_validate(&s, "t", &v) == 0, v.msg);
    }
    sample_free(&s);
    s.key = xstrdup("u");
    ChatTurn two_tags[2] = {{CHAT_USER, "<image><image>", 14}, {CHAT_ASSISTANT, "x", 1}};
    s.media = xcalloc(1, sizeof(MediaItem));
    s.n_media = 1;
    s.media[0] = (MediaItem){.kind = MEDIA_IMAGE_ENCODED, .n_placeholder = 3, .bytes = xmalloc(1), .n_bytes = 1};
    rc = chat_build(tok, two_tags, 2, &s, "x.json: sample 'u'", &e);
    g_fail += expect_reject("two <image> tags for one image", rc, &e, "sample 'u'", "<image>");
    ChatTurn no_tag[2] = {{CHAT_USER, "hi", 2}, {CHAT_ASSISTANT, "x", 1}};
    g_fail += expect_reject("an image without a tag", chat_build(tok, no_tag, 2, &s, "x.json: sample 'u'", &e), &e,
                            "sample 'u'", "0 <image>");
    ChatTurn only_user[1] = {{CHAT_USER, "<image>", 7}};
    g_fail += expect_reject("no assistant turn", chat_build(tok, only_user, 1, &s, "x.json: sample 'u'", &e), &e,
                            "sample 'u'", "assistant");
    sample_free(&s);
    tokenizer_free(tok);
}

// ---------------------------------------------------------------------------------------------------- LLaVA

static const char* LLAVA_JSON =
    "[\n"
    "  {\"id\": \"d0\", \"image\": \"digits/d0.png\", \"conversations\": [\n"
    "    {\"from\": \"human\", \"value\": \"<image>\\nWhat digit is this?\"},\n"
    "    {\"from\": \"gpt\", \"value\": \"It is 0.\"}]},\n"
    "  {\"id\": \"d1\", \"image\": \"digits/d1.jpg\", \"conversations\": [\n"
    "    {\"from\": \"human\", \"value\": \"What digit?\\n<image>\"},\n"
    "    {\"from\": \"gpt\", \"value\": \"1\"},\n"
    "    {\"from\": \"human\", \"value\": \"Is it even?\"},\n"
    "    {\"from\": \"gpt\", \"value\": \"No, 1 is odd.\"}]},\n"
    "  {\"id\": \"t0\", \"conversations\": [\n"
    "    {\"from\": \"human\", \"value\": \"Say hi.\"}, {\"from\": \"gpt\", \"value\": \"Hi!\"}]},\n"
    "  {\"id\": \"d0\", \"image\": \"digits/d2.png\", \"conversations\": [\n"
    "    {\"from\": \"human\", \"value\": \"<image>\"}, {\"from\": \"gpt\", \"value\": \"2\"}]}\n"
    "]\n";

static void make_llava_fixture(void) {
    write_digit_png(0, tmp("llava/img/digits/d0.png"));
    write_digit_jpeg(1, tmp("llava/img/digits/d1.jpg"));
    write_digit_png(2, tmp("llava/img/digits/d2.png"));
    write_text(tmp("llava/data.json"), LLAVA_JSON);
}

static void test_llava(void) {
    printf("\n== llava-json\n");
    make_llava_fixture();
    ConvertOptions o = options(tmp("out/llava"));
    Error e;
    int rc = convert_llava_json(tmp("llava/data.json"), tmp("llava/img"), &o, &e);
    g_fail += check_true("convert_llava_json succeeds", rc == 0, e.msg);
    Dataset d;
    if (rc != 0 || read_dataset(o.out_dir, &d) != 0) return;
    Tokenizer* tok = tokenizer_bytes();
    g_fail += check_true("4 samples in input order; the repeated id 'd0' became 'd0~3'",
                         d.n == 4 && !strcmp(d.s[0].key, "d0") && !strcmp(d.s[1].key, "d1") &&
                             !strcmp(d.s[2].key, "t0") && !strcmp(d.s[3].key, "d0~3"), NULL);
    g_fail += check_text("d0: one turn with the image first", tok, find_sample(&d, "d0"),
                         "\x16User: <image>\nWhat digit is this?\x17\x16" "Assistant: It is 0.\x17", " It is 0.\x17");
    g_fail += check_text("d1: two rounds, the image last in the first turn", tok, find_sample(&d, "d1"),
                         "\x16User: What digit?\n<image>\x17\x16" "Assistant: 1\x17\x16User: Is it even?\x17\x16"
                         "Assistant: No, 1 is odd.\x17", " 1\x17| No, 1 is odd.\x17");
    g_fail += check_text("t0: text only", tok, find_sample(&d, "t0"), "\x16User: Say hi.\x17\x16" "Assistant: Hi!\x17",
                         " Hi!\x17");
    g_fail += check_image_item("d0: PNG bytes identical to the file", find_sample(&d, "d0"),
                               tmp("llava/img/digits/d0.png"));
    g_fail += check_image_item("d1: JPEG bytes identical to the file", find_sample(&d, "d1"),
                               tmp("llava/img/digits/d1.jpg"));
    const Sample* t0 = find_sample(&d, "t0");
    g_fail += check_true("t0 has no media and no placeholder", t0 && t0->n_media == 0 && count_placeholders(t0) == 0,
                         NULL);
    free_dataset(&d);

    // the World tokenizer: same text, same trained spans
    ConvertOptions ow = options(tmp("out/llava-world"));
    ow.tokenizer = "world";
    rc = convert_llava_json(tmp("llava/data.json"), tmp("llava/img"), &ow, &e);
    g_fail += check_true("convert with the World tokenizer", rc == 0, e.msg);
    Tokenizer* world = tokenizer_from_spec("world", &e);
    if (rc == 0 && world && read_dataset(ow.out_dir, &d) == 0) {
        g_fail += check_text("World: d1 decodes to the template, answers trained", world, find_sample(&d, "d1"),
                             "\x16User: What digit?\n<image>\x17\x16" "Assistant: 1\x17\x16User: Is it even?\x17\x16"
                             "Assistant: No, 1 is odd.\x17", " 1\x17| No, 1 is odd.\x17");
        const Sample* s = find_sample(&d, "d0");
        g_fail += check_true("World: fewer tokens than bytes (real subwords)", s && s->n_tokens < 40 + IMAGE_TOKENS,
                             NULL);
        free_dataset(&d);
    }
    tokenizer_free(world);
    tokenizer_free(tok);
}

static void test_llava_errors(void) {
    printf("\n== llava-json: bad input\n");
    Error e;
    ConvertOptions o = options(tmp("out/llava-bad"));
    write_text(tmp("llava/missing.json"),
               "[{\"id\": \"m1\", \"image\": \"digits/nope.png\", \"conversations\": [{\"from\": \"human\", \"value\": "
               "\"<image>\"}, {\"from\": \"gpt\", \"value\": \"x\"}]}]");
    int rc = convert_llava_json(tmp("llava/missing.json"), tmp("llava/img"), &o, &e);
    g_fail += expect_reject("missing image file", rc, &e, "missing.json", "sample 'm1'");
    g_fail += check_true("  ... names the image", strstr(e.msg, "digits/nope.png") != NULL, e.msg);
    g_fail += check_true("  ... and leaves no manifest", access(tmp("out/llava-bad/manifest.json"), F_OK) != 0, NULL);

    write_text(tmp("llava/img/digits/garbage.png"), "\x89PNG\r\n\x1a\n this is not a PNG");
    write_text(tmp("llava/garbage.json"),
               "[{\"id\": \"g1\", \"image\": \"digits/garbage.png\", \"conversations\": [{\"from\": \"human\", "
               "\"value\": \"<image>\"}, {\"from\": \"gpt\", \"value\": \"x\"}]}]");
    rc = convert_llava_json(tmp("llava/garbage.json"), tmp("llava/img"), &o, &e);
    g_fail += expect_reject("undecodable image", rc, &e, "garbage.png", "sample 'g1'");

    write_text(tmp("llava/malformed.json"),
               "[{\"id\": \"a\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", "
               "\"value\": \"a\"}]},\n"
               " {\"id\": \"b\",\n  \"conversations\": [{\"from\": \"human\" \"value\": \"q\"}]}]");
    g_fail += expect_reject("malformed JSON element", convert_llava_json(tmp("llava/malformed.json"), NULL, &o, &e), &e,
                            "malformed.json", "element 1 (line 3)");

    write_text(tmp("llava/role.json"),
               "[{\"id\": \"r\", \"conversations\": [{\"from\": \"robot\", \"value\": \"q\"}]}]");
    g_fail += expect_reject("unknown role", convert_llava_json(tmp("llava/role.json"), NULL, &o, &e), &e, "role.json",
                            "robot");
    write_text(tmp("llava/object.json"), "{\"id\": \"x\"}");
    g_fail += expect_reject("not a list", convert_llava_json(tmp("llava/object.json"), NULL, &o, &e), &e, "object.json",
                            "not a JSON list");
    write_text(tmp("llava/cut.json"), "[{\"id\": \"x\", \"conversations\": [");
    g_fail += expect_reject("cut short", convert_llava_json(tmp("llava/cut.json"), NULL, &o, &e), &e, "cut.json",
                            "cut short");
    write_text(tmp("llava/empty.json"), " [ ] ");
    g_fail += expect_reject("empty list", convert_llava_json(tmp("llava/empty.json"), NULL, &o, &e), &e, "empty.json",
                            "no sample");
    g_fail += expect_reject("missing JSON file", convert_llava_json(tmp("llava/none.json"), NULL, &o, &e), &e,
                            "none.json", NULL);

    // --skip-bad: the 3 good samples are written, the 3 bad ones counted
    char* mixed = xmalloc(8192);
    snprintf(mixed, 8192, "%.*s,\n%s,\n%s,\n%s]\n", (int)(strrchr(LLAVA_JSON, ']') - LLAVA_JSON - 1), LLAVA_JSON,
             "{\"id\": \"m1\", \"image\": \"digits/nope.png\", \"conversations\": [{\"from\": \"human\", \"value\": "
             "\"<image>\"}, {\"from\": \"gpt\", \"value\": \"x\"}]}",
             "{\"id\": \"g1\", \"image\": \"digits/garbage.png\", \"conversations\": []}", "{\"id\": oops}");
    write_text(tmp("llava/mixed.json"), mixed);
    free(mixed);
    ConvertOptions skip = options(tmp("out/llava-skip"));
    skip.skip_bad = 1;
    rc = convert_llava_json(tmp("llava/mixed.json"), tmp("llava/img"), &skip, &e);
    Dataset d;
    if (rc == 0 && read_dataset(skip.out_dir, &d) == 0) {
        g_fail += check_true("--skip-bad: 4 good samples written, 3 bad skipped", d.n == 4, NULL);
        free_dataset(&d);
    } else {
        g_fail += check_true("--skip-bad conversion succeeds", 0, e.msg);
    }
}

// ---------------------------------------------------------------------------------------------------- WebDataset

static void test_brace_expansion(void) {
    printf("\n== brace expansion\n");
    struct { const char* pattern; const char* want; } cases[] = {
        {"a-{000..002}.tar", "a-000.tar a-001.tar a-002.tar"},
        {"{x,y}-{1..2}.tar", "x-1.tar x-2.tar y-1.tar y-2.tar"},
        {"s{10..8}", "s10 s9 s8"},
        {"plain.tar", "plain.tar"},
        {"lit{o}-{1..2}", "lit{o}-1 lit{o}-2"},
        {"{8..10}", "8 9 10"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char** p;
        size_t n;
        Error e;
        char got[256] = "";
        if (convert_brace_expand(cases[c].pattern, &p, &n, &e) != 0) snprintf(got, sizeof got, "error: %.200s", e.msg);
        else {
            for (size_t i = 0; i < n; i++) {
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? " " : "", p[i]);
                free(p[i]);
            }
            free(p);
        }
        char label[128];
        snprintf(label, sizeof label, "expand '%s'", cases[c].pattern);
        g_fail += check_true(label, strcmp(got, cases[c].want) == 0, got);
    }
    char** p;
    size_t n;
    Error e;
    g_fail += expect_reject("unclosed brace", convert_brace_expand("a{1..2", &p, &n, &e), &e, "a{1..2", "no matching");
    g_fail += expect_reject("nested braces", convert_brace_expand("a{{1,2}}", &p, &n, &e), &e, "a{{1,2}}", "nested");
}

static uint8_t* g_file[8];
static size_t g_file_n[8];

static void load_fixture(int slot, const char* path) { g_file[slot] = slurp(path, &g_file_n[slot]); }

static const char* WDS_JSON_IMAGE =
    "{\"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nWhich digit?\"}, "
    "{\"from\": \"gpt\", \"value\": \"4\"}]}";
static const char* WDS_JSON_AUDIO =
    "{\"conversations\": [{\"from\": \"human\", \"value\": \"Transcribe: <audio>\"}, "
    "{\"from\": \"gpt\", \"value\": \"a tone\"}]}";

static void make_wds_fixture(void) {
    write_digit_png(3, tmp("wds/src/s0.png"));
    write_digit_jpeg(4, tmp("wds/src/s1.jpg"));
    write_tone(tmp("wds/src/a0.wav"), SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, 0.5, 440);
    write_tone(tmp("wds/src/a1.flac"), SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 44100, 2, 0.75, 440);
    load_fixture(0, tmp("wds/src/s0.png"));
    load_fixture(1, tmp("wds/src/s1.jpg"));
    load_fixture(2, tmp("wds/src/a0.wav"));
    load_fixture(3, tmp("wds/src/a1.flac"));
    TarMember t0[] = {
        {"s0.png", g_file[0], g_file_n[0]},
        {"s0.txt", (const uint8_t*)"a handwritten three\n", 20},
        {"./sub/s1.jpg", g_file[1], g_file_n[1]},
        {"./sub/s1.json", (const uint8_t*)WDS_JSON_IMAGE, strlen(WDS_JSON_IMAGE)},
        {"s2.txt", (const uint8_t*)"plain text document", 19},
        {"s2.cls", (const uint8_t*)"7", 1},
    };
    write_tar(tmp("wds/shard-000000.tar"), t0, 6);
    TarMember t1[] = {
        {"a0.wav", g_file[2], g_file_n[2]},
        {"a0.txt", (const uint8_t*)"A TONE", 6},
        {"a1.flac", g_file[3], g_file_n[3]},
        {"a1.json", (const uint8_t*)WDS_JSON_AUDIO, strlen(WDS_JSON_AUDIO)},
    };
    write_tar(tmp("wds/shard-000001.tar"), t1, 4);
}

// Frequency of a tone from its zero crossings (rising and falling): half-periods between the first and the
// last crossing / the time between them.
static double tone_frequency(const int16_t* x, size_t n) {
    size_t crossings = 0, first = 0, last = 0;
    for (size_t i = 1; i < n; i++) {
        if ((x[i - 1] < 0) == (x[i] < 0)) continue;
        if (crossings++ == 0) first = i;
        last = i;
    }
    if (crossings < 2) return 0;
    return (double)(crossings - 1) / 2.0 / ((double)(last - first) / AUDIO_SAMPLE_RATE);
}

static int check_audio(const char* label, const Sample* s, size_t want_n, const int16_t* want_pcm) {
    if (!s || s->n_media != 1 || s->media[0].kind != MEDIA_AUDIO_PCM) return check_true(label, 0, "no audio item");
    const MediaItem* m = &s->media[0];
    double f = tone_frequency(m->pcm, m->n_samples);
    long dn = (long)m->n_samples - (long)want_n;
    int want_ph = (int)((m->n_samples * 50 + AUDIO_SAMPLE_RATE - 1) / AUDIO_SAMPLE_RATE);
    char detail[256];
    snprintf(detail, sizeof detail, "%zu samples (want %zu +- 1), %.2f Hz (want 440 +- 1), %d placeholders (want %d "
             "= %d in the tokens)", m->n_samples, want_n, f, m->n_placeholder, want_ph, count_placeholders(s));
    printf("  %s: %s\n", s->key, detail);
    int ok = labs(dn) <= 1 && fabs(f - 440.0) <= 1.0 && m->n_placeholder == want_ph && count_placeholders(s) == want_ph;
    if (want_pcm) ok = ok && dn == 0 && memcmp(m->pcm, want_pcm, want_n * sizeof(int16_t)) == 0;
    return check_true(label, ok, detail);
}

static void test_webdataset(void) {
    printf("\n== webdataset\n");
    make_wds_fixture();
    ConvertOptions o = options(tmp("out/wds"));
    Error e;
    int rc = convert_webdataset(tmp("wds/shard-{000000..000001}.tar"), &o, &e);
    g_fail += check_true("convert_webdataset succeeds", rc == 0, e.msg);
    Dataset d;
    if (rc != 0 || read_dataset(o.out_dir, &d) != 0) return;
    Tokenizer* tok = tokenizer_bytes();
    g_fail += check_true("5 samples, keys in tar order ('./' dropped, directories kept)",
                         d.n == 5 && !strcmp(d.s[0].key, "s0") && !strcmp(d.s[1].key, "sub/s1") &&
                             !strcmp(d.s[2].key, "s2") && !strcmp(d.s[3].key, "a0") && !strcmp(d.s[4].key, "a1"), NULL);
    g_fail += check_text("image + txt = caption", tok, find_sample(&d, "s0"),
                         "\x16User: <image>\x17\x16" "Assistant: a handwritten three\x17", " a handwritten three\x17");
    g_fail += check_text("image + json conversations", tok, find_sample(&d, "sub/s1"),
                         "\x16User: <image>\nWhich digit?\x17\x16" "Assistant: 4\x17", " 4\x17");
    g_fail += check_text("txt alone = document, every token trained", tok, find_sample(&d, "s2"),
                         "plain text document", "plain text document");
    g_fail += check_text("audio + txt = transcription", tok, find_sample(&d, "a0"),
                         "\x16User: <audio>\x17\x16" "Assistant: A TONE\x17", " A TONE\x17");
    g_fail += check_text("audio + json conversations", tok, find_sample(&d, "a1"),
                         "\x16User: Transcribe: <audio>\x17\x16" "Assistant: a tone\x17", " a tone\x17");
    g_fail += check_image_item("tar PNG bytes identical", find_sample(&d, "s0"), tmp("wds/src/s0.png"));
    g_fail += check_image_item("tar JPEG bytes identical", find_sample(&d, "sub/s1"), tmp("wds/src/s1.jpg"));
    int16_t want[8000];
    for (int i = 0; i < 8000; i++) want[i] = tone_sample(16000, 440, i);
    g_fail += check_audio("16 kHz mono WAV stored sample for sample", find_sample(&d, "a0"), 8000, want);
    g_fail += check_audio("44.1 kHz stereo FLAC -> 16 kHz mono, 440 Hz kept", find_sample(&d, "a1"),
                          (size_t)lround(0.75 * 44100 * 16000.0 / 44100), NULL);
    free_dataset(&d);
    TarMember gz[] = {{"z.png", g_file[0], g_file_n[0]}, {"z.txt", (const uint8_t*)"zipped", 6}};
    write_tar_filtered(tmp("wds/zipped.tar.gz"), gz, 2, 1);
    ConvertOptions oz = options(tmp("out/wds-gz"));
    rc = convert_webdataset(tmp("wds/zipped.tar.gz"), &oz, &e);
    if (rc == 0 && read_dataset(oz.out_dir, &d) == 0) {
        g_fail += check_text("a gzip'ed tar", tok, find_sample(&d, "z"), "\x16User: <image>\x17\x16" "Assistant: zipped\x17",
                             " zipped\x17");
        free_dataset(&d);
    } else {
        g_fail += check_true("a gzip'ed tar converts", 0, e.msg);
    }
    tokenizer_free(tok);
}

static void test_webdataset_errors(void) {
    printf("\n== webdataset: bad input\n");
    Error e;
    ConvertOptions o = options(tmp("out/wds-bad"));
    TarMember split[] = {{"k1.txt", (const uint8_t*)"one", 3}, {"k2.txt", (const uint8_t*)"two", 3},
                         {"k1.png", g_file[0], g_file_n[0]}};
    write_tar(tmp("wds/split.tar"), split, 3);
    g_fail += expect_reject("members of a sample not contiguous", convert_webdataset(tmp("wds/split.tar"), &o, &e), &e,
                            "split.tar", "sample 'k1'");
    g_fail += check_true("  ... says so", strstr(e.msg, "not contiguous") != NULL, e.msg);
    TarMember badimg[] = {{"b.jpg", (const uint8_t*)"\xff\xd8\xff garbage", 12}, {"b.txt", (const uint8_t*)"x", 1}};
    write_tar(tmp("wds/badimg.tar"), badimg, 2);
    g_fail += expect_reject("undecodable image in a tar", convert_webdataset(tmp("wds/badimg.tar"), &o, &e), &e,
                            "badimg.tar", "sample 'b'");
    TarMember badjson[] = {{"j.png", g_file[0], g_file_n[0]}, {"j.json", (const uint8_t*)"{\"conversations\": [", 19}};
    write_tar(tmp("wds/badjson.tar"), badjson, 2);
    g_fail += expect_reject("malformed json member", convert_webdataset(tmp("wds/badjson.tar"), &o, &e), &e,
                            "badjson.tar", "sample 'j'");
    TarMember badaudio[] = {{"w.wav", (const uint8_t*)"RIFF....WAVEjunk", 16}, {"w.txt", (const uint8_t*)"x", 1}};
    write_tar(tmp("wds/badaudio.tar"), badaudio, 2);
    g_fail += expect_reject("undecodable audio member", convert_webdataset(tmp("wds/badaudio.tar"), &o, &e), &e,
                            "badaudio.tar", "sample 'w'");
    TarMember notext[] = {{"n.png", g_file[0], g_file_n[0]}};
    write_tar(tmp("wds/notext.tar"), notext, 1);
    g_fail += expect_reject("an image with no text", convert_webdataset(tmp("wds/notext.tar"), &o, &e), &e,
                            "notext.tar", "sample 'n'");
    uint8_t junk[3000];
    for (int i = 0; i < 3000; i++) junk[i] = (uint8_t)(i * 7919 >> 3);
    write_bytes(tmp("wds/corrupt.tar"), junk, sizeof junk);
    g_fail += expect_reject("corrupt tar", convert_webdataset(tmp("wds/corrupt.tar"), &o, &e), &e, "corrupt.tar", NULL);
    size_t n_tar;
    uint8_t* whole = slurp(tmp("wds/shard-000000.tar"), &n_tar);
    write_bytes(tmp("wds/truncated.tar"), whole, n_tar / 2 + 100);
    free(whole);
    g_fail += expect_reject("truncated tar", convert_webdataset(tmp("wds/truncated.tar"), &o, &e), &e, "truncated.tar",
                            NULL);
    g_fail += expect_reject("missing tar", convert_webdataset(tmp("wds/none-{0..1}.tar"), &o, &e), &e, "none-0.tar",
                            NULL);

    TarMember mixed[] = {{"g.txt", (const uint8_t*)"good", 4}, {"b.jpg", (const uint8_t*)"\xff\xd8 no", 5},
                         {"b.txt", (const uint8_t*)"x", 1}, {"h.txt", (const uint8_t*)"fine", 4},
                         {"g.png", g_file[0], g_file_n[0]}};
    write_tar(tmp("wds/mixed.tar"), mixed, 5);
    ConvertOptions skip = options(tmp("out/wds-skip"));
    skip.skip_bad = 1;
    int rc = convert_webdataset(tmp("wds/mixed.tar"), &skip, &e);
    Dataset d;
    if (rc == 0 && read_dataset(skip.out_dir, &d) == 0) {
        g_fail += check_true("--skip-bad: 2 good samples kept (g, h), 2 bad skipped (b, non-contiguous g)",
                             d.n == 2 && !strcmp(d.s[0].key, "g") && !strcmp(d.s[1].key, "h"), NULL);
        free_dataset(&d);
    } else {
        g_fail += check_true("--skip-bad conversion succeeds", 0, e.msg);
    }
}

// ---------------------------------------------------------------------------------------------------- audio folder

static void make_librispeech_fixture(void) {
    write_text(tmp("libri/19/198/19-198.trans.txt"), "19-198-0001 SECOND LINE\n19-198-0000 HELLO WORLD\n");
    write_tone(tmp("libri/19/198/19-198-0000.flac"), SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16000, 1, 0.4, 440);
    write_tone(tmp("libri/19/198/19-198-0001.wav"), SF_FORMAT_WAV | SF_FORMAT_PCM_16, 48000, 2, 0.3, 440);
    write_text(tmp("libri/103/1240/103-1240.trans.txt"), "103-1240-0000 CHAPTER ONE\r\n\r\n");
    write_tone(tmp("libri/103/1240/103-1240-0000.flac"), SF_FORMAT_FLAC | SF_FORMAT_PCM_24, 22050, 1, 0.25, 440);
    write_text(tmp("libri/README.TXT"), "not a transcript");
}

static void test_audio_folder(void) {
    printf("\n== audio-folder (LibriSpeech layout)\n");
    make_librispeech_fixture();
    ConvertOptions o = options(tmp("out/libri"));
    Error e;
    int rc = convert_audio_folder(tmp("libri"), &o, &e);
    g_fail += check_true("convert_audio_folder succeeds", rc == 0, e.msg);
    Dataset d;
    if (rc != 0 || read_dataset(o.out_dir, &d) != 0) return;
    Tokenizer* tok = tokenizer_bytes();
    g_fail += check_true("3 samples in sorted walk order (103 < 19 byte-wise), lines in file order",
                         d.n == 3 && !strcmp(d.s[0].key, "103-1240-0000") && !strcmp(d.s[1].key, "19-198-0001") &&
                             !strcmp(d.s[2].key, "19-198-0000"), NULL);
    g_fail += check_text("transcript is the answer to <audio>", tok, find_sample(&d, "19-198-0000"),
                         "\x16User: <audio>\x17\x16" "Assistant: HELLO WORLD\x17", " HELLO WORLD\x17");
    g_fail += check_text("CRLF transcript lines", tok, find_sample(&d, "103-1240-0000"),
                         "\x16User: <audio>\x17\x16" "Assistant: CHAPTER ONE\x17", " CHAPTER ONE\x17");
    int16_t want[6400];
    for (int i = 0; i < 6400; i++) want[i] = tone_sample(16000, 440, i);
    g_fail += check_audio("16 kHz FLAC kept sample for sample", find_sample(&d, "19-198-0000"), 6400, want);
    g_fail += check_audio("48 kHz stereo WAV -> 16 kHz mono", find_sample(&d, "19-198-0001"), 4800, NULL);
    g_fail += check_audio("22.05 kHz 24-bit FLAC -> 16 kHz", find_sample(&d, "103-1240-0000"),
                          (size_t)lround((double)(sf_count_t)(0.25 * 22050) * 16000.0 / 22050), NULL);
    free_dataset(&d);
    tokenizer_free(tok);

    printf("-- bad input\n");
    ConvertOptions bad = options(tmp("out/libri-bad"));
    write_text(tmp("libri-missing/1/1/1-1.trans.txt"), "1-1-0000 HAS AUDIO\n1-1-0001 HAS NONE\n");
    write_tone(tmp("libri-missing/1/1/1-1-0000.flac"), SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16000, 1, 0.1, 440);
    rc = convert_audio_folder(tmp("libri-missing"), &bad, &e);
    g_fail += expect_reject("transcript line without its audio", rc, &e, "1-1.trans.txt:2", "utterance '1-1-0001'");
    write_text(tmp("libri-orphan/2/2/2-2.trans.txt"), "2-2-0000 FINE\n");
    write_tone(tmp("libri-orphan/2/2/2-2-0000.flac"), SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16000, 1, 0.1, 440);
    write_tone(tmp("libri-orphan/2/2/2-2-0009.flac"), SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16000, 1, 0.1, 440);
    g_fail += expect_reject("audio without a transcript line", convert_audio_folder(tmp("libri-orphan"), &bad, &e), &e,
                            "2-2-0009.flac", "no transcript");
    write_text(tmp("libri-garbage/3/3/3-3.trans.txt"), "3-3-0000 NOISE\n");
    write_text(tmp("libri-garbage/3/3/3-3-0000.flac"), "fLaC but not really");
    g_fail += expect_reject("undecodable audio", convert_audio_folder(tmp("libri-garbage"), &bad, &e), &e,
                            "3-3-0000.flac", "utterance '3-3-0000'");
    g_fail += expect_reject("root is not a directory", convert_audio_folder(tmp("libri/README.TXT"), &bad, &e), &e,
                            "README.TXT", "not a directory");
    ConvertOptions skip = options(tmp("out/libri-skip"));
    skip.skip_bad = 1;
    rc = convert_audio_folder(tmp("libri-orphan"), &skip, &e);
    Dataset s;
    if (rc == 0 && read_dataset(skip.out_dir, &s) == 0) {
        g_fail += check_true("--skip-bad: the orphan counted, the good utterance kept", s.n == 1, NULL);
        free_dataset(&s);
    } else {
        g_fail += check_true("--skip-bad conversion succeeds", 0, e.msg);
    }
}

// ---------------------------------------------------------------------------------------------------- text

static void test_jsonl_text(void) {
    printf("\n== jsonl-text\n");
    write_text(tmp("text/corpus.jsonl"), "{\"text\": \"hello\"}\n\n{\"text\": \"world\", \"meta\": 1}\n");
    ConvertOptions o = options(tmp("out/jsonl"));
    Error e;
    int rc = convert_jsonl_text(tmp("text/corpus.jsonl"), "text", &o, &e);
    g_fail += check_true("convert_jsonl_text succeeds", rc == 0, e.msg);
    Dataset d;
    Tokenizer* tok = tokenizer_bytes();
    if (rc == 0 && read_dataset(o.out_dir, &d) == 0) {
        g_fail += check_true("2 documents keyed by line", d.n == 2 && !strcmp(d.s[0].key, "corpus.jsonl:1") &&
                             !strcmp(d.s[1].key, "corpus.jsonl:3"), NULL);
        g_fail += check_text("document 1, every token trained", tok, &d.s[0], "hello", "hello");
        g_fail += check_text("document 2", tok, &d.s[1], "world", "world");
        free_dataset(&d);
    }
    ConvertOptions ow = options(tmp("out/jsonl-world"));
    ow.tokenizer = "world";
    rc = convert_jsonl_text(tmp("text/corpus.jsonl"), "text", &ow, &e);
    if (rc == 0 && read_dataset(ow.out_dir, &d) == 0) {
        const Sample* s = &d.s[0];
        g_fail += check_true("World: the document ends with end-of-document 0, trained",
                             s->n_tokens >= 2 && s->tokens[s->n_tokens - 1] == 0 && s->loss_mask[s->n_tokens - 1] == 1,
                             NULL);
        free_dataset(&d);
    } else {
        g_fail += check_true("World jsonl conversion succeeds", 0, e.msg);
    }
    write_text(tmp("text/bad.jsonl"), "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"text\": oops}\n");
    g_fail += expect_reject("malformed JSONL line", convert_jsonl_text(tmp("text/bad.jsonl"), "text", &o, &e), &e,
                            "bad.jsonl:3", "malformed JSON");
    write_text(tmp("text/nokey.jsonl"), "{\"body\": \"ok\"}\n");
    rc = convert_jsonl_text(tmp("text/nokey.jsonl"), "text", &o, &e);
    g_fail += expect_reject("JSONL line without the key", rc, &e, "nokey.jsonl:1", "\"text\"");
    tokenizer_free(tok);
}

static void write_binidx(const char* prefix, const uint16_t* tokens, const int32_t* sizes, int n_seq) {
    uint8_t idx[4096];
    size_t at = 0;
    uint64_t version = 1, n = (uint64_t)n_seq, n_doc = (uint64_t)n_seq + 1;
    memcpy(idx, "MMIDIDX\0\0", 9), at = 9;
    memcpy(idx + at, &version, 8), at += 8;
    idx[at++] = 8;
    memcpy(idx + at, &n, 8), at += 8;
    memcpy(idx + at, &n_doc, 8), at += 8;
    memcpy(idx + at, sizes, 4 * (size_t)n_seq), at += 4 * (size_t)n_seq;
    int64_t ptr = 0, total = 0;
    for (int i = 0; i < n_seq; i++, ptr += 2 * sizes[i - 1]) memcpy(idx + at, &ptr, 8), at += 8;
    for (int64_t i = 0; i <= n_seq; i++) memcpy(idx + at, &i, 8), at += 8;
    for (int i = 0; i < n_seq; i++) total += sizes[i];
    char path[1024];
    snprintf(path, sizeof path, "%s.idx", prefix);
    write_bytes(path, idx, at);
    snprintf(path, sizeof path, "%s.bin", prefix);
    write_bytes(path, tokens, (size_t)total * 2);
}

static void test_binidx(void) {
    printf("\n== binidx\n");
    uint16_t tokens[] = {'a', 'b', 0, 'c', 'd', 'e', 0, 'f', 0};
    int32_t sizes[] = {3, 4, 2};
    write_binidx(tmp("text/corpus"), tokens, sizes, 3);
    ConvertOptions o = options(tmp("out/binidx"));
    Error e;
    int rc = convert_binidx(tmp("text/corpus"), &o, &e);
    g_fail += check_true("convert_binidx succeeds", rc == 0, e.msg);
    Dataset d;
    if (rc == 0 && read_dataset(o.out_dir, &d) == 0) {
        int ok = d.n == 3 && !strcmp(d.s[1].key, "corpus:1") && d.s[1].n_tokens == 4;
        for (int i = 0, t = 0; ok && i < 3; i++)
            for (size_t k = 0; k < d.s[i].n_tokens; k++, t++)
                ok = ok && d.s[i].tokens[k] == tokens[t] && d.s[i].loss_mask[k];
        g_fail += check_true("3 documents, tokens copied exactly, all trained", ok, NULL);
        free_dataset(&d);
    }
    uint16_t big[] = {'a', 300, 0};
    int32_t one[] = {3};
    write_binidx(tmp("text/wide"), big, one, 1);
    g_fail += expect_reject("token outside the tokenizer's vocabulary", convert_binidx(tmp("text/wide"), &o, &e), &e,
                            "wide.idx: document 0", "token 300");
    g_fail += expect_reject("missing binidx", convert_binidx(tmp("text/none"), &o, &e), &e, "none", NULL);
}

// ---------------------------------------------------------------------------------------------------- properties

static int same_file(const char* a, const char* b) {
    size_t na, nb;
    uint8_t* x = slurp(a, &na);
    uint8_t* y = slurp(b, &nb);
    int same = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static void test_determinism_and_rolling(void) {
    printf("\n== determinism, shard rolling\n");
    Error e;
    ConvertOptions a = options(tmp("out/det-a")), b = options(tmp("out/det-b"));
    a.shard_samples = b.shard_samples = 2;
    int rc = convert_webdataset(tmp("wds/shard-{000000..000001}.tar"), &a, &e);
    if (rc == 0) rc = convert_webdataset(tmp("wds/shard-{000000..000001}.tar"), &b, &e);
    g_fail += check_true("two conversions of the same tars", rc == 0, e.msg);
    if (rc != 0) return;
    Dataset d;
    if (read_dataset(a.out_dir, &d) != 0) return;
    g_fail += check_true("--shard-size 2: 5 samples in 3 shards", d.n == 5 && d.n_shards == 3, NULL);
    free_dataset(&d);
    int same = 1;
    for (int k = 0; k < 3; k++) same &= same_file(tmp("out/det-a/train-%06d.h5", k), tmp("out/det-b/train-%06d.h5", k));
    g_fail += check_true("the shards are byte-identical", same, NULL);
    ConvertOptions c = options(tmp("out/det-c"));
    c.shard_bytes = 1;   // every sample is larger than 1 byte: one shard each
    rc = convert_llava_json(tmp("llava/data.json"), tmp("llava/img"), &c, &e);
    if (rc == 0 && read_dataset(c.out_dir, &d) == 0) {
        g_fail += check_true("--shard-size in bytes rolls too (1 B: a shard per sample)", d.n_shards == 4, NULL);
        free_dataset(&d);
    }
}

static void test_parallel(void) {
    printf("\n== parallel conversion over 3 ranks\n");
    Error e;
    int rc = 0;
    for (int r = 0; r < 3 && rc == 0; r++) {
        ConvertOptions o = options(tmp("out/par"));
        o.rank = r;
        o.world = 3;
        rc = convert_webdataset(tmp("wds/shard-{000000..000001}.tar"), &o, &e);
    }
    if (rc == 0) rc = shard_manifest_merge(tmp("out/par"), 3, &e);
    g_fail += check_true("3 ranks convert and the manifests merge", rc == 0, e.msg);
    Dataset d, one;
    if (rc != 0 || read_dataset(tmp("out/par"), &d) != 0) return;
    if (read_dataset(tmp("out/wds"), &one) != 0) {
        free_dataset(&d);
        return;
    }
    int ok = d.n == one.n;
    for (int i = 0; ok && i < one.n; i++) {
        const Sample* s = find_sample(&d, one.s[i].key);
        ok = s && s->n_tokens == one.s[i].n_tokens && !memcmp(s->tokens, one.s[i].tokens, s->n_tokens * 4);
    }
    g_fail += check_true("the union of the ranks' samples == the single-rank conversion, each once", ok, NULL);
    free_dataset(&d);
    free_dataset(&one);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/test_convert.XXXXXX");
    if (!mkdtemp(g_dir)) fatal("cannot create a temporary directory");
    double t0 = now_seconds();
    load_digits();
    test_chat_template();
    test_llava();
    test_llava_errors();
    test_brace_expansion();
    test_webdataset();
    test_webdataset_errors();
    test_audio_folder();
    test_jsonl_text();
    test_binidx();
    test_determinism_and_rolling();
    test_parallel();
    for (int i = 0; i < 8; i++) free(g_file[i]);
    for (int i = 0; i < g_n_kept; i++) free(g_kept[i]);
    remove_tree(g_dir);
    printf("\n%.1f s\n", now_seconds() - t0);
    return test_summary("test_convert", g_fail);
}
