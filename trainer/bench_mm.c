// bench_mm.c — `modrwkv bench multimodal`: measured costs of a ModRWKV (SigLIP-style ViT -> projector ->
// RWKV-7) on synthetic image-text prompts; never a pass/fail speed test. The machine may be shared and noisy,
// so every comparison is taken side by side in one process (the compared cases alternate) and reported as
// medians over repeats.
//
//  generate  greedy RNN decoding after a short prompt (~256 tokens, 1 image) and a long one (~8192 tokens, many
//            images interleaved with text), the two decodes alternating token by token: the median time per
//            token of each and their ratio (an RNN's cost per token does not depend on the context), the
//            RWKV7State bytes (constant) and the process RSS around prefill and decode. The decode step is
//            generate.c's (rwkv7_forward of one token with the carried state, then argmax); its first tokens
//            are checked against generate_multimodal's greedy ids for the short prompt.
//  prefill   prompts of 1, 2, 4, ... images with text between, prefilled as generate_multimodal does (assemble,
//            fresh activations, encoder + projector + backbone with state), then once more on the same
//            activations (the compute alone): time vs prompt tokens, the least-squares lines t = a + b n, their
//            R^2, the time per token at the largest vs the smallest prompt, the share of the CPU time spent in
//            the kernel and the page faults per token (first touches of fresh activation memory).
//  train     one optimizer step as train.c takes it (zero gradients, forward + backward, reduce, gradient norm,
//            AdamW) on the same batch with stage 1 (projector), stage 2 (projector + backbone) and encoder +
//            projector trainable, rotating: median step time, each as a fraction of stage 2 (median of the
//            per-round fractions), trained parameters and optimizer-state floats (Adam m + v).
#include "trainer/bench_mm.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "sharding/comm.h"
#include "sharding/data_parallel.h"
#include "trainer/generate.h"
#include "trainer/modrwkv.h"
#include "trainer/optimizer.h"
#include "trainer/rng.h"
#include "trainer/rwkv7_init.h"

enum { PART_GENERATE = 1, PART_PREFILL = 2, PART_TRAIN = 4, WARMUP_TOKENS = 4, CHECK_TOKENS = 16 };

typedef struct MMBenchArgs {
    int n_layer, n_embd, head_size, vocab, threads;
    int image_size, patch, vit_width, vit_layers, vit_heads, vit_mlp;
    char projector[16];
    int short_ctx, short_images, long_ctx, long_images;  // generate
    int tokens, repeats;                                 // decoded tokens per round; rounds (every part)
    int max_images, text_per_image;                      // prefill: 1, 2, 4, ... max_images
    int ctx, batch, train_images, steps;                 // train
    int parts;                                           // PART_*
} MMBenchArgs;

static const char* MM_HELP =
    "usage: modrwkv bench multimodal [--layers 6] [--embd 512] [--head-size 64] [--vocab 65536] [--threads 0]\n"
    "         [--image-size 64] [--patch 8] [--vit-width 128] [--vit-layers 2] [--vit-heads 2] [--vit-mlp 512]\n"
    "         [--projector mlp] [--short 256] [--short-images 1] [--long 8192] [--long-images 64]\n"
    "         [--tokens 64] [--repeats 3] [--max-images 16] [--text-per-image 64]\n"
    "         [--ctx 512] [--batch 1] [--train-images 4] [--steps 3] [--parts generate,prefill,train]\n"
    "  generate  ms per decoded token after the short and the long image prompt (alternating), their ratio,\n"
    "            the RNN state bytes and the process RSS\n"
    "  prefill   prefill time vs prompt tokens for 1, 2, 4, ... --max-images images, with its linear fit\n"
    "  train     step time of stage 1 (projector), stage 2 (projector + backbone), encoder + projector\n";

static int parse_parts(const char* list) {
    int parts = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", list);
    for (char* w = strtok(buf, ","); w; w = strtok(NULL, ",")) {
        if (strcmp(w, "generate") == 0) parts |= PART_GENERATE;
        else if (strcmp(w, "prefill") == 0) parts |= PART_PREFILL;
        else if (strcmp(w, "train") == 0) parts |= PART_TRAIN;
        else fatal("bench multimodal: --parts: unknown part '%s': use generate, prefill, train", w);
    }
    return parts;
}

