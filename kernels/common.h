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
// The message is always one line, whatever text the arguments bring (file names, third-party error
// strings such as jansson's or libzip's): '\n' and '\r' become spaces, other control bytes '?'.
int errorf(Error* e, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// Prints "modrwkv: error: <msg>" on stderr and exits with status 1.
void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

void* xmalloc(size_t n);            // exits with a clear message when memory runs out
void* xcalloc(size_t n, size_t sz);
void* xrealloc(void* p, size_t n);
char* xstrdup(const char* s);

// Reads a whole file into memory (NUL-terminated for convenience). Returns NULL and fills e on failure.
char* read_file(const char* path, size_t* len, Error* e);
// Writes bytes to path atomically (an AtomicFile written in one go). Returns 0 or -1 with e filled.
int write_file_atomic(const char* path, const void* data, size_t len, Error* e);

// A file written as a stream that appears at its path complete or not at all: bytes go to
// <path>.tmp.<pid>; commit flushes, fsyncs and renames it over path. Every message names the final
// path. Usage: open; write ...; then commit (which cleans up whatever it returns) or, after a failed
// write, abort (removes the temporary file); finish does the one or the other. abort is a no-op
// after commit or a failed open.
typedef struct AtomicFile {
    FILE* f;     // NULL when not open
    char* path;  // final path (owned)
    char* tmp;   // temporary path (owned)
} AtomicFile;

int atomic_file_open(AtomicFile* a, const char* path, Error* e);
int atomic_file_write(AtomicFile* a, const void* data, size_t len, Error* e);
int atomic_file_commit(AtomicFile* a, Error* e);
void atomic_file_abort(AtomicFile* a);
// Commits when rc == 0, otherwise aborts; returns 0 or -1 (e filled by whatever failed).
int atomic_file_finish(AtomicFile* a, int rc, Error* e);
// Creates a directory and its parents (like mkdir -p). Returns 0 or -1 with e filled.
int mkdir_p(const char* path, Error* e);
// Monotonic wall time in seconds.
double now_seconds(void);
