// bench.c — `modrwkv bench train|generate|data|multimodal`: measured throughput, never a pass/fail speed test.
//
// bench train: the machine's own sgemm ceiling (OpenBLAS, square 1024-2048 GEMMs, best of several), then
// full training steps (forward, masked cross-entropy + L2Wrap, backward, AdamW) of a random RWKV-7 of
// the given size; reports tokens/s, achieved GFLOP/s (rwkv7_flops_per_token) and the fraction of the
// sgemm ceiling, plus the activation memory per micro-batch.
// bench generate: RNN-mode decoding tokens/s at batch 1, and the time per token early vs late in a long
// generation (constant time and memory per token is the point of an RNN).
// bench data: datasets/bench_data.c; bench multimodal: trainer/bench_mm.c (ModRWKV decode, prefill, stages).
#include "trainer/bench.h"
#include "trainer/bench_mm.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/data_tools.h"
#include "trainer/optimizer.h"
#include "trainer/rwkv7.h"
#include "trainer/rwkv7_init.h"

typedef struct BenchArgs {
    int n_layer, n_embd, vocab, ctx, batch, steps, threads, tokens, json;
} BenchArgs;

static const char* BENCH_HELP =
    "usage: modrwkv bench train|generate [--n-layer 6] [--n-embd 512] [--vocab 65536] [--ctx 512]\n"
    "                     [--batch 1] [--steps 3] [--tokens 256] [--threads 0] [--json]\n"
    "       modrwkv bench data [--dir DATASET] [--image-size 384] [--seconds 10]\n"
    "       modrwkv bench multimodal [--layers 6] [--embd 512] ... (see modrwkv bench multimodal --help)\n"
    "  train     tokens/s and GFLOP/s of full training steps, vs this machine's measured sgemm GFLOP/s\n"
    "  generate  RNN-mode decode tokens/s (batch 1) and time per token early vs late in the sequence\n"
    "  data      the shard loader's samples/s and MB/s with JPEG decode + resize, on DATASET or on a\n"
    "            generated image-text set (256 JPEGs of 640x480), against the 1.5B/ctx-2048 trainer's need\n"
    "  multimodal  ModRWKV (ViT + projector + RWKV-7): decode ms/token after a short vs a long image prompt,\n"
    "            prefill time vs prompt tokens, training step time of stage 1 vs stage 2\n";

// `bench data`: datasets/bench_data.c measures the streaming loader.
static int bench_data(int argc, char** argv) {
    static struct option opts[] = {{"dir", 1, 0, 'd'}, {"image-size", 1, 0, 'i'}, {"seconds", 1, 0, 's'},
                                   {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char* dir = NULL;
    int size = 384, seconds = 10, ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': dir = optarg; break;
        case 'i': size = atoi(optarg); break;
        case 's': seconds = atoi(optarg); break;
        case 'h': fputs(BENCH_HELP, stdout); return 0;
        default: fatal("bench data: unknown option or missing value in '%s': run `modrwkv bench --help`", argv[optind - 1]);
        }
    }
    if (size < 1 || seconds < 1) fatal("bench data: --image-size and --seconds must be positive");
    Error e = {{0}};
    if (data_bench(dir, size, seconds, stdout, &e) != 0) fatal("%s", e.msg);
    return 0;
}

