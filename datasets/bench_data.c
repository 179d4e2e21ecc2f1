// bench_data.c — data_bench (data_tools.h): the streaming loader's throughput on image-text shards, images
// decoded and resized on its prefetch thread, against what the CUDA trainer will consume.
//
// Contract: runs the loader (batch 8, shuffle buffer 64, prefetch 4, images preprocessed to image_size, 384
// when 0) for `seconds` after a warm-up batch and prints samples/s, tokens/s, MB/s of payload read, the CPU
// time of the prefetch thread (all the work runs there) and samples per CPU second — what one dedicated core
// sustains, independent of other load on the machine — and the goal:
//   a 1.5B model trains at 6 * 1.5e9 FLOP/token; at 45% MFU of an H100's ~990 TFLOP/s bf16 dense that is
//   445.5e12 / 9e9 = 49.5k tokens/s = 24.2 samples/s of 2048 tokens; the loader must sustain 5x = 121/s.
// With dir NULL (or "") it first writes a temporary image-text dataset — 256 samples of 640x480 JPEG
// pictures tiled from the handwritten digits (datasets/demo/digits.csv.gz) with grain, each with 576 placeholder
// tokens and a short question and answer — and removes it afterwards.
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets/data_tools.h"
#include "datasets/shard.h"
#include "datasets/shard_loader.h"

enum { BENCH_SAMPLES = 256, BENCH_W = 640, BENCH_H = 480, BENCH_IMAGE_TOKENS = 576, BENCH_DIGITS = 96 };

static const double GOAL_FLOP_PER_TOKEN = 6.0 * 1.5e9, GOAL_MFU = 0.45, GOAL_PEAK = 990e12, GOAL_CTX = 2048,
                    GOAL_FACTOR = 5.0;

// ---------------------------------------------------------------------------- the synthetic dataset

// Reads the first BENCH_DIGITS digits (8x8, values 0..16) as 0..255.
static int read_digits(uint8_t digits[BENCH_DIGITS][64], Error* e) {
    const char* path = MODRWKV_SOURCE_DIR "/datasets/demo/digits.csv.gz";
    gzFile f = gzopen(path, "rb");
    if (!f) return errorf(e, "%s: cannot open the digits data (needed for the synthetic benchmark set)", path);
    char line[1024];
    int rc = 0;
    for (int d = 0; d < BENCH_DIGITS && rc == 0; d++) {
        char* p = gzgets(f, line, sizeof line);
        for (int i = 0; p && i < 64; i++) {
            long v = strtol(p, &p, 10);
            digits[d][i] = (uint8_t)((v < 0 ? 0 : v > 16 ? 16 : v) * 255 / 16);
            if (*p == ',') p++;
        }
        if (!p) rc = errorf(e, "%s: fewer than %d digits", path, BENCH_DIGITS);
    }
    gzclose(f);
    return rc;
}

// A 640x480 RGB picture: a 8x6 grid of 80x80 digit tiles (bilinear 10x enlargements, tinted per tile) with
// pixel grain, so that its JPEG (~100 KB at quality 90) costs about what a photo of that size costs to decode.
static void bench_picture(uint8_t digits[BENCH_DIGITS][64], int sample, uint8_t* rgb) {
    for (int y = 0; y < BENCH_H; y++)
        for (int x = 0; x < BENCH_W; x++) {
            int tile = (y / 80) * 8 + x / 80, d = (sample * 7 + tile) % BENCH_DIGITS;
            float fy = (float)(y % 80) / 10.0f - 0.45f, fx = (float)(x % 80) / 10.0f - 0.45f;
            int y0 = fy < 0 ? 0 : (int)fy, x0 = fx < 0 ? 0 : (int)fx;
            int y1 = y0 < 7 ? y0 + 1 : 7, x1 = x0 < 7 ? x0 + 1 : 7;
            float wy = fy - (float)y0, wx = fx - (float)x0;
            wy = wy < 0 ? 0 : wy > 1 ? 1 : wy;
            wx = wx < 0 ? 0 : wx > 1 ? 1 : wx;
            const uint8_t* g = digits[d];
            float v = (1 - wy) * ((1 - wx) * g[y0 * 8 + x0] + wx * g[y0 * 8 + x1]) +
                      wy * ((1 - wx) * g[y1 * 8 + x0] + wx * g[y1 * 8 + x1]);
            uint8_t* px = rgb + ((size_t)y * BENCH_W + (size_t)x) * 3;
            uint32_t grain = ((uint32_t)(y * BENCH_W + x) * 2654435761u + (uint32_t)sample * 40503u) >> 27;   // 0..31
            for (int c = 0; c < 3; c++) {
                float level = v * (float)(3 + (tile + c) % 5) / 7.0f + 8.0f + (float)grain;
                px[c] = (uint8_t)(level > 255.0f ? 255.0f : level);
            }
        }
}

