// common.c — see common.h.
#include "kernels/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// Keeps a message on one line whatever bytes its arguments brought (names, third-party messages).
static void make_one_line(char* msg) {
    for (unsigned char* c = (unsigned char*)msg; *c; c++) {
        if (*c == '\n' || *c == '\r') *c = ' ';
        else if (*c < 0x20 || *c == 0x7f) *c = '?';
    }
}

int errorf(Error* e, const char* fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        make_one_line(e->msg);
    }
    return -1;
}

// The line goes out in one write(2), so the lines of several processes sharing stderr (MPI ranks) never
// interleave mid-line.
void fatal(const char* fmt, ...) {
    fflush(stdout);
    char line[2048];
    int n = snprintf(line, sizeof line, "modrwkv: error: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    line[len++] = '\n';
    fflush(stderr);
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
    exit(1);
}

void* xmalloc(size_t n) {
    void* p = malloc(n ? n : 1);
    if (!p) fatal("out of memory allocating %zu bytes: reduce the model, batch or context size", n);
    return p;
}

void* xcalloc(size_t n, size_t sz) {
    void* p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) fatal("out of memory allocating %zu x %zu bytes: reduce the model, batch or context size", n, sz);
    return p;
}

void* xrealloc(void* p, size_t n) {
    void* q = realloc(p, n ? n : 1);
    if (!q) fatal("out of memory reallocating %zu bytes", n);
    return q;
}

char* xstrdup(const char* s) {
    size_t n = strlen(s) + 1;
    char* p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

char* read_file(const char* path, size_t* len, Error* e) {
    FILE* f = fopen(path, "rb");
    if (!f) {
        errorf(e, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        errorf(e, "%s: not a regular file%s", path, S_ISDIR(st.st_mode) ? " (it is a directory)" : "");
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        errorf(e, "%s: cannot seek (not a regular file?)", path);
        return NULL;
    }
    long n = ftell(f);
    if (n < 0) {
        fclose(f);
        errorf(e, "%s: cannot tell its size", path);
        return NULL;
    }
    rewind(f);
    char* buf = xmalloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        errorf(e, "%s: read error", path);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

// Frees what open allocated and leaves a closed, so that a later abort does nothing.
static void atomic_file_release(AtomicFile* a) {
    free(a->path);
    free(a->tmp);
    *a = (AtomicFile){0};
}

int atomic_file_open(AtomicFile* a, const char* path, Error* e) {
    size_t n = strlen(path) + 32;
    *a = (AtomicFile){.path = xstrdup(path), .tmp = xmalloc(n)};
    snprintf(a->tmp, n, "%s.tmp.%d", path, (int)getpid());
    a->f = fopen(a->tmp, "wb");
    if (a->f) return 0;
    errorf(e, "%s: cannot create: %s (check the directory exists and is writable)", path, strerror(errno));
    atomic_file_release(a);
    return -1;
}

int atomic_file_write(AtomicFile* a, const void* data, size_t len, Error* e) {
    if (len == 0 || fwrite(data, 1, len, a->f) == len) return 0;
    return errorf(e, "%s: write failed: %s (check free disk space and file size limits)", a->path, strerror(errno));
}

int atomic_file_commit(AtomicFile* a, Error* e) {
    int rc = 0;
    if (fflush(a->f) != 0 || fsync(fileno(a->f)) != 0)
        rc = errorf(e, "%s: cannot flush to disk: %s (check free disk space and file size limits)", a->path, strerror(errno));
    if (fclose(a->f) != 0 && rc == 0)
        rc = errorf(e, "%s: cannot close: %s (check free disk space and file size limits)", a->path, strerror(errno));
    if (rc == 0 && rename(a->tmp, a->path) != 0)
        rc = errorf(e, "%s: cannot rename %s over it: %s (check the path is not a directory and its directory is writable)",
                    a->path, a->tmp, strerror(errno));
    if (rc) unlink(a->tmp);
    atomic_file_release(a);
    return rc;
}

void atomic_file_abort(AtomicFile* a) {
    if (!a->f) return;
    fclose(a->f);
    unlink(a->tmp);
    atomic_file_release(a);
}

int atomic_file_finish(AtomicFile* a, int rc, Error* e) {
    if (rc == 0) return atomic_file_commit(a, e);
    atomic_file_abort(a);
    return -1;
}

int write_file_atomic(const char* path, const void* data, size_t len, Error* e) {
    AtomicFile a;
    if (atomic_file_open(&a, path, e)) return -1;
    return atomic_file_finish(&a, atomic_file_write(&a, data, len, e), e);
}

int mkdir_p(const char* path, Error* e) {
    char* p = xstrdup(path);
    for (char* s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            errorf(e, "%s: cannot create directory: %s", p, strerror(errno));
            free(p);
            return -1;
        }
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        errorf(e, "%s: cannot create directory: %s", p, strerror(errno));
        free(p);
        return -1;
    }
    free(p);
    return 0;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
