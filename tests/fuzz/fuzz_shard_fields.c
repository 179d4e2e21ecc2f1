// fuzz_shard_fields.c — libFuzzer target for the shard reader's validation: raw-byte fuzzing
// (fuzz_shard_reader) mostly stops at HDF5's checksums, so this target edits the *values* of a valid shard
// through the HDF5 API (which keeps the file well-formed and its checksums right) and then reads it.
//
// The input is a list of 12-byte edits {target, op, index (uint16 LE), value (int64 LE)}: target picks an
// index table, data stream or attribute of the shard; op 0 sets element index % length to value (converted
// by HDF5, clipped to the element type), op 1 resizes the dataset to value % (2 * length + 2) rows. Property:
// no crash, no sanitizer report, and every failure is a one-line message naming the file.
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/shard.h"

const char* __lsan_default_suppressions(void);
const char* __lsan_default_suppressions(void) { return "leak:H5FL_reg_malloc\nleak:H5FL_blk_malloc\n"; }
const char* __asan_default_options(void);
const char* __asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

static const char* TARGETS[] = {
    "/meta/key_offsets", "/meta/key_bytes", "/tok/offsets", "/tok/tokens", "/tok/loss_mask", "/media/offsets",
    "/media/kind", "/media/placeholder_pos", "/media/n_placeholder", "/media/payload_offsets",
    "/media/payload_sizes", "/img/bytes", "/pix/data", "/pix/shape", "/aud/pcm", "/ts/data", "/ts/shape",
    "/feat/data", "/feat/shape", "n_samples", "n_tokens", "n_media", "vocab_size", "format_version",
};
enum { N_TARGETS = sizeof TARGETS / sizeof TARGETS[0], EDIT_BYTES = 12, MAX_EDITS = 16 };

static char base_path[64], work_path[64];
static char* base;        // the valid shard's bytes
static size_t base_len;

// Sample i: text around one media item of kind 1 + i % 5, plus a text-only sample.
static Sample base_sample(int i) {
    Sample s = {0};
    char key[32];
    snprintf(key, sizeof key, "k%d", i);
    s.key = xstrdup(key);
    s.n_tokens = 9;
    s.tokens = xmalloc(9 * sizeof *s.tokens);
    s.loss_mask = xcalloc(9, 1);
    for (int t = 0; t < 9; t++) s.tokens[t] = (uint32_t)(10 * i + t), s.loss_mask[t] = (uint8_t)(t > 6);
    if (i == 5) return s;
    int kind = 1 + i;
    uint32_t id = kind == MEDIA_AUDIO_PCM ? SHARD_PLACEHOLDER_AUDIO
                  : kind == MEDIA_TIMESERIES ? SHARD_PLACEHOLDER_TIMESERIES : SHARD_PLACEHOLDER_IMAGE;
    s.media = xcalloc(1, sizeof *s.media);
    s.n_media = 1;
    MediaItem* m = &s.media[0];
    *m = (MediaItem){.kind = (MediaKind)kind, .placeholder_pos = 3, .n_placeholder = 2};
    s.tokens[3] = s.tokens[4] = id;
    if (kind == MEDIA_IMAGE_ENCODED) m->bytes = xcalloc(10, 1), m->n_bytes = 10;
    if (kind == MEDIA_IMAGE_PIXELS) m->pixels = xcalloc(12, 1), m->height = 2, m->width = 2, m->channels = 3;
    if (kind == MEDIA_AUDIO_PCM) m->pcm = xcalloc(20, 2), m->n_samples = 20;
    if (kind == MEDIA_TIMESERIES) m->series = xcalloc(6, 4), m->length = 3, m->channels = 2;
    if (kind == MEDIA_FEATURES) m->feat = xcalloc(8, 4), m->n_feat_tokens = 2, m->dim = 4, m->feat_dtype_bytes = 4;
    return s;
}

