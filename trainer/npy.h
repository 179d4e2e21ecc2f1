// npy.h — writes NumPy .npy files (format 1.0, little-endian float32, C order), atomically.
#pragma once
#include <stddef.h>

#include "kernels/common.h"

int npy_write_f32(const char* path, const float* data, int ndim, const size_t* shape, Error* e);
