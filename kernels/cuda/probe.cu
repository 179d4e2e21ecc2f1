// probe.cu — placeholder translation unit of the CUDA backend (kernels/cuda/), compiled whenever nvcc is
// found so that the CUDA build stays working from the start. The kernels arrive with the CUDA issue.
#include <cuda_runtime.h>

extern "C" int modrwkv_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}
