// common.h — error reporting and checked allocation shared by every layer (kernels/ is the bottom layer).
//
// Contract: library code that reads user input (files, configs) reports failures through an `Error`
// (one line, naming the file/key and what to do) and returns -1; only the CLI (and fatal internal
// conditions such as out-of-memory) calls `fatal`, which prints "modrwkv: error: ..." and exits 1.
#pragma once
#include <stddef.h>
#include <stdio.h>

typedef struct Error {
    char msg[1024];
} Error;

// Formats the message into e (if e != NULL) and returns -1, so callers can `return errorf(e, ...)`.
int errorf(Error* e, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// Prints "modrwkv: error: <msg>" on stderr and exits with status 1.
void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

void* xmalloc(size_t n);            // exits with a clear message when memory runs out
void* xcalloc(size_t n, size_t sz);
void* xrealloc(void* p, size_t n);
char* xstrdup(const char* s);

// Reads a whole file into memory (NUL-terminated for convenience). Returns NULL and fills e on failure.
char* read_file(const char* path, size_t* len, Error* e);
// Writes bytes to path atomically: path.tmp.<pid>, fsync, rename. Returns 0 or -1 with e filled.
int write_file_atomic(const char* path, const void* data, size_t len, Error* e);
// Creates a directory and its parents (like mkdir -p). Returns 0 or -1 with e filled.
int mkdir_p(const char* path, Error* e);
// Monotonic wall time in seconds.
double now_seconds(void);