static void parse_mm_args(int argc, char** argv, MMBenchArgs* a) {
    static struct option opts[] = {
        {"layers", 1, 0, 'L'}, {"n-layer", 1, 0, 'L'}, {"embd", 1, 0, 'C'}, {"n-embd", 1, 0, 'C'},
        {"head-size", 1, 0, 'H'}, {"vocab", 1, 0, 'V'}, {"threads", 1, 0, 'j'}, {"image-size", 1, 0, 'i'},
        {"patch", 1, 0, 'p'}, {"vit-width", 1, 0, 'w'}, {"vit-layers", 1, 0, 'l'}, {"vit-heads", 1, 0, 'a'},
        {"vit-mlp", 1, 0, 'm'}, {"projector", 1, 0, 'P'}, {"short", 1, 0, 's'}, {"short-images", 1, 0, 'S'},
        {"long", 1, 0, 'g'}, {"long-images", 1, 0, 'G'}, {"tokens", 1, 0, 'n'}, {"repeats", 1, 0, 'r'},
        {"max-images", 1, 0, 'x'}, {"text-per-image", 1, 0, 't'}, {"ctx", 1, 0, 'T'}, {"batch", 1, 0, 'B'},
        {"train-images", 1, 0, 'I'}, {"steps", 1, 0, 'k'}, {"parts", 1, 0, 'q'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    *a = (MMBenchArgs){.n_layer = 6, .n_embd = 512, .head_size = 64, .vocab = 65536, .image_size = 64, .patch = 8,
                       .vit_width = 128, .vit_layers = 2, .vit_heads = 2, .vit_mlp = 512, .projector = "mlp",
                       .short_ctx = 256, .short_images = 1, .long_ctx = 8192, .long_images = 64, .tokens = 64,
                       .repeats = 3, .max_images = 16, .text_per_image = 64, .ctx = 512, .batch = 1,
                       .train_images = 4, .steps = 3, .parts = PART_GENERATE | PART_PREFILL | PART_TRAIN};
    struct {
        int ch;
        int* value;
    } ints[] = {{'L', &a->n_layer}, {'C', &a->n_embd}, {'H', &a->head_size}, {'V', &a->vocab},
                {'j', &a->threads}, {'i', &a->image_size}, {'p', &a->patch}, {'w', &a->vit_width},
                {'l', &a->vit_layers}, {'a', &a->vit_heads}, {'m', &a->vit_mlp}, {'s', &a->short_ctx},
                {'S', &a->short_images}, {'g', &a->long_ctx}, {'G', &a->long_images}, {'n', &a->tokens},
                {'r', &a->repeats}, {'x', &a->max_images}, {'t', &a->text_per_image}, {'T', &a->ctx},
                {'B', &a->batch}, {'I', &a->train_images}, {'k', &a->steps}};
    int ch, idx = 0;
    optind = 2;  // argv[0] = "bench", argv[1] = "multimodal"
    while ((ch = getopt_long(argc, argv, "", opts, &idx)) != -1) {
        if (ch == 'h') {
            fputs(MM_HELP, stdout);
            exit(0);
        }
        if (ch == 'P') {
            snprintf(a->projector, sizeof a->projector, "%s", optarg);
        } else if (ch == 'q') {
            a->parts = parse_parts(optarg);
        } else {
            int* value = NULL;
            for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
                if (ints[i].ch == ch) value = ints[i].value;
            if (!value)
                fatal("bench multimodal: unknown option or missing value in '%s': run `modrwkv bench multimodal "
                      "--help`", argv[optind - 1]);
            char* end = NULL;
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < 0 || v > 1 << 30)
                fatal("bench multimodal: --%s expects a non-negative integer, got '%s'", opts[idx].name, optarg);
            *value = (int)v;
        }
    }
    int ok = a->n_layer >= 1 && a->head_size >= 1 && a->n_embd >= a->head_size && a->n_embd % a->head_size == 0 &&
             a->vocab >= 2 && a->patch >= 1 && a->image_size >= a->patch && a->image_size % a->patch == 0 && a->vit_heads >= 1 &&
             a->vit_width % a->vit_heads == 0 && a->vit_layers >= 1 && a->vit_mlp >= 1 && a->tokens >= 1 &&
             a->repeats >= 1 && a->max_images >= 1 && a->batch >= 1 && a->steps >= 1 && a->short_images >= 1 &&
             a->long_images >= 1 && a->train_images >= 0;
    if (!ok)
        fatal("bench multimodal: sizes must be positive, --embd a multiple of --head-size, --image-size a multiple "
              "of --patch and --vit-width of --vit-heads");
}

// ---------------------------------------------------------------------------------------------------- helpers

static ModRWKV* bench_mm_model(Backend* be, const MMBenchArgs* a) {
    RWKV7Config rc = {.n_layer = a->n_layer, .n_embd = a->n_embd, .vocab_size = a->vocab, .head_size = a->head_size};
    Error e = {{0}};
    RWKV7* lm = rwkv7_create(&rc, be, &e);
    if (!lm) fatal("bench multimodal: %s", e.msg);
    rwkv7_init(lm, RWKV7_INIT_RANDOM, 1);
    Config c;
    config_defaults(&c);
    ModelConfig* mc = &c.model;
    snprintf(mc->vision.kind, sizeof mc->vision.kind, "siglip");
    mc->vision.image_size = a->image_size;
    mc->vision.patch = a->patch;
    mc->vision.width = a->vit_width;
    mc->vision.layers = a->vit_layers;
    mc->vision.heads = a->vit_heads;
    mc->vision.mlp = a->vit_mlp;
    snprintf(mc->projector.kind, sizeof mc->projector.kind, "%s", a->projector);
    ModRWKV* m = modrwkv_create(lm, mc, 2, &e);
    if (!m) fatal("bench multimodal: %s", e.msg);
    return m;
}

// B rows, each of n_text text tokens in k + 1 segments (the last takes the remainder) with an image between
// consecutive segments: one placeholder per image (the assembly expands it to the projector's token count,
// as generate_chat_prompt lays prompts out), random pixels in [-1, 1). Targets: the next token where both
// are text, else -1.
static ShardBatch* synthetic_batch(int B, int k, int n_text, int S, int vocab, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    int W = n_text + k, top = vocab < SHARD_PLACEHOLDER_IMAGE ? vocab : SHARD_PLACEHOLDER_IMAGE;  // ids [1, top)
    ShardBatch* b = xcalloc(1, sizeof *b);
    b->B = B;
    b->T = W;
    b->tokens = xcalloc((size_t)B * W, sizeof(int32_t));
    b->targets = xcalloc((size_t)B * W, sizeof(int32_t));
    b->n_media = B * k;
    b->media = xcalloc((size_t)B * k + 1, sizeof(BatchMedia));
    for (int row = 0; row < B; row++) {
        int32_t* tok = b->tokens + (size_t)row * W;
        int32_t* tgt = b->targets + (size_t)row * W;
        int col = 0;
        for (int seg = 0; seg <= k; seg++) {
            int len = n_text / (k + 1) + (seg == k ? n_text % (k + 1) : 0);
            for (int j = 0; j < len; j++) tok[col++] = 1 + (int32_t)(rng_uniform(&r) * (top - 1));
            if (seg == k) break;
            BatchMedia* it = &b->media[row * k + seg];
            it->kind = MEDIA_IMAGE_PIXELS;
            it->row = row;
            it->placeholder_pos = col;
            it->n_placeholder = 1;
            it->ndim = 3;
            it->shape[0] = 3;
            it->shape[1] = it->shape[2] = S;
            it->data = xmalloc((size_t)3 * S * S * sizeof(float));
            for (int p = 0; p < 3 * S * S; p++) it->data[p] = (float)(2 * rng_uniform(&r) - 1);
            tok[col++] = SHARD_PLACEHOLDER_IMAGE;
        }
        for (int c = 0; c < W; c++) {
            int text_pair = c + 1 < W && tok[c] != SHARD_PLACEHOLDER_IMAGE && tok[c + 1] != SHARD_PLACEHOLDER_IMAGE;
            tgt[c] = text_pair ? tok[c + 1] : -1;
        }
    }
    return b;
}

// Tokens of one image after the projector.
static int image_tokens(const ModRWKV* m, int S) {
    BatchMedia it = {.kind = MEDIA_IMAGE_PIXELS, .ndim = 3, .shape = {3, S, S}};
    return modrwkv_media_tokens(m, MEDIA_IMAGE_PIXELS, &it);
}

// A one-row prompt of `total` tokens after assembly holding k images; fatal when the images leave no text.
static ShardBatch* prompt_of(const ModRWKV* m, const MMBenchArgs* a, int total, int k, const char* what) {
    int per = image_tokens(m, a->image_size), n_text = total - k * per;
    if (n_text < k + 1)
        fatal("bench multimodal: %s: %d tokens cannot hold %d images of %d tokens and text between them: raise the "
              "token count or lower the images", what, total, k, per);
    return synthetic_batch(1, k, n_text, a->image_size, a->vocab, (uint64_t)total * 31 + k);
}

static int32_t argmax(const float* x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int cmp_double(const void* p, const void* q) {
    double a = *(const double*)p, b = *(const double*)q;
    return (a > b) - (a < b);
}

static double median(const double* x, int n) {
    double* s = xmalloc((size_t)n * sizeof(double));
    memcpy(s, x, (size_t)n * sizeof(double));
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    double mid = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return mid;
}

// This process's resident set ("VmRSS") or its peak since the last reset ("VmHWM") in MB; NAN if unknown.
static double rss_mb(const char* field) {
    FILE* f = fopen("/proc/self/status", "r");
    if (!f) return NAN;
    char line[256];
    double kib = NAN;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') kib = atof(line + n + 1);
    fclose(f);
    return kib * 1024 / 1e6;
}

static void reset_peak_rss(void) {  // Linux: "5" resets VmHWM to the current RSS
    FILE* f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f);
    fclose(f);
}

// Wall seconds, this process's CPU seconds in user and kernel mode (all threads) and its page faults.
typedef struct Cost {
    double wall, user, sys, faults;
} Cost;

static Cost cost_now(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (Cost){now_seconds(), u.ru_utime.tv_sec + 1e-6 * u.ru_utime.tv_usec, u.ru_stime.tv_sec + 1e-6 * u.ru_stime.tv_usec,
                  (double)u.ru_minflt + (double)u.ru_majflt};
}

static Cost cost_since(Cost t0) {
    Cost t = cost_now();
    return (Cost){t.wall - t0.wall, t.user - t0.user, t.sys - t0.sys, t.faults - t0.faults};
}

// The share of the CPU time spent in the kernel (page faults, mostly).
static double sys_share(Cost c) { return c.sys / (c.user + c.sys > 0 ? c.user + c.sys : 1); }

static Cost cost_minus(Cost a, Cost b) { return (Cost){a.wall - b.wall, a.user - b.user, a.sys - b.sys, a.faults - b.faults}; }

// Prefills a one-row prompt into st as generate_multimodal does (assembly, activations, encoders, projector,
// backbone); *next receives the greedy first token. Returns what it cost. With again != NULL the prompt is
// then prefilled once more into a reset state on the same backbone activations (the compute without their
// allocation); *again receives that cost, which the returned one excludes.
static Cost prefill(ModRWKV* m, const ShardBatch* src, RWKV7State* st, int32_t* next, Cost* again) {
    Cost t0 = cost_now();
    int T = src->T;
    for (int i = 0; i < src->n_media; i++)  // every placeholder run becomes the item's feature tokens
        T += modrwkv_media_tokens(m, src->media[i].kind, &src->media[i]) - src->media[i].n_placeholder;
    MMBatch mb;
    modrwkv_assemble(m, src, &mb, 1, T);
    ModRWKVStep* step = modrwkv_step_create(m, 1, T, 0);
    Error e = {{0}};
    if (modrwkv_prefill(m, step, &mb, st, &e) != 0) fatal("bench multimodal: %s", e.msg);
    *next = argmax(modrwkv_step_acts(step)->logits, m->lm->cfg.vocab_size);  // the last token's logits
    Cost second = {0};
    if (again) {
        Cost t1 = cost_now();
        rwkv7_state_reset(m->lm, st);
        if (modrwkv_prefill(m, step, &mb, st, &e) != 0) fatal("bench multimodal: %s", e.msg);
        *again = second = cost_since(t1);
    }
    modrwkv_step_free(m, step);
    mmbatch_free(&mb);
    return cost_minus(cost_since(t0), second);
}

// One RNN decode step of generate.c's loop: feed *id, carry the state, take the argmax. Returns seconds.
static double decode_one(ModRWKV* m, RWKV7Acts* one, RWKV7State* st, int32_t* id) {
    double t0 = now_seconds();
    rwkv7_forward(m->lm, one, id, st);
    *id = argmax(one->logits, m->lm->cfg.vocab_size);
    return now_seconds() - t0;
}

// ---------------------------------------------------------------------------------------------------- generate

typedef struct DecodeRun {
    const char* name;
    int total, images;
    ShardBatch* src;
    RWKV7State* st;
    int32_t next;
    int32_t* ids;         // the greedy stream (first token from the prefill)
    int n_ids;
    Cost prefill;
    double rss_after_prefill, peak_in_prefill;
    double* dt;           // (repeats x tokens) seconds per decoded token
} DecodeRun;

static void decode_run_init(DecodeRun* d, ModRWKV* m, const MMBenchArgs* a, const char* name, int total, int k) {
    *d = (DecodeRun){.name = name, .total = total, .images = k};
    d->src = prompt_of(m, a, total, k, name);
    d->st = rwkv7_state_create(m->lm, 1);
    d->ids = xmalloc((size_t)(WARMUP_TOKENS + a->repeats * a->tokens + 1) * sizeof(int32_t));
    d->dt = xmalloc((size_t)a->repeats * a->tokens * sizeof(double));
    reset_peak_rss();
    d->prefill = prefill(m, d->src, d->st, &d->next, NULL);
    d->peak_in_prefill = rss_mb("VmHWM");
    d->rss_after_prefill = rss_mb("VmRSS");
    d->ids[d->n_ids++] = d->next;
}

static void decode_run_free(ModRWKV* m, DecodeRun* d) {
    shard_batch_free(d->src);
    rwkv7_state_free(m->lm, d->st);
    free(d->ids);
    free(d->dt);
}

static double decode_step(ModRWKV* m, RWKV7Acts* one, DecodeRun* d) {
    double dt = decode_one(m, one, d->st, &d->next);
    d->ids[d->n_ids++] = d->next;
    return dt;
}

// 1 when generate_multimodal's first greedy ids after d's prompt are d's stream.
static int same_as_generate(ModRWKV* m, const DecodeRun* d) {
    GenerateOptions o = {.max_tokens = d->n_ids < CHECK_TOKENS ? d->n_ids : CHECK_TOKENS, .temperature = 0};
    int32_t* ids = NULL;
    Error e = {{0}};
    int n = generate_multimodal(m, NULL, d->src, &o, NULL, &ids, &e);
    if (n < 0) fatal("bench multimodal: %s", e.msg);
    int same = n == o.max_tokens && memcmp(ids, d->ids, (size_t)n * sizeof(int32_t)) == 0;
    free(ids);
    return same;
}

static void bench_generate_mm(ModRWKV* m, const MMBenchArgs* a) {
    double rss_start = rss_mb("VmRSS");
    DecodeRun run[2];
    decode_run_init(&run[0], m, a, "short", a->short_ctx, a->short_images);
    decode_run_init(&run[1], m, a, "long", a->long_ctx, a->long_images);
    RWKV7Acts* one = rwkv7_acts_create(m->lm, 1, 1, 0);
    for (int i = 0; i < WARMUP_TOKENS; i++)
        for (int c = 0; c < 2; c++) decode_step(m, one, &run[c]);
    double rss_before = rss_mb("VmRSS");
    int n = a->tokens, R = a->repeats;
    double* ratio = xmalloc((size_t)R * sizeof(double));
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < n; i++)  // alternating, the first of each pair alternating too
            for (int j = 0; j < 2; j++) {
                int c = (i + r + j) % 2;
                run[c].dt[r * n + i] = decode_step(m, one, &run[c]);
            }
        ratio[r] = median(run[1].dt + r * n, n) / median(run[0].dt + r * n, n);
    }
    double rss_after = rss_mb("VmRSS");
    const RWKV7Config* c = &m->lm->cfg;
    size_t state_bytes = (size_t)c->n_layer * c->n_embd * (2 + (size_t)c->head_size) * sizeof(float);
    int same = same_as_generate(m, &run[0]);
    double r_med = median(ratio, R);
    printf("\n(a) generation: greedy RNN decoding at batch 1 after an image prompt; %d tokens x %d rounds per "
           "prompt (after %d warm-up tokens), the two prompts alternating token by token\n\n",
           n, R, WARMUP_TOKENS);
    printf("| prompt | tokens | images | decode ms/token (median) | prefill s | prefill CPU in kernel | peak RSS in "
           "prefill MB | RSS after prefill MB |\n|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < 2; k++) {
        const Cost* p = &run[k].prefill;
        printf("| %s | %d | %d | %.3f | %.3f | %.0f%% | %.0f | %.0f |\n", run[k].name, run[k].total, run[k].images,
               1e3 * median(run[k].dt, R * n), p->wall, 100 * sys_share(*p), run[k].peak_in_prefill,
               run[k].rss_after_prefill);
    }
    printf("\ndecode ratio long/short per round:");
    for (int r = 0; r < R; r++) printf(" %.3f", ratio[r]);
    printf("\ndecode ratio long/short (median of rounds): %.3f -> goal <= 1.1: %s\n", r_med,
           r_med <= 1.1 ? "MET" : "NOT MET");
    printf("RWKV7State: %zu bytes (L x C x (2 + head_size) x 4), the same object size for both prompts\n", state_bytes);
    printf("process RSS: %.0f MB before the prompts, %.0f MB before decoding, %.0f MB after %d tokens per prompt "
           "(growth %.1f MB)\n",
           rss_start, rss_before, rss_after, WARMUP_TOKENS + R * n, rss_after - rss_before);
    printf("greedy ids = generate_multimodal's (first %d, short prompt): %s\n",
           run[0].n_ids < CHECK_TOKENS ? run[0].n_ids : CHECK_TOKENS, same ? "yes" : "NO");
    free(ratio);
    rwkv7_acts_free(m->lm, one);
    for (int k = 0; k < 2; k++) decode_run_free(m, &run[k]);
}

