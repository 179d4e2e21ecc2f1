// test_image.c — image decoding and preprocessing (datasets/image.h) on real pixels: handwritten digits
// (datasets/demo/digits.csv.gz, 8x8 values 0..16 scaled to 0..255) encoded here as PNG (must decode to the
// exact pixels) and JPEG quality 95 (PSNR > 40 dB); corrupt, truncated and foreign bytes are rejected with
// a message naming the source; the resampler keeps constants constant, normalises exactly, pads with the
// right geometry and matches bilinear / antialiasing weights computed by hand.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <zlib.h>

#include "datasets/image.h"
#include "tests/testutil.h"

enum { N_DIGITS = 64 };

// The first N_DIGITS digits as (8, 8) pixels scaled from 0..16 to 0..255.
static uint8_t g_digits[N_DIGITS][64];

static void load_digits(void) {
    const char* path = src_path("datasets/demo/digits.csv.gz");
    gzFile f = gzopen(path, "rb");
    if (!f) fatal("cannot open %s", path);
    char line[1024];
    for (int d = 0; d < N_DIGITS; d++) {
        if (!gzgets(f, line, sizeof line)) fatal("%s: fewer than %d lines", path, N_DIGITS);
        char* p = line;
        for (int i = 0; i < 64; i++) {
            long v = strtol(p, &p, 10);
            if (v < 0 || v > 16 || (i < 63 && *p != ',')) fatal("%s: line %d is not 64 values 0..16", path, d + 1);
            g_digits[d][i] = (uint8_t)((v * 255 + 8) / 16);
            p++;
        }
    }
    gzclose(f);
}

// A (32, 32, 3) RGB picture: digits 0, 1, 2 in the R, G, B channels, each enlarged 4x (nearest).
static void digit_picture(uint8_t* rgb) {
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int c = 0; c < 3; c++) rgb[(y * 32 + x) * 3 + c] = g_digits[c][(y / 4) * 8 + x / 4];
}

// The digit picture in rgb ((32, 32, 3)) and its PNG encoding in *png (*n bytes; the caller frees it).
static int digit_png(uint8_t* rgb, uint8_t** png, size_t* n, Error* e) {
    digit_picture(rgb);
    *png = NULL;
    *n = 0;
    return image_encode_png(rgb, 32, 32, 3, png, n, e);
}

// ---------------------------------------------------------------------------- decoding

static int test_png_round_trip(void) {
    int fails = 0;
    uint8_t rgb[32 * 32 * 3];
    uint8_t* png;
    size_t n;
    Error e = {{0}};
    Image im;
    int rc = digit_png(rgb, &png, &n, &e);
    fails += check_true("png rgb: encodes", rc == 0 && n > 8, e.msg);
    rc = image_decode(png, n, &im, "digits.png", &e);
    fails += check_true("png rgb: decodes to 32x32", rc == 0 && im.height == 32 && im.width == 32, e.msg);
    fails += check_true("png rgb: pixels identical", rc == 0 && memcmp(im.rgb, rgb, sizeof rgb) == 0, "");
    image_free(&im);
    free(png);

    // grey input becomes RGB with three equal channels
    rc = image_encode_png(g_digits[7], 8, 8, 1, &png, &n, &e);
    rc = rc == 0 ? image_decode(png, n, &im, "grey.png", &e) : -1;
    int same = rc == 0 && im.height == 8 && im.width == 8;
    for (int i = 0; same && i < 64; i++)
        for (int c = 0; c < 3; c++) same &= im.rgb[3 * i + c] == g_digits[7][i];
    fails += check_true("png grey: decodes to RGB with the exact grey values", same, e.msg);
    image_free(&im);
    free(png);
    return fails;
}

