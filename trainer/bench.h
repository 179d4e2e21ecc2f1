// bench.h — `modrwkv bench ...` (see bench.c). argv[0] is "bench".
#pragma once

int bench_main(int argc, char** argv);
