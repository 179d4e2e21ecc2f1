// npy.c — see npy.h. Header: magic "\x93NUMPY", version 1.0, u16 header length, a Python dict literal
// padded with spaces to a multiple of 64 bytes and ending in '\n'.
#include "trainer/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int npy_write_f32(const char* path, const float* data, int ndim, const size_t* shape, Error* e) {
    char dict[256];
    size_t o = (size_t)snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        o += (size_t)snprintf(dict + o, sizeof dict - o, "%zu%s", shape[i], ndim == 1 || i + 1 < ndim ? ", " : "");
        numel *= shape[i];
    }
    o += (size_t)snprintf(dict + o, sizeof dict - o, "), }");
    size_t header = 10 + o + 1;
    size_t padded = (header + 63) / 64 * 64;
    size_t total = padded + numel * sizeof(float);
    unsigned char* buf = xmalloc(total);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    size_t hlen = padded - 10;
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, o);
    memset(buf + 10 + o, ' ', padded - 10 - o - 1);
    buf[padded - 1] = '\n';
    memcpy(buf + padded, data, numel * sizeof(float));
    int rc = write_file_atomic(path, buf, total, e);
    free(buf);
    return rc;
}