// ---------------------------------------------------------------------------------------------------- prefill

typedef struct LineFit {
    double a, b, r2;  // y = a + b x
} LineFit;

static LineFit fit_line(const double* x, const double* y, int n) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0, ss_tot = 0, ss_res = 0;
    for (int i = 0; i < n; i++) {
        sx += x[i];
        sy += y[i];
        sxx += x[i] * x[i];
        sxy += x[i] * y[i];
    }
    double den = n * sxx - sx * sx;
    LineFit f = {.b = den > 0 ? (n * sxy - sx * sy) / den : y[0] / x[0]};
    f.a = (sy - f.b * sx) / n;
    for (int i = 0; i < n; i++) {
        double r = y[i] - (f.a + f.b * x[i]), d = y[i] - sy / n;
        ss_res += r * r;
        ss_tot += d * d;
    }
    f.r2 = ss_tot > 0 ? 1 - ss_res / ss_tot : 1;
    return f;
}

// "linear" when the fit explains the medians (R^2 >= 0.99) and the time per token does not grow by > 10%
// from the smallest prompt to the largest.
static void print_fit(const char* what, LineFit f, const double* tokens, const double* t, const int* images, int n) {
    double growth = (t[n - 1] / tokens[n - 1]) / (t[0] / tokens[0]);
    printf("%s: t = %.1f ms + %.1f us x tokens, R^2 = %.4f; time per token at %d images / at %d: %.2f -> %s\n", what,
           1e3 * f.a, 1e6 * f.b, f.r2, images[n - 1], images[0], growth,
           f.r2 >= 0.99 && growth <= 1.1 ? "linear" : "NOT linear (R^2 < 0.99 or time per token grows > 10%)");
}

