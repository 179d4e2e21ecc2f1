// chat_template.c — conversation turns -> tokens + loss mask + placeholder positions (contract in
// chat_template.h).
//
// A turn is emitted as a list of pieces: text pieces (tokenized on their own, loss 0 or 1) and tag pieces
// (n_placeholder copies of a placeholder id, loss 0). The assistant turn's text is split once more, after
// the masked prefix "\x16Assistant:".
#include "datasets/chat_template.h"

#include <stdlib.h>
#include <string.h>

static const char USER_OPEN[] = "\x16User: ";
static const char ASSISTANT_OPEN[] = "\x16" "Assistant:";
static const char TURN_CLOSE[] = "\x17";
static const char IMAGE_TAG[] = "<image>";
static const char AUDIO_TAG[] = "<audio>";

typedef struct TokenBuf {
    uint32_t* tokens;   // (n)
    uint8_t* mask;      // (n)
    size_t n, cap;
} TokenBuf;

static void buf_reserve(TokenBuf* b, size_t more) {
    if (b->n + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more) cap *= 2;
    b->tokens = xrealloc(b->tokens, cap * sizeof(uint32_t));
    b->mask = xrealloc(b->mask, cap);
    b->cap = cap;
}

static void buf_push(TokenBuf* b, uint32_t id, uint8_t loss) {
    buf_reserve(b, 1);
    b->tokens[b->n] = id;
    b->mask[b->n] = loss;
    b->n++;
}

static void buf_text(TokenBuf* b, const Tokenizer* tok, const char* text, size_t len, uint8_t loss) {
    if (len == 0) return;
    int32_t* ids;
    size_t n;
    tokenizer_encode(tok, text, len, &ids, &n);
    buf_reserve(b, n);
    for (size_t i = 0; i < n; i++) buf_push(b, (uint32_t)ids[i], loss);
    free(ids);
}

// ---------------------------------------------------------------------------------------------------- media tags

static int is_image(MediaKind k) { return k == MEDIA_IMAGE_ENCODED || k == MEDIA_IMAGE_PIXELS; }
static int is_audio(MediaKind k) { return k == MEDIA_AUDIO_PCM; }

// Index in s->media of the `nth` item of the tag's kind, or -1.
static int nth_item(const Sample* s, int image, int nth) {
    for (int i = 0; i < s->n_media; i++) {
        int match = image ? is_image(s->media[i].kind) : is_audio(s->media[i].kind);
        if (match && nth-- == 0) return i;
    }
    return -1;
}

typedef struct TagState {
    int n_image, n_audio;   // tags consumed so far
} TagState;

// The next tag in text[0..len): its offset (or len when none) and whether it is an image tag.
static size_t find_tag(const char* text, size_t len, int* image) {
    size_t n_tag = sizeof IMAGE_TAG - 1;   // both tags have the same length
    for (size_t i = 0; i + n_tag <= len; i++) {
        if (text[i] != '<') continue;
        if (memcmp(text + i, IMAGE_TAG, n_tag) == 0) { *image = 1; return i; }
        if (memcmp(text + i, AUDIO_TAG, n_tag) == 0) { *image = 0; return i; }
    }
    return len;
}

static int emit_tag(TokenBuf* b, Sample* s, TagState* st, int image, const char* what, Error* e) {
    int nth = image ? st->n_image++ : st->n_audio++;
    int at = nth_item(s, image, nth);
    if (at < 0)
        return errorf(e, "%s: %s tag number %d has no %s to go with it", what, image ? IMAGE_TAG : AUDIO_TAG, nth + 1,
                      image ? "image" : "audio item");
    MediaItem* m = &s->media[at];
    if (m->n_placeholder <= 0) return errorf(e, "%s: media item %d has no placeholder tokens", what, at + 1);
    m->placeholder_pos = (int32_t)b->n;
    uint32_t id = image ? SHARD_PLACEHOLDER_IMAGE : SHARD_PLACEHOLDER_AUDIO;
    buf_reserve(b, (size_t)m->n_placeholder);
    for (int32_t i = 0; i < m->n_placeholder; i++) buf_push(b, id, 0);
    return 0;
}

