// binidx.c — see binidx.h. Assumes a little-endian host (as the files are written by numpy on x86).
#include "datasets/binidx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { HEADER_BYTES = 9 + 8 + 1 + 8 + 8, DTYPE_INT32 = 4, DTYPE_UINT16 = 8 };
static const char MAGIC[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};

static char* with_suffix(const char* prefix, const char* suffix) {
    size_t n = strlen(prefix) + strlen(suffix) + 1;
    char* s = xmalloc(n);
    snprintf(s, n, "%s%s", prefix, suffix);
    return s;
}

int binidx_exists(const char* prefix) {
    char* idx = with_suffix(prefix, ".idx");
    char* bin = with_suffix(prefix, ".bin");
    struct stat st;
    int ok = stat(idx, &st) == 0 && S_ISREG(st.st_mode) && stat(bin, &st) == 0 && S_ISREG(st.st_mode);
    free(idx);
    free(bin);
    return ok;
}

static uint64_t read_u64(const char* p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

// Validates the .idx text (len bytes) and returns the number of tokens it describes.
static int parse_index(BinIdx* b, const char* path, const char* idx, size_t len, size_t* total_bytes, Error* e) {
    if (len < HEADER_BYTES)
        return errorf(e, "%s: truncated: %zu bytes, shorter than the %d-byte MMIDIDX header (regenerate it)", path,
                      len, HEADER_BYTES);
    if (memcmp(idx, MAGIC, sizeof MAGIC) != 0)
        return errorf(e, "%s: not an MMIDIDX index (bad magic; expected a Megatron/RWKV binidx .idx)", path);
    uint64_t version = read_u64(idx + 9);
    if (version != 1)
        return errorf(e, "%s: MMIDIDX version %llu is not supported (only version 1)", path,
                      (unsigned long long)version);
    int dtype = (unsigned char)idx[17];
    if (dtype != DTYPE_UINT16 && dtype != DTYPE_INT32)
        return errorf(e, "%s: token dtype code %d is not supported (8 = uint16 or 4 = int32)", path, dtype);
    b->token_bytes = dtype == DTYPE_UINT16 ? 2 : 4;
    uint64_t n_seq = read_u64(idx + 18), n_doc = read_u64(idx + 26);
    size_t body = len - HEADER_BYTES;
    int too_short = n_seq > body / 12 || n_doc > (body - 12 * n_seq) / 8;
    if (too_short || body != 12 * n_seq + 8 * n_doc)
        return errorf(e, "%s: %zu bytes, but its header declares %llu sequences and %llu documents, which need %s "
                      "(truncated or corrupt: regenerate it)", path, len, (unsigned long long)n_seq,
                      (unsigned long long)n_doc, too_short ? "more" : "fewer");
    b->n_seq = (size_t)n_seq;
    b->n_doc = (size_t)n_doc;
    const char* sizes = idx + HEADER_BYTES;
    const char* pointers = sizes + 4 * n_seq;
    uint64_t offset = 0;
    for (size_t i = 0; i < b->n_seq; i++) {
        int32_t size;
        int64_t ptr;
        memcpy(&size, sizes + 4 * i, sizeof size);
        memcpy(&ptr, pointers + 8 * i, sizeof ptr);
        if (size < 0 || ptr < 0 || (uint64_t)ptr != offset)
            return errorf(e, "%s: sequence %zu has size %d at byte %lld, expected a non-negative size at byte %llu "
                          "(sequences must be stored back to back)", path, i, size, (long long)ptr,
                          (unsigned long long)offset);
        offset += (uint64_t)size * (uint64_t)b->token_bytes;
    }
    *total_bytes = (size_t)offset;
    return 0;
}

static int map_tokens(BinIdx* b, const char* path, size_t expect_bytes, Error* e) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errorf(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return errorf(e, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size != expect_bytes) {
        close(fd);
        return errorf(e, "%s: %lld bytes, but its .idx describes %zu bytes of tokens (%s; regenerate the pair)",
                      path, (long long)st.st_size, expect_bytes,
                      (uint64_t)st.st_size < expect_bytes ? "truncated" : "the files do not belong together");
    }
    b->map = NULL;
    b->map_len = expect_bytes;
    if (expect_bytes > 0) {
        void* m = mmap(NULL, expect_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            return errorf(e, "%s: cannot mmap %zu bytes: %s", path, expect_bytes, strerror(errno));
        }
        b->map = m;
    }
    close(fd);
    b->tokens = b->map;
    b->n_tokens = expect_bytes / (size_t)b->token_bytes;
    return 0;
}

int binidx_open(BinIdx* b, const char* prefix, Error* e) {
    memset(b, 0, sizeof *b);
    char* idx_path = with_suffix(prefix, ".idx");
    char* bin_path = with_suffix(prefix, ".bin");
    size_t len = 0, total = 0;
    char* idx = read_file(idx_path, &len, e);
    int rc = idx ? parse_index(b, idx_path, idx, len, &total, e) : -1;
    if (rc == 0) rc = map_tokens(b, bin_path, total, e);
    free(idx);
    free(idx_path);
    free(bin_path);
    if (rc != 0) memset(b, 0, sizeof *b);
    return rc;
}

void binidx_close(BinIdx* b) {
    if (b->map) munmap(b->map, b->map_len);
    memset(b, 0, sizeof *b);
}

uint32_t binidx_token(const BinIdx* b, size_t i) {
    if (b->token_bytes == 2) return ((const uint16_t*)b->tokens)[i];
    return (uint32_t)((const int32_t*)b->tokens)[i];
}
