// common.c — see common.h.
#include "kernels/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int errorf(Error* e, const char* fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void fatal(const char* fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "modrwkv: error: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
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

int write_file_atomic(const char* path, const void* data, size_t len, Error* e) {
    size_t plen = strlen(path) + 32;
    char* tmp = xmalloc(plen);
    snprintf(tmp, plen, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        errorf(e, "%s: cannot create: %s (check the directory exists and is writable)", path, strerror(errno));
        free(tmp);
        return -1;
    }
    const char* p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            errorf(e, "%s: write failed: %s (disk full?)", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            free(tmp);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        errorf(e, "%s: cannot flush to disk: %s", tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        errorf(e, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
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