static uint8_t* encode_jpeg(const uint8_t* rgb, int h, int w, int quality, unsigned long* n) {
    tjhandle tj = tjInitCompress();
    unsigned char* buf = NULL;
    if (!tj || tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &buf, n, TJSAMP_444, quality, TJFLAG_ACCURATEDCT) != 0)
        fatal("test: JPEG encoding failed: %s", tjGetErrorStr2(tj));
    tjDestroy(tj);
    uint8_t* out = xmalloc(*n);
    memcpy(out, buf, *n);
    tjFree(buf);
    return out;
}

static int test_jpeg_quality(void) {
    uint8_t rgb[32 * 32 * 3];
    digit_picture(rgb);
    unsigned long n = 0;
    uint8_t* jpg = encode_jpeg(rgb, 32, 32, 95, &n);
    Error e = {{0}};
    Image im;
    int rc = image_decode(jpg, n, &im, "digits.jpg", &e);
    int fails = check_true("jpeg q95: decodes to 32x32", rc == 0 && im.height == 32 && im.width == 32, e.msg);
    double se = 0;
    for (size_t i = 0; rc == 0 && i < sizeof rgb; i++) se += pow((double)im.rgb[i] - rgb[i], 2);
    double psnr = 10.0 * log10(255.0 * 255.0 / (se / (double)sizeof rgb + 1e-12));
    char detail[64];
    snprintf(detail, sizeof detail, "PSNR %.2f dB", psnr);
    printf("jpeg q95: PSNR %.2f dB (want > 40)\n", psnr);
    fails += check_true("jpeg q95: PSNR > 40 dB", rc == 0 && psnr > 40.0, detail);
    image_free(&im);
    free(jpg);
    return fails;
}

// Every corruption must give -1, a one-line message naming the source, and no output buffer.
static int expect_bad(const char* label, const uint8_t* bytes, size_t n, const char* must_contain) {
    Error e = {{0}};
    Image im;
    int rc = image_decode(bytes, n, &im, "sample-0042.img", &e);
    int fails = expect_reject(label, rc, &e, "sample-0042.img", must_contain);
    fails += check_true("  ... and returns no pixels", im.rgb == NULL, "");
    image_free(&im);
    return fails;
}

static int test_bad_bytes(void) {
    int fails = 0;
    uint8_t rgb[32 * 32 * 3];
    uint8_t* png;
    size_t n;
    Error e = {{0}};
    if (digit_png(rgb, &png, &n, &e) != 0) fatal("test: %s", e.msg);
    fails += expect_bad("png truncated to half", png, n / 2, "PNG");
    fails += expect_bad("png truncated after the header", png, 40, "PNG");
    fails += expect_bad("png without its IEND chunk", png, n - 12, "PNG");
    uint8_t* bad = xmalloc(n);
    memcpy(bad, png, n);
    bad[n / 2] ^= 0x5a;   // inside IDAT: the chunk CRC no longer matches
    fails += expect_bad("png with a flipped byte in its image data", bad, n, "PNG");
    memcpy(bad, png, n);
    bad[5] = 'O';         // the signature no longer says PNG
    fails += expect_bad("png with a damaged signature", bad, n, "neither JPEG nor PNG");
    memcpy(bad, png, n);
    bad[12 + 4 + 1] = 0x01;   // IHDR width 32 -> 65568: over the size limit (CRC recomputed so only the size is wrong)
    uint32_t crc = (uint32_t)crc32(0, bad + 12, 4 + 13);
    for (int i = 0; i < 4; i++) bad[12 + 4 + 13 + i] = (uint8_t)(crc >> (24 - 8 * i));
    fails += expect_bad("png declaring 65568 x 32 pixels (over the size limit)", bad, n, "limit");
    memcpy(bad, png, n);
    bad[20] ^= 0x01;      // IHDR height changed without fixing the CRC
    fails += expect_bad("png whose header CRC is wrong", bad, n, "CRC");
    free(bad);
    free(png);

    unsigned long jn = 0;
    uint8_t* jpg = encode_jpeg(rgb, 32, 32, 95, &jn);
    fails += expect_bad("jpeg truncated to half", jpg, jn / 2, "JPEG");
    fails += expect_bad("jpeg truncated to its first 3 bytes", jpg, 3, "JPEG");
    bad = xmalloc(jn);
    memcpy(bad, jpg, jn);
    for (size_t i = jn / 3; i < jn / 3 + 40; i++) bad[i] = 0xff;   // garbage markers in the scan
    fails += expect_bad("jpeg with a corrupt scan", bad, jn, "JPEG");
    free(bad);
    free(jpg);

    const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0};
    fails += expect_bad("a GIF", gif, sizeof gif, "neither JPEG nor PNG");
    fails += expect_bad("zero bytes", gif, 0, "empty");
    return fails;
}

