// tensorinspect.h — `modrwkv inspect`: a readable listing of the tensors and metadata of a model file.
#pragma once
#include <stdio.h>

#include "kernels/common.h"

// Prints name, dtype and shape of every tensor, the totals and the metadata. Returns 0 or -1 with e filled.
int tensor_file_inspect(const char* path, FILE* out, Error* e);
