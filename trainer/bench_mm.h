// bench_mm.h — `modrwkv bench multimodal` (see bench_mm.c). argv[0] is "bench", argv[1] "multimodal".
#pragma once

int bench_multimodal(int argc, char** argv);