static void bench_prefill_mm(ModRWKV* m, const MMBenchArgs* a) {
    int per = image_tokens(m, a->image_size), n = 0, R = a->repeats;
    int images[32];
    for (int k = 1; k <= a->max_images && n < 32; k *= 2) images[n++] = k;
    ShardBatch* src[32] = {0};
    double tokens[32] = {0}, med[32] = {0}, med_reused[32] = {0}, faults[32] = {0};
    double* wall = xmalloc((size_t)n * R * sizeof(double));     // (n, R) as generate_multimodal
    double* reused = xmalloc((size_t)n * R * sizeof(double));   // (n, R) on allocated activations
    double* sys = xmalloc((size_t)n * R * sizeof(double));      // (n, R) kernel share of the CPU time
    for (int s = 0; s < n; s++) {
        tokens[s] = (double)images[s] * (per + a->text_per_image);
        src[s] = prompt_of(m, a, (int)tokens[s], images[s], "prefill");
    }
    RWKV7State* st = rwkv7_state_create(m->lm, 1);
    int32_t next;
    prefill(m, src[0], st, &next, NULL);  // warm-up
    for (int r = 0; r < R; r++)
        for (int j = 0; j < n; j++) {  // sizes rotate so that no size always runs first
            int s = (j + r) % n;
            rwkv7_state_reset(m->lm, st);
            Cost again, c = prefill(m, src[s], st, &next, &again);
            wall[s * R + r] = c.wall;
            reused[s * R + r] = again.wall;
            sys[s * R + r] = sys_share(c);
            faults[s] = c.faults;
        }
    for (int s = 0; s < n; s++) {
        med[s] = median(wall + s * R, R);
        med_reused[s] = median(reused + s * R, R);
    }
    LineFit f = fit_line(tokens, med, n), g = fit_line(tokens, med_reused, n);
    printf("\n(b) prefill of image prompts: images of %d tokens, %d text tokens per image, median of %d rounds;\n"
           "    as generate_multimodal (assembly, fresh activations, ViT + projector, backbone with state), and again "
           "on the same activations (compute only)\n\n"
           "| images | prompt tokens | prefill ms | us/token | residual of the fit | CPU in kernel | page faults/token "
           "| compute only ms | us/token |\n|---|---|---|---|---|---|---|---|---|\n",
           per, a->text_per_image, R);
    for (int s = 0; s < n; s++) {
        double fit = f.a + f.b * tokens[s];
        printf("| %d | %.0f | %.1f | %.1f | %+.1f%% | %.0f%% | %.0f | %.1f | %.1f |\n", images[s], tokens[s],
               1e3 * med[s], 1e6 * med[s] / tokens[s], 100 * (med[s] - fit) / med[s], 100 * median(sys + s * R, R),
               faults[s] / tokens[s], 1e3 * med_reused[s], 1e6 * med_reused[s] / tokens[s]);
    }
    printf("\n");
    print_fit("fit, prefill as generate_multimodal", f, tokens, med, images, n);
    print_fit("fit, compute only", g, tokens, med_reused, images, n);
    rwkv7_state_free(m->lm, st);
    for (int s = 0; s < n; s++) shard_batch_free(src[s]);
    free(wall);
    free(reused);
    free(sys);
}

