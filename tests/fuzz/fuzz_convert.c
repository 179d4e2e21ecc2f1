// fuzz_convert.c — libFuzzer target for the converters that parse untrusted containers: WebDataset tars
// (libarchive + member grouping + image / audio / JSON members), LLaVA JSON lists (the streaming list splitter
// + conversation records + image files) and JSONL text. Property: any input bytes give rc 0 or a clean -1,
// never a crash, a sanitizer report or a leak.
//
// The first input byte picks the converter (and --skip-bad); the rest is written to a temporary file that is
// converted into a temporary directory, removed after each run. The LLaVA image folder holds a real PNG
// ("d.png", a handwritten digit) so that records that name it reach the writer.
//
/* Build and run (from the source root; not part of the CMake build, whose objects gcc instruments):
     clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. -DMODRWKV_SOURCE_DIR="\"$PWD\"" \
       tests/fuzz/fuzz_convert.c datasets/{audio,chat_template,convert,convert_llava,convert_webdataset}.c \
       datasets/{convert_text,shard,shard_writer,shard_reader,manifest,h5util,image,tokenizer,binidx}.c \
       kernels/common.c -o /tmp/fuzz_convert -lm \
       $(pkg-config --cflags --libs hdf5 jansson libarchive sndfile samplerate libpng libturbojpeg libcrypto zlib)
     /tmp/fuzz_convert -max_total_time=60 -max_len=65536 [CORPUS_DIR]
*/
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/data_tools.h"
#include "datasets/image.h"
#include "kernels/common.h"

static char g_dir[64];

static int remove_one(const char* path, const struct stat* st, int flag, struct FTW* ftw) { return remove(path); }

static void path_in(char* buf, size_t size, const char* name) { snprintf(buf, size, "%s/%s", g_dir, name); }

// A real 8x8 digit (the first of datasets/demo/digits.csv.gz, values scaled from 0..16) as d.png.
static void write_fixture_image(void) {
    static const uint8_t DIGIT[64] = {0, 0, 5,  13, 9, 1,  0,  0, 0, 0, 13, 15, 10, 15, 5,  0, 0, 3,  15, 2, 0, 11,
                                      8, 0, 0,  4,  12, 0, 0,  8, 8, 0, 0,  5,  8,  0,  0,  9, 8, 0,  0,  4, 11, 0,
                                      1, 12, 7, 0,  0, 2,  14, 5, 10, 12, 0, 0, 0,  0,  6,  13, 10, 0, 0,  0};
    uint8_t grey[64];
    for (int i = 0; i < 64; i++) grey[i] = (uint8_t)(DIGIT[i] * 255 / 16);
    uint8_t* png;
    size_t n;
    Error e;
    char path[128];
    if (image_encode_png(grey, 8, 8, 1, &png, &n, &e) != 0) fatal("%s", e.msg);
    path_in(path, sizeof path, "img/d.png");
    if (write_file_atomic(path, png, n, &e) != 0) fatal("%s", e.msg);
    free(png);
}

static void remove_work_dir(void) { nftw(g_dir, remove_one, 8, FTW_DEPTH | FTW_PHYS); }

int LLVMFuzzerInitialize(int* argc, char*** argv) {
    snprintf(g_dir, sizeof g_dir, "/tmp/fuzz_convert.XXXXXX");
    if (!mkdtemp(g_dir)) fatal("cannot create a temporary directory");
    atexit(remove_work_dir);
    char img[128];
    Error e;
    path_in(img, sizeof img, "img");
    if (mkdir_p(img, &e) != 0) fatal("%s", e.msg);
    write_fixture_image();
    if (!freopen("/dev/null", "w", stdout)) fatal("cannot silence stdout");   // the converters' summaries
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    static const char* const INPUT[] = {"in.tar", "in.json", "in.jsonl"};
    int which = data[0] % 3;
    char in[128], out[128], img[128];
    path_in(in, sizeof in, INPUT[which]);
    path_in(out, sizeof out, "out");
    path_in(img, sizeof img, "img");
    Error e;
    if (write_file_atomic(in, data + 1, size - 1, &e) != 0) fatal("%s", e.msg);
    ConvertOptions o = {.out_dir = out, .split = "train", .compression = 1, .tokenizer = "bytes", .image_tokens = 4,
                        .audio_tokens_per_s = 50, .rank = 0, .world = 1, .skip_bad = (data[0] / 3) & 1};
    if (which == 0) convert_webdataset(in, &o, &e);
    else if (which == 1) convert_llava_json(in, img, &o, &e);
    else convert_jsonl_text(in, "text", &o, &e);
    nftw(out, remove_one, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