static void make_base(void) {
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/fuzz_shard_fields-%d", (int)getpid());
    snprintf(base_path, sizeof base_path, "%s/base-000000.h5", dir);
    snprintf(work_path, sizeof work_path, "%s/work.h5", dir);
    ShardWriterOptions o = {.dir = dir, .split = "base", .tokenizer = "world", .vocab_size = 65536, .world = 1};
    Error e;
    ShardWriter* w = shard_writer_open(&o, &e);
    for (int i = 0; w && i < 6; i++) {
        Sample s = base_sample(i);
        if (shard_writer_add(w, &s, &e)) fatal("%s", e.msg);
        sample_free(&s);
    }
    if (!w || shard_writer_close(w, &e)) fatal("%s", e.msg);
    base = read_file(base_path, &base_len, &e);
    if (!base) fatal("%s", e.msg);
}

static void edit_dataset(hid_t file, const char* name, int op, uint16_t index, int64_t value) {
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    hid_t space = d < 0 ? -1 : H5Dget_space(d);
    hsize_t dims[2] = {0, 1};
    int rank = space < 0 ? 0 : H5Sget_simple_extent_dims(space, dims, NULL);
    hsize_t n = rank == 2 ? dims[0] * dims[1] : dims[0];
    if (op == 1 && rank > 0) {
        dims[0] = (hsize_t)((uint64_t)value % (2 * dims[0] + 2));
        H5Dset_extent(d, dims);
    } else if (rank > 0 && n > 0) {
        hsize_t at = index % n, coord[2] = {rank == 2 ? at / dims[1] : at, rank == 2 ? at % dims[1] : 0}, one = 1;
        hid_t mem = H5Screate_simple(1, &one, NULL);
        double as_float = (double)value / 256.0;
        H5Sselect_elements(space, H5S_SELECT_SET, 1, coord);
        if (strcmp(name, "/ts/data") == 0) H5Dwrite(d, H5T_NATIVE_DOUBLE, mem, space, H5P_DEFAULT, &as_float);
        else H5Dwrite(d, H5T_NATIVE_INT64, mem, space, H5P_DEFAULT, &value);
        H5Sclose(mem);
    }
    if (space >= 0) H5Sclose(space);
    if (d >= 0) H5Dclose(d);
}

static void apply_edits(const uint8_t* data, size_t size) {
    hid_t file = H5Fopen(work_path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (file < 0) abort();
    for (size_t k = 0; k + EDIT_BYTES <= size && k < MAX_EDITS * EDIT_BYTES; k += EDIT_BYTES) {
        const char* target = TARGETS[data[k] % N_TARGETS];
        uint16_t index = (uint16_t)(data[k + 2] | data[k + 3] << 8);
        int64_t value;
        memcpy(&value, data + k + 4, sizeof value);
        if (target[0] == '/') {
            edit_dataset(file, target, data[k + 1] & 1, index, value);
            continue;
        }
        hid_t a = H5Aopen(file, target, H5P_DEFAULT);
        if (a >= 0) H5Awrite(a, H5T_NATIVE_INT64, &value), H5Aclose(a);
    }
    if (H5Fclose(file) < 0) abort();
    H5Eclear2(H5E_DEFAULT);
}

static void check_message(const Error* e) {
    if (e->msg[0] == 0 || strchr(e->msg, '\n') || !strstr(e->msg, work_path)) {
        fprintf(stderr, "fuzz_shard_fields: bad error message: '%s'\n", e->msg);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (!base) make_base();
    Error e = {{0}};
    if (write_file_atomic(work_path, base, base_len, &e)) fatal("%s", e.msg);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    apply_edits(data, size);
    ShardReader* r = shard_reader_open(work_path, &e);
    if (!r) check_message(&e);
    for (int64_t i = 0; r && i < shard_reader_count(r); i++) {
        Sample s;
        e.msg[0] = 0;
        if (shard_reader_get(r, i, &s, &e) == 0) sample_free(&s);
        else check_message(&e);
    }
    shard_reader_close(r);
    return 0;
}