// ---------------------------------------------------------------------------------------------------- train

typedef struct TrainCase {
    const char* name;
    int flags;
    DataParallel* dp;
    size_t trained;
    double* dt;   // (steps) seconds per step
    double* rel;  // (steps) this step / stage 2's step of the same round
} TrainCase;

// One optimizer step as train.c takes it; returns seconds.
static double train_step(ModRWKV* m, ModRWKVStep* s, const MMBatch* mb, TrainCase* tc, int step) {
    Error e = {{0}};
    if (modrwkv_set_trainable(m, tc->flags, &e) != 0) fatal("bench multimodal: %s", e.msg);
    double t0 = now_seconds();
    m->be->k.zero(m->be, m->grads, m->table.n_params);
    float loss = modrwkv_step(m, s, mb, 1.0f, 1, 1, NULL, &e);
    if (isnan(loss) && e.msg[0]) fatal("bench multimodal: %s", e.msg);
    dp_reduce_gradients(tc->dp, m->grads);
    double norm = dp_grad_norm(tc->dp, m->grads);
    TrainConfig t = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.99f, .adam_eps = 1e-18f, .weight_decay = 0.001f};
    DPAdamW h = optimizer_step_params(&t, t.lr, norm > 1.0 ? (float)(1.0 / norm) : 1.0f, step);
    dp_update(tc->dp, m->params, m->grads, &h);
    return now_seconds() - t0;
}