static int parse_args(int argc, char** argv, BenchArgs* a) {
    static struct option opts[] = {{"n-layer", 1, 0, 'L'}, {"n-embd", 1, 0, 'C'}, {"vocab", 1, 0, 'V'},
                                   {"ctx", 1, 0, 'T'}, {"batch", 1, 0, 'B'}, {"steps", 1, 0, 's'},
                                   {"threads", 1, 0, 'j'}, {"tokens", 1, 0, 'n'}, {"json", 0, 0, 'J'},
                                   {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    *a = (BenchArgs){.n_layer = 6, .n_embd = 512, .vocab = 65536, .ctx = 512, .batch = 1, .steps = 3, .tokens = 256};
    int ch;
    optind = 2;  // argv[0] = "bench", argv[1] = what
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char* end = NULL;
        int v = optarg ? (int)strtol(optarg, &end, 10) : 0;
        if (optarg && (!*optarg || *end)) fatal("bench: '%s' expects an integer, got '%s'", argv[optind - 2], optarg);
        switch (ch) {
        case 'L': a->n_layer = v; break;
        case 'C': a->n_embd = v; break;
        case 'V': a->vocab = v; break;
        case 'T': a->ctx = v; break;
        case 'B': a->batch = v; break;
        case 's': a->steps = v; break;
        case 'j': a->threads = v; break;
        case 'n': a->tokens = v; break;
        case 'J': a->json = 1; break;
        case 'h': fputs(BENCH_HELP, stdout); exit(0);
        default: fatal("bench: unknown option or missing value in '%s': run `modrwkv bench --help`", argv[optind - 1]);
        }
    }
    if (a->n_layer < 1 || a->n_embd < 64 || a->vocab < 2 || a->ctx < 1 || a->batch < 1 || a->steps < 1)
        fatal("bench: sizes must be positive (n_embd >= 64)");
    return 0;
}

// Best sgemm GFLOP/s over square sizes 1024 and 2048.
static double sgemm_ceiling(Backend* be) {
    double best = 0;
    for (int n = 1024; n <= 2048; n *= 2) {
        float* A = be->alloc(be, (size_t)n * n * sizeof(float));
        float* B = be->alloc(be, (size_t)n * n * sizeof(float));
        float* C = be->alloc(be, (size_t)n * n * sizeof(float));
        for (size_t i = 0; i < (size_t)n * n; i++) A[i] = B[i] = (float)(i % 7) * 0.1f;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now_seconds();
            be->k.gemm(be, 0, 1, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
            double g = 2.0 * n * n * n / (now_seconds() - t0) / 1e9;
            if (g > best) best = g;
        }
        be->free(be, A);
        be->free(be, B);
        be->free(be, C);
    }
    return best;
}

static RWKV7* bench_model(Backend* be, const BenchArgs* a) {
    RWKV7Config c = {.n_layer = a->n_layer, .n_embd = a->n_embd, .vocab_size = a->vocab, .head_size = 64};
    Error e = {{0}};
    RWKV7* m = rwkv7_create(&c, be, &e);
    if (!m) fatal("bench: %s", e.msg);
    rwkv7_init(m, RWKV7_INIT_RANDOM, 1);
    return m;
}

static int bench_train(const BenchArgs* a) {
    Backend* be = backend_cpu_create(a->threads);
    double ceiling = sgemm_ceiling(be);
    RWKV7* m = bench_model(be, a);
    RWKV7Acts* acts = rwkv7_acts_create(m, a->batch, a->ctx, 1);
    float* grads = be->alloc(be, m->n_params * sizeof(float));
    ModelParams G = {.blocks = xcalloc((size_t)m->cfg.n_layer, sizeof(BlockParams))};
    rwkv7_point(m, &G, grads);
    Comm* self = comm_self_create();
    Error e = {{0}};
    DataParallel* opt = optimizer_create(m, self, 0, &e);
    if (!opt) fatal("bench: %s", e.msg);
    TrainConfig tc = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.99f, .adam_eps = 1e-18f, .weight_decay = 0.001f};
    size_t BT = (size_t)a->batch * a->ctx;
    int32_t* tok = xmalloc(BT * sizeof(int32_t));
    int32_t* tgt = xmalloc(BT * sizeof(int32_t));
    for (size_t i = 0; i < BT; i++) {
        tok[i] = (int32_t)((i * 2654435761u) % (unsigned)a->vocab);
        tgt[i] = (int32_t)((i * 40503u + 7) % (unsigned)a->vocab);
    }
    double best = 1e30, total = 0;
    for (int s = 0; s <= a->steps; s++) {  // step 0 warms up
        double t0 = now_seconds();
        be->k.zero(be, grads, m->n_params);
        rwkv7_forward(m, acts, tok, NULL);
        rwkv7_loss(m, acts, tgt, 1.0f, 1, NULL);
        rwkv7_backward(m, acts, &G);
        dp_reduce_gradients(opt, grads);  // one rank: a no-op, as in a single-process training step
        DPAdamW h = optimizer_step_params(&tc, tc.lr, 1.0f, s + 1);
        dp_update(opt, m->params_memory, grads, &h);
        double dt = now_seconds() - t0;
        if (s > 0) {
            total += dt;
            if (dt < best) best = dt;
        }
    }
    double tps = BT / best, flops = rwkv7_flops_per_token(&m->cfg, a->ctx) * tps / 1e9;
    double act_mb = acts->n_floats * 4.0 / 1e6;
    if (a->json)
        printf("{\"bench\":\"train\",\"impl\":\"modrwkv\",\"n_layer\":%d,\"n_embd\":%d,\"vocab\":%d,\"ctx\":%d,\"batch\":%d,"
               "\"threads\":%d,\"n_params\":%zu,\"step_s\":%.4f,\"tokens_per_s\":%.1f,\"gflops\":%.2f,"
               "\"sgemm_gflops\":%.2f,\"fraction_of_sgemm\":%.3f,\"activation_mb\":%.1f}\n",
               a->n_layer, a->n_embd, a->vocab, a->ctx, a->batch, be->n_threads, m->n_params, best, tps, flops, ceiling,
               flops / ceiling, act_mb);
    else
        printf("bench train: L%d C%d V%d ctx %d batch %d, %d threads, %.2fM params\n"
               "  step %.3f s (best of %d, mean %.3f s) | %.0f tokens/s | %.2f GFLOP/s | sgemm ceiling %.2f GFLOP/s "
               "| %.1f%% of sgemm | activations %.1f MB\n",
               a->n_layer, a->n_embd, a->vocab, a->ctx, a->batch, be->n_threads, m->n_params / 1e6, best, a->steps,
               total / a->steps, tps, flops, ceiling, 100 * flops / ceiling, act_mb);
    free(tok);
    free(tgt);
    free(G.blocks);
    dp_free(opt);
    comm_free(self);
    be->free(be, grads);
    rwkv7_acts_free(m, acts);
    rwkv7_free(m);
    backend_destroy(be);
    return 0;
}

