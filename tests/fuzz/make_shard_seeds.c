// make_shard_seeds.c — writes a seed corpus for fuzz_shard_reader: small valid shards holding every media
// kind, with and without gzip, uint16 and uint32 tokens. Usage: make_shard_seeds OUT_DIR (created; the
// seeds are OUT_DIR/seed-*.h5).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/shard.h"

// Sample i: a few text tokens around one media item of kind 1 + i % 5 (none for i % 6 == 5).
static Sample seed_sample(int i) {
    static uint8_t png[16] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 1, 2, 3, 4, 5, 6, 7, 8};
    Sample s = {0};
    char key[32];
    snprintf(key, sizeof key, "seed-%d", i);
    s.key = xstrdup(key);
    s.n_tokens = 8;
    s.tokens = xmalloc(8 * sizeof *s.tokens);
    s.loss_mask = xcalloc(8, 1);
    for (int t = 0; t < 8; t++) s.tokens[t] = (uint32_t)(100 * i + t), s.loss_mask[t] = (uint8_t)(t > 5);
    int kind = 1 + i % 6;
    if (kind > MEDIA_FEATURES) return s;
    s.n_media = 1;
    s.media = xcalloc(1, sizeof *s.media);
    MediaItem* m = &s.media[0];
    *m = (MediaItem){.kind = (MediaKind)kind, .placeholder_pos = 2, .n_placeholder = 3};
    uint32_t id = kind == MEDIA_AUDIO_PCM ? SHARD_PLACEHOLDER_AUDIO
                  : kind == MEDIA_TIMESERIES ? SHARD_PLACEHOLDER_TIMESERIES : SHARD_PLACEHOLDER_IMAGE;
    for (int t = 2; t < 5; t++) s.tokens[t] = id;
    if (kind == MEDIA_IMAGE_ENCODED) m->bytes = xmalloc(16), memcpy(m->bytes, png, 16), m->n_bytes = 16;
    if (kind == MEDIA_IMAGE_PIXELS) m->pixels = xcalloc(12, 1), m->height = 2, m->width = 2, m->channels = 3;
    if (kind == MEDIA_AUDIO_PCM) m->pcm = xcalloc(40, 2), m->n_samples = 40;
    if (kind == MEDIA_TIMESERIES) m->series = xcalloc(6, 4), m->length = 3, m->channels = 2;
    if (kind == MEDIA_FEATURES) m->feat = xcalloc(8, 2), m->n_feat_tokens = 2, m->dim = 4, m->feat_dtype_bytes = 2;
    return s;
}

static int write_seed(const char* out, int variant, int compression, int vocab, Error* e) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tmp-%d", out, variant);
    ShardWriterOptions o = {.dir = dir, .split = "seed", .compression = compression, .tokenizer = "world",
                            .vocab_size = vocab, .world = 1};
    ShardWriter* w = shard_writer_open(&o, e);
    if (!w) return -1;
    for (int i = 0; i < 6; i++) {
        Sample s = seed_sample(i + variant);
        int rc = shard_writer_add(w, &s, e);
        sample_free(&s);
        if (rc) {
            shard_writer_close(w, NULL);
            return -1;
        }
    }
    if (shard_writer_close(w, e)) return -1;
    char from[1100], to[1100];
    snprintf(from, sizeof from, "%s/seed-000000.h5", dir);
    snprintf(to, sizeof to, "%s/seed-%d.h5", out, variant);
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/manifest.json");
    if (rename(from, to) != 0 || remove(dir) != 0) return errorf(e, "%s: cannot move the seed into place", to);
    *strrchr(dir, '/') = 0;
    return remove(dir) == 0 ? 0 : errorf(e, "%s: cannot remove", dir);
}

int main(int argc, char** argv) {
    if (argc != 2) fatal("usage: make_shard_seeds OUT_DIR");
    Error e;
    if (mkdir_p(argv[1], &e)) fatal("%s", e.msg);
    static const int compression[3] = {0, 4, 1}, vocab[3] = {65536, 65536, 100000};
    for (int v = 0; v < 3; v++)
        if (write_seed(argv[1], v, compression[v], vocab[v], &e)) fatal("%s", e.msg);
    printf("make_shard_seeds: wrote 3 seed shards to %s\n", argv[1]);
    return 0;
}
