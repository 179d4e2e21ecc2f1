// image.h — image decoding (JPEG via libjpeg-turbo's TurboJPEG API, PNG via libpng) and preprocessing for
// vision encoders: resize to a square resolution and normalise per channel.
//
// Contract: decoding never trusts the input (corrupt or truncated bytes -> -1 with a message naming `what`);
// outputs are RGB uint8 (grey and RGBA inputs are converted); image_preprocess is deterministic.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"

typedef struct Image {
    int height, width;   // channels is always 3 (RGB)
    uint8_t* rgb;        // (height, width, 3), owned
} Image;

// Decodes JPEG or PNG bytes (sniffed from the magic). `what` names the source in messages (file, sample key).
int image_decode(const uint8_t* bytes, size_t n, Image* out, const char* what, Error* e);
// Encodes RGB or grey (channels 1 or 3) pixels as PNG bytes (*out malloc'ed). Returns 0 or -1.
int image_encode_png(const uint8_t* pixels, int height, int width, int channels, uint8_t** out, size_t* n, Error* e);
void image_free(Image* im);

// Resizes (bilinear, antialiased when shrinking) to size x size — "resize": stretch; "pad": keep the aspect
// ratio and pad to a square with the mean colour (LLaVA's pad) — then normalises: out[c][y][x] =
// (v/255 - mean[c]) / std[c]. out: (3, size, size) float32, channel-major as encoders expect.
int image_preprocess(const Image* im, int size, const char* mode, const float mean[3], const float std[3], float* out,
                     Error* e);
