// image.c — see image.h. JPEG through TurboJPEG (tjDecompress2), PNG through libpng with its setjmp/longjmp
// error protocol, and the separable triangle-filter resampler behind image_preprocess.
//
// Limits and policies (documented here, relied on by the loader):
// - an image may have at most IMAGE_MAX_SIDE pixels per side and IMAGE_MAX_PIXELS pixels in all; larger
//   images are rejected before any pixel buffer is allocated (a decompression bomb cannot exhaust memory);
// - a JPEG that makes the decoder warn (truncated or corrupt entropy data) is rejected, not half-decoded;
// - PNG: palette, grey, 16-bit and interlaced images are converted to 8-bit RGB; an alpha channel is
//   dropped (the colour values are kept as stored); a bad CRC in a critical chunk is an error;
// - libpng state lives in a heap-allocated job reached through a pointer that is never modified after
//   setjmp, so no automatic variable changes between setjmp and longjmp; every path frees the job.
#include "datasets/image.h"

#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

enum { IMAGE_MAX_SIDE = 32768 };
#define IMAGE_MAX_PIXELS ((size_t)1 << 26)

static int check_dims(int64_t height, int64_t width, const char* what, Error* e) {
    if (height < 1 || width < 1)
        return errorf(e, "%s: image has no pixels (%lld x %lld)", what, (long long)height, (long long)width);
    if (height > IMAGE_MAX_SIDE || width > IMAGE_MAX_SIDE || (size_t)height * (size_t)width > IMAGE_MAX_PIXELS)
        return errorf(e, "%s: image of %lld x %lld pixels is larger than the supported %d per side / %zu in all "
                      "(downscale it before converting)", what, (long long)height, (long long)width, IMAGE_MAX_SIDE,
                      IMAGE_MAX_PIXELS);
    return 0;
}

void image_free(Image* im) {
    if (!im) return;
    free(im->rgb);
    memset(im, 0, sizeof *im);
}

// ============================================================================ JPEG

static int decode_jpeg(const uint8_t* bytes, size_t n, Image* out, const char* what, Error* e) {
    if (n > (size_t)0xffffffffu) return errorf(e, "%s: JPEG of %zu bytes is too large", what, n);
    tjhandle tj = tjInitDecompress();
    if (!tj) return errorf(e, "%s: cannot start the JPEG decoder: %s", what, tjGetErrorStr2(NULL));
    int width = 0, height = 0, subsamp = 0, colorspace = 0;
    int rc = 0;
    if (tjDecompressHeader3(tj, bytes, (unsigned long)n, &width, &height, &subsamp, &colorspace) != 0)
        rc = errorf(e, "%s: not a decodable JPEG: %s", what, tjGetErrorStr2(tj));
    else if (width < 1 || height < 1)
        rc = errorf(e, "%s: not a decodable JPEG: no frame header (truncated file?)", what);
    if (rc == 0) rc = check_dims(height, width, what, e);
    uint8_t* rgb = NULL;
    if (rc == 0) {
        rgb = xmalloc((size_t)height * (size_t)width * 3);   // (height, width, 3)
        if (tjDecompress2(tj, bytes, (unsigned long)n, rgb, width, 0, height, TJPF_RGB,
                          TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING) != 0)
            rc = errorf(e, "%s: corrupt or truncated JPEG: %s", what, tjGetErrorStr2(tj));
    }
    tjDestroy(tj);
    if (rc != 0) {
        free(rgb);
        return -1;
    }
    out->height = height;
    out->width = width;
    out->rgb = rgb;
    return 0;
}

// ============================================================================ PNG (libpng)

typedef struct PngJob {
    png_structp png;
    png_infop info;
    const uint8_t* src;    // reading: the PNG bytes
    size_t n_src, at;
    uint8_t* pixels;       // reading: (height, width, 3) output; writing: the encoded bytes
    size_t n_pixels_cap, n_out;
    png_bytep* rows;
    int height, width;
    char msg[256];         // libpng's error message
    char warning[160];     // its last warning (reported with an error: it often says what was wrong)
} PngJob;

static void on_png_error(png_structp png, png_const_charp msg) {
    PngJob* job = png_get_error_ptr(png);
    if (job->warning[0]) snprintf(job->msg, sizeof job->msg, "%s (%s)", msg, job->warning);
    else snprintf(job->msg, sizeof job->msg, "%s", msg);
    png_longjmp(png, 1);
}