// ---------------------------------------------------------------------------- preprocessing

static const float MEAN0[3] = {0, 0, 0}, STD1[3] = {1, 1, 1};

static int test_constant_stays_constant(void) {
    int fails = 0;
    Image im = {6, 10, xmalloc(6 * 10 * 3)};
    for (int i = 0; i < 6 * 10; i++) im.rgb[3 * i] = 37, im.rgb[3 * i + 1] = 128, im.rgb[3 * i + 2] = 250;
    const int sizes[3] = {3, 6, 23};   // shrink (antialiased), same height, enlarge
    for (int k = 0; k < 3; k++) {
        int s = sizes[k];
        float* out = xmalloc((size_t)3 * s * s * sizeof *out);
        float* want = xmalloc((size_t)3 * s * s * sizeof *want);
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < s * s; i++) want[c * s * s + i] = (float)im.rgb[c] / 255.0f;
        Error e = {{0}};
        int rc = image_preprocess(&im, s, "resize", MEAN0, STD1, out, &e);
        char name[96];
        snprintf(name, sizeof name, "resize 6x10 constant image to %dx%d stays constant", s, s);
        fails += rc != 0 ? check_true(name, 0, e.msg) : check_close_abs(name, out, want, (size_t)3 * s * s, 1e-6);
        free(out);
        free(want);
    }
    image_free(&im);
    return fails;
}

static int test_normalisation_exact(void) {
    // Same size: the filter is the identity, so out must be exactly (v/255 - mean) / std.
    Image im = {8, 8, xmalloc(8 * 8 * 3)};
    for (int i = 0; i < 64; i++)
        for (int c = 0; c < 3; c++) im.rgb[3 * i + c] = g_digits[c + 3][i];
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    float out[3 * 64], want[3 * 64];
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 64; i++) want[c * 64 + i] = ((float)im.rgb[3 * i + c] / 255.0f - mean[c]) / std[c];
    Error e = {{0}};
    int rc = image_preprocess(&im, 8, "resize", mean, std, out, &e);
    int fails = rc != 0 ? check_true("normalise (CLIP mean/std), channel-major", 0, e.msg)
                        : check_close_abs("normalise (CLIP mean/std), channel-major", out, want, 3 * 64, 0.0);
    image_free(&im);
    return fails;
}

static int test_pad_geometry(void) {
    int fails = 0;
    // A wide 4x8 image of value 204 into 8x8: content rows 2..5, mean-colour (0 after normalising) elsewhere.
    const float mean[3] = {0.5f, 0.25f, 0.75f}, std[3] = {0.5f, 0.5f, 0.25f};
    for (int tall = 0; tall < 2; tall++) {
        Image im = {tall ? 8 : 4, tall ? 4 : 8, xmalloc(32 * 3)};
        memset(im.rgb, 204, 32 * 3);
        float out[3 * 64], want[3 * 64];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++) {
                    int inside = tall ? (x >= 2 && x < 6) : (y >= 2 && y < 6);
                    want[c * 64 + y * 8 + x] = inside ? (204.0f / 255.0f - mean[c]) / std[c] : 0.0f;
                }
        Error e = {{0}};
        int rc = image_preprocess(&im, 8, "pad", mean, std, out, &e);
        const char* name = tall ? "pad 8x4 (tall) into 8x8: columns 2..5 hold the image, the rest the mean colour"
                                : "pad 4x8 (wide) into 8x8: rows 2..5 hold the image, the rest the mean colour";
        fails += rc != 0 ? check_true(name, 0, e.msg) : check_close_abs(name, out, want, 3 * 64, 1e-6);
        image_free(&im);
    }
    return fails;
}