static int add_bench_sample(ShardWriter* w, tjhandle tj, uint8_t digits[BENCH_DIGITS][64], uint8_t* rgb, int i,
                            Error* e) {
    bench_picture(digits, i, rgb);
    unsigned char* jpg = NULL;
    unsigned long n_jpg = 0;
    if (tjCompress2(tj, rgb, BENCH_W, 0, BENCH_H, TJPF_RGB, &jpg, &n_jpg, TJSAMP_420, 90, 0) != 0)
        return errorf(e, "bench: JPEG encoding failed: %s", tjGetErrorStr2(tj));
    enum { PROMPT = 24, ANSWER = 40, N = 1 + BENCH_IMAGE_TOKENS + PROMPT + ANSWER };
    uint32_t tokens[N];
    uint8_t mask[N];
    for (int t = 0; t < N; t++) {
        int image = t >= 1 && t <= BENCH_IMAGE_TOKENS;
        tokens[t] = image ? SHARD_PLACEHOLDER_IMAGE : (uint32_t)(32 + (t * 31 + i) % 90);
        mask[t] = t >= N - ANSWER;
    }
    char key[32];
    snprintf(key, sizeof key, "bench-%05d", i);
    MediaItem m = {.kind = MEDIA_IMAGE_ENCODED, .placeholder_pos = 1, .n_placeholder = BENCH_IMAGE_TOKENS,
                   .bytes = jpg, .n_bytes = n_jpg};
    Sample s = {.key = key, .tokens = tokens, .loss_mask = mask, .n_tokens = N, .media = &m, .n_media = 1};
    int rc = shard_writer_add(w, &s, e);
    tjFree(jpg);
    return rc;
}

static int write_bench_dataset(const char* dir, Error* e) {
    uint8_t digits[BENCH_DIGITS][64];
    if (read_digits(digits, e) != 0) return -1;
    ShardWriterOptions o = {.dir = dir, .split = "train", .max_samples = 64, .compression = 1, .tokenizer = "world",
                            .vocab_size = 65536, .source = "modrwkv bench data (digits tiled 640x480)", .world = 1};
    ShardWriter* w = shard_writer_open(&o, e);
    if (!w) return -1;
    tjhandle tj = tjInitCompress();
    uint8_t* rgb = xmalloc((size_t)BENCH_W * BENCH_H * 3);   // (480, 640, 3)
    int rc = tj ? 0 : errorf(e, "bench: cannot start the JPEG encoder");
    for (int i = 0; i < BENCH_SAMPLES && rc == 0; i++) rc = add_bench_sample(w, tj, digits, rgb, i, e);
    free(rgb);
    if (tj) tjDestroy(tj);
    Error close_err = {{0}};
    int rc_close = shard_writer_close(w, &close_err);   // frees w in any case
    if (rc == 0 && rc_close != 0) {
        *e = close_err;
        rc = -1;
    }
    return rc;
}

// Removes the temporary dataset directory and the files in it.
static void remove_dir(const char* dir) {
    DIR* d = opendir(dir);
    if (!d) return;
    for (struct dirent* de; (de = readdir(d));) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
    rmdir(dir);
}

// ---------------------------------------------------------------------------- the measurement