static int bench_generate(const BenchArgs* a) {
    Backend* be = backend_cpu_create(a->threads);
    RWKV7* m = bench_model(be, a);
    RWKV7Acts* one = rwkv7_acts_create(m, 1, 1, 0);
    RWKV7State* st = rwkv7_state_create(m, 1);
    int n = a->tokens < 32 ? 32 : a->tokens, q = n / 4;
    int32_t id = 1;
    for (int i = 0; i < 8; i++) rwkv7_forward(m, one, &id, st);  // warm-up (thread pool, caches), not timed
    rwkv7_state_reset(m, st);
    double t_first = 0, t_last = 0, t0 = now_seconds();
    for (int i = 0; i < n; i++) {
        double ts = now_seconds();
        rwkv7_forward(m, one, &id, st);
        int best = 0;
        for (int v = 1; v < m->cfg.vocab_size; v++)
            if (one->logits[v] > one->logits[best]) best = v;
        id = best;
        double dt = now_seconds() - ts;
        if (i < q) t_first += dt;
        if (i >= n - q) t_last += dt;
    }
    double total = now_seconds() - t0;
    double state_mb = (double)m->cfg.n_layer * m->cfg.n_embd * (2 + m->cfg.head_size) * 4 / 1e6;
    if (a->json)
        printf("{\"bench\":\"generate\",\"impl\":\"modrwkv\",\"n_layer\":%d,\"n_embd\":%d,\"vocab\":%d,\"tokens\":%d,"
               "\"tokens_per_s\":%.1f,\"ms_per_token_first_quarter\":%.3f,\"ms_per_token_last_quarter\":%.3f,"
               "\"state_mb\":%.3f}\n",
               a->n_layer, a->n_embd, a->vocab, n, n / total, 1e3 * t_first / q, 1e3 * t_last / q, state_mb);
    else
        printf("bench generate: L%d C%d V%d, %d tokens at batch 1: %.1f tokens/s | %.3f ms/token in the first "
               "quarter, %.3f ms/token in the last | state %.3f MB (constant)\n",
               a->n_layer, a->n_embd, a->vocab, n, n / total, 1e3 * t_first / q, 1e3 * t_last / q, state_mb);
    rwkv7_state_free(m, st);
    rwkv7_acts_free(m, one);
    rwkv7_free(m);
    backend_destroy(be);
    return 0;
}

int bench_main(int argc, char** argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(BENCH_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "data") == 0) return bench_data(argc, argv);
    if (strcmp(argv[1], "multimodal") == 0) return bench_multimodal(argc, argv);
    BenchArgs a;
    parse_args(argc, argv, &a);
    if (strcmp(argv[1], "train") == 0) return bench_train(&a);
    if (strcmp(argv[1], "generate") == 0) return bench_generate(&a);
    fatal("bench: unknown benchmark '%s': use train, generate, data or multimodal", argv[1]);
}