static int test_bilinear_by_hand(void) {
    int fails = 0;
    // Enlarging 2x2 -> 4x4: output centres fall at input coordinates -0.25, 0.25, 0.75, 1.25 (pixel units,
    // centres at +0.5), so each axis uses weights (1, 0), (.75, .25), (.25, .75), (0, 1).
    Image im = {2, 2, xmalloc(12)};
    const uint8_t v[4] = {0, 100, 200, 40};   // [[0, 100], [200, 40]]
    for (int i = 0; i < 4; i++) im.rgb[3 * i] = im.rgb[3 * i + 1] = im.rgb[3 * i + 2] = v[i];
    const float wa[4][2] = {{1, 0}, {.75f, .25f}, {.25f, .75f}, {0, 1}};
    float out[3 * 16], want[3 * 16];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            float s = 0;
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) s += wa[y][i] * wa[x][j] * v[i * 2 + j];
            for (int c = 0; c < 3; c++) want[c * 16 + y * 4 + x] = s / 255.0f;
        }
    Error e = {{0}};
    int rc = image_preprocess(&im, 4, "resize", MEAN0, STD1, out, &e);
    fails += rc != 0 ? check_true("bilinear 2x2 -> 4x4 by hand", 0, e.msg)
                     : check_close_abs("bilinear 2x2 -> 4x4 by hand", out, want, 48, 1e-6);
    image_free(&im);

    // Shrinking 4 -> 2 columns antialiases: a triangle of radius 2 input pixels around centres 1 and 3
    // gives weights (.75, .75, .25) / 1.75 on columns 0..2 and (.25, .75, .75) / 1.75 on columns 1..3.
    Image wide = {4, 4, xmalloc(48)};
    const uint8_t col[4] = {10, 50, 90, 250};
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            for (int c = 0; c < 3; c++) wide.rgb[(y * 4 + x) * 3 + c] = col[x];
    float left = (.75f * 10 + .75f * 50 + .25f * 90) / 1.75f, right = (.25f * 50 + .75f * 90 + .75f * 250) / 1.75f;
    float out2[12], want2[12];
    for (int i = 0; i < 12; i++) want2[i] = (i % 2 == 0 ? left : right) / 255.0f;
    rc = image_preprocess(&wide, 2, "resize", MEAN0, STD1, out2, &e);
    fails += rc != 0 ? check_true("antialiased 4 -> 2 by hand", 0, e.msg)
                     : check_close_abs("antialiased 4 -> 2 by hand", out2, want2, 12, 1e-6);
    image_free(&wide);
    return fails;
}

static int test_preprocess_rejects(void) {
    Image im = {2, 2, xcalloc(12, 1)};
    float out[3 * 4];
    Error e = {{0}};
    const float zero_std[3] = {1, 0, 1};
    int fails = expect_reject("mode 'crop' is refused", image_preprocess(&im, 2, "crop", MEAN0, STD1, out, &e), &e,
                              "crop", "resize|pad");
    fails += expect_reject("std 0 is refused", image_preprocess(&im, 2, "resize", MEAN0, zero_std, out, &e), &e,
                           "std", NULL);
    fails += expect_reject("size 0 is refused", image_preprocess(&im, 0, "resize", MEAN0, STD1, out, &e), &e, "size",
                           NULL);
    image_free(&im);
    return fails;
}

int main(void) {
    load_digits();
    int fails = 0;
    fails += test_png_round_trip();
    fails += test_jpeg_quality();
    fails += test_bad_bytes();
    fails += test_constant_stays_constant();
    fails += test_normalisation_exact();
    fails += test_pad_geometry();
    fails += test_bilinear_by_hand();
    fails += test_preprocess_rejects();
    return test_summary("test_image", fails);
}