static void bench_train_mm(ModRWKV* m, const MMBenchArgs* a) {
    TrainCase cases[3] = {{.name = "stage 1: projector", .flags = TRAIN_PROJECTOR},
                          {.name = "stage 2: projector + backbone", .flags = TRAIN_PROJECTOR | TRAIN_BACKBONE},
                          {.name = "encoder + projector", .flags = TRAIN_PROJECTOR | TRAIN_VISION}};
    Comm* self = comm_self_create();
    Error e = {{0}};
    for (int c = 0; c < 3; c++) {
        if (modrwkv_set_trainable(m, cases[c].flags, &e) != 0) fatal("bench multimodal: %s", e.msg);
        cases[c].dp = optimizer_create_table(&m->table, m->trained, m->be, self, 0, &e);
        if (!cases[c].dp) fatal("bench multimodal: %s", e.msg);
        cases[c].trained = modrwkv_count(m, 1);
        cases[c].dt = xmalloc((size_t)a->steps * sizeof(double));
        cases[c].rel = xmalloc((size_t)a->steps * sizeof(double));
    }
    int per = image_tokens(m, a->image_size), n_text = a->ctx - a->train_images * per;
    if (n_text < a->train_images + 1)
        fatal("bench multimodal: --ctx %d cannot hold %d images of %d tokens and text: raise --ctx or lower "
              "--train-images", a->ctx, a->train_images, per);
    ShardBatch* src = synthetic_batch(a->batch, a->train_images, n_text, a->image_size, a->vocab, 7);
    MMBatch mb;
    modrwkv_assemble(m, src, &mb, a->batch, a->ctx);
    ModRWKVStep* s = modrwkv_step_create(m, a->batch, a->ctx, 1);
    for (int c = 0; c < 3; c++) train_step(m, s, &mb, &cases[c], 1);  // warm-up
    for (int r = 0; r < a->steps; r++) {
        for (int j = 0; j < 3; j++) {  // the order rotates each round
            TrainCase* tc = &cases[(j + r) % 3];
            tc->dt[r] = train_step(m, s, &mb, tc, r + 2);
        }
        for (int c = 0; c < 3; c++) cases[c].rel[r] = cases[c].dt[r] / cases[1].dt[r];
    }
    printf("\n(c) training step (zero gradients, forward + backward, reduce, gradient norm, AdamW) on one batch of "
           "%d x %d tokens with %d images of %d tokens per row; median of %d rounds after a warm-up, the three "
           "rotating\n\n| trainable | trained parameters | optimizer-state floats (Adam m + v) | step s (median) "
           "| fraction of the stage-2 step |\n|---|---|---|---|---|\n",
           a->batch, a->ctx, a->train_images, per, a->steps);
    for (int c = 0; c < 3; c++)
        printf("| %s | %zu | %zu | %.3f | %.3f |\n", cases[c].name, cases[c].trained, 2 * cases[c].dp->n_trained,
               median(cases[c].dt, a->steps), median(cases[c].rel, a->steps));
    printf("\nstage 1 / stage 2 per round:");
    for (int r = 0; r < a->steps; r++) printf(" %.3f", cases[0].rel[r]);
    double zero[3];
    for (int r = 0; r < 3; r++) {  // what every step pays for the whole gradient buffer, frozen tensors included
        double t0 = now_seconds();
        m->be->k.zero(m->be, m->grads, m->table.n_params);
        zero[r] = now_seconds() - t0;
    }
    printf("\nthe gradient buffer holds all %zu parameters (frozen ones get no weight gradient); zeroing it, part of "
           "every step above: %.1f ms\n", modrwkv_count(m, 0), 1e3 * median(zero, 3));
    modrwkv_step_free(m, s);
    mmbatch_free(&mb);
    shard_batch_free(src);
    for (int c = 0; c < 3; c++) {
        dp_free(cases[c].dp);
        free(cases[c].dt);
        free(cases[c].rel);
    }
    comm_free(self);
}

// ---------------------------------------------------------------------------------------------------- main

int bench_multimodal(int argc, char** argv) {
    MMBenchArgs a;
    parse_mm_args(argc, argv, &a);
    Backend* be = backend_cpu_create(a.threads);
    ModRWKV* m = bench_mm_model(be, &a);
    printf("bench multimodal: RWKV-7 L%d C%d head %d V%d + SigLIP-style ViT (image %d px, patch %d -> %d tokens, "
           "width %d, %d layers) + %s projector: %.2fM parameters, %d threads\n",
           a.n_layer, a.n_embd, a.head_size, a.vocab, a.image_size, a.patch, image_tokens(m, a.image_size),
           a.vit_width, a.vit_layers, a.projector, modrwkv_count(m, 0) / 1e6, be->n_threads);
    if (a.parts & PART_GENERATE) bench_generate_mm(m, &a);
    if (a.parts & PART_PREFILL) bench_prefill_mm(m, &a);
    if (a.parts & PART_TRAIN) bench_train_mm(m, &a);
    modrwkv_free(m);
    backend_destroy(be);
    return 0;
}