// Ancillary problems (a bad sRGB profile, ...) do not make an image unusable: remember, do not fail.
static void on_png_warning(png_structp png, png_const_charp msg) {
    PngJob* job = png_get_error_ptr(png);
    snprintf(job->warning, sizeof job->warning, "%s", msg);
}

static void png_read_bytes(png_structp png, png_bytep dst, png_size_t n) {
    PngJob* job = png_get_io_ptr(png);
    if (n > job->n_src - job->at) png_error(png, "unexpected end of data (truncated PNG)");
    memcpy(dst, job->src + job->at, n);
    job->at += n;
}

// Runs libpng over job->src; on success job->pixels holds (height, width, 3) RGB. Returns 0 or -1 (job->msg).
static int png_decode_job(PngJob* job) {
    job->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, on_png_error, on_png_warning);
    if (job->png) job->info = png_create_info_struct(job->png);
    if (!job->info) {
        snprintf(job->msg, sizeof job->msg, "cannot start the PNG decoder (out of memory)");
        return -1;
    }
    if (setjmp(png_jmpbuf(job->png))) return -1;
    png_set_read_fn(job->png, job, png_read_bytes);
    png_set_user_limits(job->png, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    png_read_info(job->png, job->info);
    job->width = (int)png_get_image_width(job->png, job->info);
    job->height = (int)png_get_image_height(job->png, job->info);
    if ((size_t)job->width * (size_t)job->height > IMAGE_MAX_PIXELS) png_error(job->png, "image has too many pixels");
    int color = png_get_color_type(job->png, job->info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(job->png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) {
        png_set_expand_gray_1_2_4_to_8(job->png);
        png_set_gray_to_rgb(job->png);
    }
    if (png_get_bit_depth(job->png, job->info) == 16) png_set_strip_16(job->png);
    if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(job->png);
    png_set_interlace_handling(job->png);
    png_read_update_info(job->png, job->info);
    size_t row_bytes = png_get_rowbytes(job->png, job->info);
    if (row_bytes != (size_t)job->width * 3) png_error(job->png, "unexpected row layout after conversion to RGB");
    job->pixels = xmalloc((size_t)job->height * row_bytes);   // (height, width, 3)
    job->rows = xmalloc((size_t)job->height * sizeof *job->rows);
    for (int y = 0; y < job->height; y++) job->rows[y] = job->pixels + (size_t)y * row_bytes;
    png_read_image(job->png, job->rows);
    png_read_end(job->png, NULL);
    return 0;
}

static int decode_png(const uint8_t* bytes, size_t n, Image* out, const char* what, Error* e) {
    PngJob* job = xcalloc(1, sizeof *job);
    job->src = bytes;
    job->n_src = n;
    int rc = png_decode_job(job);
    if (rc != 0) errorf(e, "%s: corrupt, truncated or unsupported PNG: %s", what, job->msg);
    else {
        out->height = job->height;
        out->width = job->width;
        out->rgb = job->pixels;
        job->pixels = NULL;
    }
    png_destroy_read_struct(&job->png, &job->info, NULL);   // no-op for NULL structs
    free(job->rows);
    free(job->pixels);
    free(job);
    return rc;
}

static const uint8_t PNG_MAGIC[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};

int image_decode(const uint8_t* bytes, size_t n, Image* out, const char* what, Error* e) {
    memset(out, 0, sizeof *out);
    if (!bytes || n == 0) return errorf(e, "%s: empty image data (0 bytes)", what);
    if (n >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff) return decode_jpeg(bytes, n, out, what, e);
    if (n >= 8 && memcmp(bytes, PNG_MAGIC, 8) == 0) return decode_png(bytes, n, out, what, e);
    unsigned b[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < 4 && i < n; i++) b[i] = bytes[i];
    return errorf(e, "%s: image data is neither JPEG nor PNG (first bytes %02x %02x %02x %02x): store JPEG or PNG "
                  "files", what, b[0], b[1], b[2], b[3]);
}

// ---------------------------------------------------------------------------- PNG encoding

static void png_write_bytes(png_structp png, png_bytep data, png_size_t n) {
    PngJob* job = png_get_io_ptr(png);
    if (job->n_out + n > job->n_pixels_cap) {
        size_t cap = 2 * job->n_pixels_cap > job->n_out + n ? 2 * job->n_pixels_cap : job->n_out + n + 4096;
        job->pixels = xrealloc(job->pixels, cap);
        job->n_pixels_cap = cap;
    }
    memcpy(job->pixels + job->n_out, data, n);
    job->n_out += n;
}

static void png_flush_nothing(png_structp png) { (void)png; }

// Encodes job->src as (height, width, channels) pixels into job->pixels / job->n_out. Returns 0 or -1.
static int png_encode_job(PngJob* job, int channels) {
    job->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, job, on_png_error, on_png_warning);
    if (job->png) job->info = png_create_info_struct(job->png);
    if (!job->info) {
        snprintf(job->msg, sizeof job->msg, "cannot start the PNG encoder (out of memory)");
        return -1;
    }
    if (setjmp(png_jmpbuf(job->png))) return -1;
    png_set_write_fn(job->png, job, png_write_bytes, png_flush_nothing);
    png_set_IHDR(job->png, job->info, (png_uint_32)job->width, (png_uint_32)job->height, 8,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    job->rows = xmalloc((size_t)job->height * sizeof *job->rows);
    size_t row_bytes = (size_t)job->width * (size_t)channels;
    for (int y = 0; y < job->height; y++) job->rows[y] = (png_bytep)(job->src + (size_t)y * row_bytes);
    png_set_rows(job->png, job->info, job->rows);
    png_write_png(job->png, job->info, PNG_TRANSFORM_IDENTITY, NULL);
    return 0;
}

int image_encode_png(const uint8_t* pixels, int height, int width, int channels, uint8_t** out, size_t* n, Error* e) {
    *out = NULL;
    *n = 0;
    if (!pixels || (channels != 1 && channels != 3))
        return errorf(e, "png encoder: need pixels with 1 or 3 channels (got %d)", channels);
    if (check_dims(height, width, "png encoder", e) != 0) return -1;
    PngJob* job = xcalloc(1, sizeof *job);
    job->src = pixels;
    job->height = height;
    job->width = width;
    int rc = png_encode_job(job, channels);
    if (rc != 0) errorf(e, "png encoder: %s", job->msg);
    else {
        *out = job->pixels;
        *n = job->n_out;
        job->pixels = NULL;
    }
    png_destroy_write_struct(&job->png, &job->info);
    free(job->rows);
    free(job->pixels);
    free(job);
    return rc;
}

// ============================================================================ preprocessing

// Resampling weights along one axis: output i reads inputs [first[i], first[i] + count[i]) with weights
// w[i * taps + k]. Triangle filter of radius max(1, n_in/n_out) input pixels around the output pixel's
// centre (i + 0.5) * n_in/n_out: plain bilinear when enlarging, an antialiasing area-weighted filter when
// shrinking. Inputs of zero weight are left out; the weights of each output sum to 1.
typedef struct Axis {
    int taps;     // most inputs of one output
    int* first;   // (n_out)
    int* count;   // (n_out)
    float* w;     // (n_out, taps)
} Axis;

static double tent(int j, double centre, double radius) {
    double t = 1.0 - fabs(((double)j + 0.5 - centre) / radius);
    return t > 0.0 ? t : 0.0;
}

static void axis_init(Axis* a, int n_in, int n_out) {
    double scale = (double)n_in / (double)n_out;
    double radius = scale > 1.0 ? scale : 1.0;
    a->taps = (int)ceil(2.0 * radius) + 2;
    a->first = xmalloc((size_t)n_out * sizeof *a->first);
    a->count = xmalloc((size_t)n_out * sizeof *a->count);
    a->w = xcalloc((size_t)n_out * (size_t)a->taps, sizeof *a->w);
    for (int i = 0; i < n_out; i++) {
        double centre = ((double)i + 0.5) * scale;
        int lo = (int)floor(centre - radius), hi = (int)ceil(centre + radius);
        if (lo < 0) lo = 0;
        if (hi > n_in) hi = n_in;
        while (lo < hi && tent(lo, centre, radius) == 0.0) lo++;
        while (hi > lo && tent(hi - 1, centre, radius) == 0.0) hi--;
        if (hi - lo > a->taps) hi = lo + a->taps;
        if (lo == hi) hi = lo + 1;   // not reached (the nearest input always has weight > 0): stay safe
        double sum = 0.0;
        for (int j = lo; j < hi; j++) sum += tent(j, centre, radius);
        float* w = a->w + (size_t)i * (size_t)a->taps;
        for (int j = lo; j < hi; j++) w[j - lo] = sum > 0.0 ? (float)(tent(j, centre, radius) / sum) : 1.0f;
        a->first[i] = lo;
        a->count[i] = hi - lo;
    }
}

static void axis_free(Axis* a) {
    free(a->first);
    free(a->count);
    free(a->w);
}

// Vertical pass: (h, w, 3) uint8 -> rows (nh, w, 3) float in 0..255 (contiguous rows: vectorises).
static void resample_vertical(const Image* im, int nh, float* rows) {
    Axis ay;
    axis_init(&ay, im->height, nh);
    size_t row_len = (size_t)im->width * 3;
    for (int y = 0; y < nh; y++) {
        float* o = rows + (size_t)y * row_len;
        memset(o, 0, row_len * sizeof *o);
        for (int k = 0; k < ay.count[y]; k++) {
            const uint8_t* src = im->rgb + (size_t)(ay.first[y] + k) * row_len;
            float w = ay.w[(size_t)y * (size_t)ay.taps + (size_t)k];
            for (size_t i = 0; i < row_len; i++) o[i] += w * (float)src[i];
        }
    }
    axis_free(&ay);
}

// Horizontal pass: rows (nh, w, 3) -> the (nh, nw) box at (y0, x0) of each plane of out (3, size, size).
static void resample_horizontal(const float* rows, int nh, int width, int nw, float* out, int size, int y0, int x0) {
    Axis ax;
    axis_init(&ax, width, nw);
    size_t plane = (size_t)size * (size_t)size;
    for (int y = 0; y < nh; y++) {
        const float* row = rows + (size_t)y * (size_t)width * 3;
        float* o = out + (size_t)(y0 + y) * (size_t)size + (size_t)x0;
        for (int x = 0; x < nw; x++) {
            const float* w = ax.w + (size_t)x * (size_t)ax.taps;
            const float* px = row + (size_t)ax.first[x] * 3;
            float r = 0, g = 0, b = 0;
            for (int k = 0; k < ax.count[x]; k++) {
                r += w[k] * px[3 * k];
                g += w[k] * px[3 * k + 1];
                b += w[k] * px[3 * k + 2];
            }
            o[x] = r;
            o[plane + (size_t)x] = g;
            o[2 * plane + (size_t)x] = b;
        }
    }
    axis_free(&ax);
}

int image_preprocess(const Image* im, int size, const char* mode, const float mean[3], const float std[3], float* out,
                     Error* e) {
    if (!im || !im->rgb || im->height < 1 || im->width < 1) return errorf(e, "image preprocess: empty image");
    if (size < 1 || size > 8192) return errorf(e, "image preprocess: size %d must be in 1..8192", size);
    int pad = mode && strcmp(mode, "pad") == 0;
    if (!mode || (!pad && strcmp(mode, "resize") != 0))
        return errorf(e, "image preprocess: mode '%s' is not one of resize|pad", mode ? mode : "(null)");
    for (int c = 0; c < 3; c++)
        if (!(std[c] > 0.0f) || !isfinite(std[c]) || !isfinite(mean[c]))
            return errorf(e, "image preprocess: mean/std of channel %d (%g, %g) must be finite with std > 0", c,
                          (double)mean[c], (double)std[c]);
    // Content box inside the size x size square: all of it ("resize"), or the aspect-preserving fit
    // centred with the rest filled with the mean colour ("pad"; normalised, the mean colour is 0).
    int nh = size, nw = size;
    if (pad && im->width > im->height)
        nh = (int)lround((double)im->height * size / im->width);
    else if (pad && im->height > im->width)
        nw = (int)lround((double)im->width * size / im->height);
    if (nh < 1) nh = 1;
    if (nw < 1) nw = 1;
    int y0 = (size - nh) / 2, x0 = (size - nw) / 2;
    size_t plane = (size_t)size * (size_t)size;
    memset(out, 0, 3 * plane * sizeof *out);   // (3, size, size): the pad value (mean colour) is 0
    float* rows = xmalloc((size_t)nh * (size_t)im->width * 3 * sizeof *rows);   // (nh, w, 3) in 0..255
    resample_vertical(im, nh, rows);
    resample_horizontal(rows, nh, im->width, nw, out, size, y0, x0);
    free(rows);
    for (int c = 0; c < 3; c++)
        for (int y = y0; y < y0 + nh; y++) {
            float* o = out + (size_t)c * plane + (size_t)y * (size_t)size + (size_t)x0;
            for (int x = 0; x < nw; x++) o[x] = (o[x] / 255.0f - mean[c]) / std[c];
        }
    return 0;
}