// Text with tags: text pieces get `loss`, tags become placeholders.
static int emit_tagged(TokenBuf* b, const Tokenizer* tok, const char* text, size_t len, uint8_t loss, Sample* s,
                       TagState* st, const char* what, Error* e) {
    while (len > 0) {
        int image = 0;
        size_t at = find_tag(text, len, &image);
        buf_text(b, tok, text, at, loss);
        if (at == len) break;
        if (emit_tag(b, s, st, image, what, e) != 0) return -1;
        size_t skip = at + sizeof IMAGE_TAG - 1;
        text += skip;
        len -= skip;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------- turns

// The text of a turn with its template around it, as one string (so that tokens can span the boundaries).
static char* wrap(const char* open, const char* text, size_t len, size_t* out_len) {
    size_t n_open = strlen(open), n_close = sizeof TURN_CLOSE - 1;
    char* w = xmalloc(n_open + len + n_close + 1);
    memcpy(w, open, n_open);
    if (len) memcpy(w + n_open, text, len);
    memcpy(w + n_open + len, TURN_CLOSE, n_close + 1);
    *out_len = n_open + len + n_close;
    return w;
}

static int emit_turn(TokenBuf* b, const Tokenizer* tok, const ChatTurn* t, Sample* s, TagState* st,
                     const char* what, Error* e) {
    size_t len;
    int rc;
    if (t->role == CHAT_USER) {
        char* w = wrap(USER_OPEN, t->text, t->len, &len);
        rc = emit_tagged(b, tok, w, len, 0, s, st, what, e);
        free(w);
        return rc;
    }
    buf_text(b, tok, ASSISTANT_OPEN, strlen(ASSISTANT_OPEN), 0);
    char* w = wrap(" ", t->text, t->len, &len);
    rc = emit_tagged(b, tok, w, len, 1, s, st, what, e);
    free(w);
    return rc;
}

static int count_kind(const Sample* s, int image) {
    int n = 0;
    for (int i = 0; i < s->n_media; i++) n += image ? is_image(s->media[i].kind) : is_audio(s->media[i].kind);
    return n;
}

static int check_media(const Sample* s, const TagState* st, const char* what, Error* e) {
    int n_image = count_kind(s, 1), n_audio = count_kind(s, 0);
    if (n_image + n_audio != s->n_media)
        return errorf(e, "%s: a media item is neither an image nor audio (no tag places it)", what);
    if (st->n_image != n_image)
        return errorf(e, "%s: %d %s tag(s) for %d image(s): put exactly one %s in the text per image", what,
                      st->n_image, IMAGE_TAG, n_image, IMAGE_TAG);
    if (st->n_audio != n_audio)
        return errorf(e, "%s: %d %s tag(s) for %d audio item(s): put exactly one %s in the text per audio item", what,
                      st->n_audio, AUDIO_TAG, n_audio, AUDIO_TAG);
    return 0;
}

// Orders s->media by placeholder_pos (insertion sort: a sample has a handful of items).
static void sort_media(Sample* s) {
    for (int i = 1; i < s->n_media; i++) {
        MediaItem m = s->media[i];
        int j = i;
        for (; j > 0 && s->media[j - 1].placeholder_pos > m.placeholder_pos; j--) s->media[j] = s->media[j - 1];
        s->media[j] = m;
    }
}

int chat_build(const Tokenizer* tok, const ChatTurn* turns, int n_turns, Sample* s, const char* what, Error* e) {
    int n_assistant = 0;
    for (int i = 0; i < n_turns; i++) n_assistant += turns[i].role == CHAT_ASSISTANT;
    if (n_turns == 0) return errorf(e, "%s: the conversation has no turns", what);
    if (n_assistant == 0) return errorf(e, "%s: the conversation has no assistant turn (nothing to train on)", what);
    TokenBuf b = {0};
    TagState st = {0, 0};
    int rc = 0;
    for (int i = 0; i < n_turns && rc == 0; i++) rc = emit_turn(&b, tok, &turns[i], s, &st, what, e);
    if (rc == 0) rc = check_media(s, &st, what, e);
    if (rc != 0) {
        free(b.tokens);
        free(b.mask);
        return -1;
    }
    sort_media(s);
    s->tokens = b.tokens;
    s->loss_mask = b.mask;
    s->n_tokens = b.n;
    return 0;
}

void chat_build_document(const Tokenizer* tok, const char* text, size_t len, int add_eod, Sample* s) {
    TokenBuf b = {0};
    buf_text(&b, tok, text, len, 1);
    if (add_eod) buf_push(&b, 0, 1);
    s->tokens = b.tokens;
    s->loss_mask = b.mask;
    s->n_tokens = b.n;
}