static int run_bench(const char* dir, int image_size, int seconds, FILE* out, Error* e) {
    ShardLoaderOptions o;
    shard_loader_options_default(&o);
    o.dir = dir;
    o.batch_size = 8;
    o.shuffle_buffer = 64;
    o.ctx_len = 2048;
    o.truncate = 1;
    o.image_size = image_size;
    ShardLoader* L = shard_loader_open(&o, e);
    if (!L) return -1;
    ShardBatch* b = NULL;
    int rc = shard_loader_next(L, &b, e);   // warm-up: fills the shuffle buffer
    shard_batch_free(b);
    ShardLoaderStats s0 = shard_loader_stats(L);
    double t0 = now_seconds(), t = t0;
    int64_t samples = 0, tokens = 0, images = 0;
    while (rc == 0 && t - t0 < (double)seconds) {
        if ((rc = shard_loader_next(L, &b, e)) != 0) break;
        samples += b->n_samples;
        for (int i = 0; i < b->n_samples; i++) tokens += b->samples[i].length;
        for (int i = 0; i < b->n_media; i++)
            images += b->media[i].kind == MEDIA_IMAGE_ENCODED || b->media[i].kind == MEDIA_IMAGE_PIXELS;
        shard_batch_free(b);
        t = now_seconds();
    }
    ShardLoaderStats s1 = shard_loader_stats(L);
    double wall = t - t0, cpu = s1.prefetch_cpu_s - s0.prefetch_cpu_s;
    if (rc == 0) {
        double sps = (double)samples / wall, per_core = cpu > 0 ? (double)samples / cpu : 0.0;
        fprintf(out, "loader: %s\n", shard_loader_describe(L));
        fprintf(out, "loader: %lld samples (%lld images decoded + resized to %dx%d) in %.2f s: %.1f samples/s, "
                "%.0f tokens/s, %.1f MB/s of payload read\n", (long long)samples, (long long)images, image_size,
                image_size, wall, sps, (double)tokens / wall, (double)(s1.bytes_read - s0.bytes_read) / wall / 1e6);
        fprintf(out, "loader: the prefetch thread used %.2f CPU s = %.0f%% of one core: %.1f samples per CPU second "
                "(what one dedicated core sustains)\n", cpu, 100.0 * cpu / wall, per_core);
        fprintf(out, "loader: peak %lld samples held in memory (shuffle buffer %d + prefetch %d x batch %d)\n",
                (long long)s1.peak_live_samples, o.shuffle_buffer, o.prefetch, o.batch_size);
        double tps = GOAL_MFU * GOAL_PEAK / GOAL_FLOP_PER_TOKEN, need = tps / GOAL_CTX;
        fprintf(out, "goal: 1.5B model, ctx %.0f, one H100: 6 x 1.5e9 = %.1e FLOP/token; %.0f%% MFU of %.0f TFLOP/s = "
                "%.1f TFLOP/s -> %.0f tokens/s = %.1f samples/s of %.0f tokens; %.0fx = %.0f samples/s\n",
                GOAL_CTX, GOAL_FLOP_PER_TOKEN, 100 * GOAL_MFU, GOAL_PEAK / 1e12, GOAL_MFU * GOAL_PEAK / 1e12, tps,
                need, GOAL_CTX, GOAL_FACTOR, GOAL_FACTOR * need);
        fprintf(out, "goal: one core sustains %.1f samples/s = %.1fx the trainer's need (wall clock here: %.1fx): "
                "%s\n", per_core, per_core / need, sps / need, per_core >= GOAL_FACTOR * need ? "MET" : "NOT MET");
    }
    shard_loader_close(L);
    return rc;
}

int data_bench(const char* dir, int image_size, int seconds, FILE* out, Error* e) {
    if (seconds < 1) return errorf(e, "bench data: seconds %d must be >= 1", seconds);
    if (image_size < 0 || image_size > 8192) return errorf(e, "bench data: image size %d must be 0..8192", image_size);
    if (image_size == 0) image_size = 384;
    if (dir && dir[0]) return run_bench(dir, image_size, seconds, out, e);
    const char* tmp = getenv("TMPDIR");
    char made[4096];
    snprintf(made, sizeof made, "%s/modrwkv-bench-data-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(made)) return errorf(e, "%s: cannot create a temporary directory (set TMPDIR)", made);
    double t0 = now_seconds();
    int rc = write_bench_dataset(made, e);
    if (rc == 0) {
        fprintf(out, "data: wrote %d synthetic image-text samples (640x480 JPEG, %d image tokens) in %.1f s to %s\n",
                BENCH_SAMPLES, BENCH_IMAGE_TOKENS, now_seconds() - t0, made);
        rc = run_bench(made, image_size, seconds, out, e);
    }
    remove_dir(made);
    return rc;
}
