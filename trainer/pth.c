// pth.c — reads and writes torch.save(state_dict) zip archives (see pth.h).
//
// Contract: reading goes through libzip (CRC-checked) and the pickle subset reader; every size the
// pickle or the zip declares is checked against the other and against the archive length before any
// allocation, so truncated or corrupt files end in -1 with a message, never a crash. Writing streams
// a STORED zip (local headers padded with a torch-style "FB" extra field so every entry's data starts
// on a 64-byte boundary) through an AtomicFile, so path holds the whole archive or is left untouched.
#include "trainer/pth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zip.h>
#include <zlib.h>

#include "trainer/pickle.h"

// ================================================================================================
// Reader
// ================================================================================================

typedef struct Archive {
    zip_t* z;
    const char* name;    // file name for messages
    uint64_t file_len;   // archive size: bounds what any entry can hold
    char* prefix;        // "<prefix>/" (or "") in front of data.pkl, owned
} Archive;

// Finds <prefix>/data.pkl (the shallowest one if several) and sets A->prefix.
static int find_pickle(Archive* A, zip_int64_t* idx, Error* e) {
    zip_int64_t n = zip_get_num_entries(A->z, 0), best = -1;
    int best_depth = 0;
    for (zip_int64_t i = 0; i < n; i++) {
        const char* nm = zip_get_name(A->z, (zip_uint64_t)i, 0);
        size_t len = nm ? strlen(nm) : 0;
        if (len < 8 || strcmp(nm + len - 8, "data.pkl") != 0 || (len > 8 && nm[len - 9] != '/')) continue;
        int depth = 0;
        for (const char* c = nm; *c; c++) depth += *c == '/';
        if (best < 0 || depth < best_depth) { best = i; best_depth = depth; }
    }
    if (best < 0)
        return errorf(e, "%s: not a torch checkpoint: the zip has no data.pkl entry (expected <prefix>/data.pkl as torch.save writes)", A->name);
    const char* nm = zip_get_name(A->z, (zip_uint64_t)best, 0);
    size_t plen = strlen(nm) - 8;
    A->prefix = xmalloc(plen + 1);
    memcpy(A->prefix, nm, plen);
    A->prefix[plen] = 0;
    *idx = best;
    return 0;
}

// Index of <prefix><rel>, or -1 if absent.
static zip_int64_t locate(const Archive* A, const char* rel) {
    size_t n = strlen(A->prefix) + strlen(rel) + 1;
    char* full = xmalloc(n);
    snprintf(full, n, "%s%s", A->prefix, rel);
    zip_int64_t idx = zip_name_locate(A->z, full, 0);
    free(full);
    return idx;
}

// Uncompressed size of an entry, checked to be plausible for the archive's length (a corrupt header
// must not make us allocate more than the file can hold; deflate expands at most ~1032x).
static int entry_size(const Archive* A, zip_int64_t idx, const char* rel, uint64_t* size, Error* e) {
    zip_stat_t st;
    zip_stat_init(&st);
    uint64_t need = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD;
    if (zip_stat_index(A->z, (zip_uint64_t)idx, 0, &st) != 0 || (st.valid & need) != need)
        return errorf(e, "%s: cannot read the zip header of '%s%s': %s", A->name, A->prefix, rel, zip_strerror(A->z));
    int ok = st.comp_size <= A->file_len &&
             (st.comp_method == ZIP_CM_STORE ? st.size == st.comp_size : st.size / 1100 <= st.comp_size);
    if (!ok)
        return errorf(e, "%s: zip entry '%s%s' declares %llu bytes, which cannot fit in the %llu-byte archive; the file is truncated or corrupt",
                      A->name, A->prefix, rel, (unsigned long long)st.size, (unsigned long long)A->file_len);
    *size = st.size;
    return 0;
}

// Reads exactly `size` bytes of an entry into buf and verifies its CRC (libzip checks it at EOF).
static int read_entry(const Archive* A, zip_int64_t idx, const char* rel, void* buf, uint64_t size, Error* e) {
    zip_file_t* f = zip_fopen_index(A->z, (zip_uint64_t)idx, 0);
    if (!f) return errorf(e, "%s: cannot open zip entry '%s%s': %s", A->name, A->prefix, rel, zip_strerror(A->z));
    uint8_t* p = buf;
    uint64_t done = 0;
    int rc = 0;
    while (rc == 0 && done < size) {
        uint64_t chunk = size - done < (1u << 30) ? size - done : (1u << 30);
        zip_int64_t got = zip_fread(f, p + done, chunk);
        if (got <= 0) rc = -1;
        else done += (uint64_t)got;
    }
    uint8_t extra;
    if (rc == 0 && zip_fread(f, &extra, 1) != 0) rc = -1;  // reaches EOF: CRC check, or data longer than declared
    if (rc) errorf(e, "%s: cannot read zip entry '%s%s' (%s); the file is truncated or corrupt", A->name, A->prefix, rel,
                   zip_file_strerror(f));
    zip_fclose(f);
    return rc;
}

// Reads a whole small entry (data.pkl, byteorder) into a malloc'ed NUL-terminated buffer.
static char* read_whole(const Archive* A, zip_int64_t idx, const char* rel, size_t* len, Error* e) {
    uint64_t size = 0;
    if (entry_size(A, idx, rel, &size, e)) return NULL;
    char* buf = xmalloc((size_t)size + 1);
    if (read_entry(A, idx, rel, buf, size, e)) {
        free(buf);
        return NULL;
    }
    buf[size] = 0;
    *len = (size_t)size;
    return buf;
}

static int check_byteorder(const Archive* A, Error* e) {
    zip_int64_t idx = locate(A, "byteorder");
    if (idx < 0) return 0;  // older torch versions write no byteorder entry: little-endian
    size_t len = 0;
    char* s = read_whole(A, idx, "byteorder", &len, e);
    if (!s) return -1;
    int little = strncmp(s, "little", 6) == 0;
    free(s);
    if (!little)
        return errorf(e, "%s: the checkpoint was saved on a big-endian machine (byteorder entry); re-save it on a little-endian one", A->name);
    return 0;
}

static int64_t numel_of(const PickleTensor* t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];  // no overflow: checked by the pickle reader
    return n;
}

static int first_user(const PickleStateDict* d, int i) {
    for (int j = 0; j < i; j++)
        if (strcmp(d->t[j].storage_key, d->t[i].storage_key) == 0) return j;
    return i;
}

// Before allocating anything: each storage entry exists and holds exactly what the pickle declares,
// and no tensor has more elements than its storage (expanded views would multiply memory).
static int validate(const Archive* A, const PickleStateDict* d, zip_int64_t* entry, Error* e) {
    for (int i = 0; i < d->n; i++) {
        const PickleTensor* t = &d->t[i];
        if (numel_of(t) > t->storage_numel)
            return errorf(e, "%s: tensor '%s' is an expanded view with more elements than its storage; save tensors with .contiguous()",
                          A->name, t->name);
        int j = first_user(d, i);
        if (j < i) { entry[i] = entry[j]; continue; }
        char rel[80];
        snprintf(rel, sizeof rel, "data/%s", t->storage_key);
        entry[i] = locate(A, rel);
        if (entry[i] < 0)
            return errorf(e, "%s: storage entry '%s%s' of tensor '%s' is missing; the file is truncated or corrupt",
                          A->name, A->prefix, rel, t->name);
        uint64_t size = 0, want = (uint64_t)t->storage_numel * dtype_size(t->dtype);
        if (entry_size(A, entry[i], rel, &size, e)) return -1;
        if (size != want)
            return errorf(e, "%s: storage entry '%s%s' holds %llu bytes but tensor '%s' declares a %s storage of %lld elements (%llu bytes); the file is corrupt",
                          A->name, A->prefix, rel, (unsigned long long)size, t->name, dtype_name(t->dtype),
                          (long long)t->storage_numel, (unsigned long long)want);
    }
    return 0;
}

static int is_whole_storage(const PickleTensor* t) {
    if (t->offset != 0 || numel_of(t) != t->storage_numel) return 0;
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expect) return 0;
        expect *= t->shape[i];
    }
    return 1;
}

// Copies the strided view t of storage src into dst (contiguous, row-major). Runs along the last
// dimension are copied with one memcpy when that dimension has stride 1.
static void gather(const uint8_t* src, const PickleTensor* t, uint8_t* dst) {
    size_t esz = dtype_size(t->dtype);
    int64_t numel = numel_of(t);
    if (numel == 0) return;
    int outer = t->ndim;
    int64_t run = 1;
    if (t->ndim > 0 && t->stride[t->ndim - 1] == 1) { outer = t->ndim - 1; run = t->shape[t->ndim - 1]; }
    int64_t idx[TENSOR_MAX_DIMS] = {0};
    int64_t off = t->offset;
    for (int64_t done = 0; done < numel; done += run) {
        memcpy(dst + (size_t)done * esz, src + (size_t)off * esz, (size_t)run * esz);
        for (int d = outer - 1; d >= 0; d--) {  // odometer step over the outer dimensions
            off += t->stride[d];
            if (++idx[d] < t->shape[d]) break;
            off -= t->stride[d] * t->shape[d];
            idx[d] = 0;
        }
    }
}

// Reads storage entry[i] once and fills every tensor that views it.
static int load_storage(const Archive* A, const PickleStateDict* d, const zip_int64_t* entry, int i, TensorSet* out, Error* e) {
    const PickleTensor* t = &d->t[i];
    char rel[80];
    snprintf(rel, sizeof rel, "data/%s", t->storage_key);
    uint64_t size = (uint64_t)t->storage_numel * dtype_size(t->dtype);
    int shared = 0;
    for (int j = i + 1; j < d->n; j++) shared |= entry[j] == entry[i];
    if (!shared && is_whole_storage(t)) return read_entry(A, entry[i], rel, out->t[i].data, size, e);
    uint8_t* buf = xmalloc(size ? (size_t)size : 1);
    int rc = read_entry(A, entry[i], rel, buf, size, e);
    for (int j = i; rc == 0 && j < d->n; j++)
        if (entry[j] == entry[i]) gather(buf, &d->t[j], out->t[j].data);
    free(buf);
    return rc;
}

static int read_archive(Archive* A, TensorSet* out, Error* e) {
    zip_int64_t pkl_idx = -1;
    if (find_pickle(A, &pkl_idx, e) || check_byteorder(A, e)) return -1;
    size_t pkl_len = 0;
    char* pkl = read_whole(A, pkl_idx, "data.pkl", &pkl_len, e);
    if (!pkl) return -1;
    size_t nlen = strlen(A->name) + strlen(A->prefix) + 16;
    char* pkl_name = xmalloc(nlen);
    snprintf(pkl_name, nlen, "%s: %sdata.pkl", A->name, A->prefix);
    PickleStateDict d;
    int rc = pickle_read_state_dict(pkl, pkl_len, pkl_name, &d, e);
    free(pkl);
    free(pkl_name);
    if (rc) return -1;
    zip_int64_t* entry = xcalloc((size_t)d.n + 1, sizeof *entry);
    rc = validate(A, &d, entry, e);
    for (int i = 0; rc == 0 && i < d.n; i++) tensorset_add(out, d.t[i].name, d.t[i].dtype, d.t[i].ndim, d.t[i].shape, NULL);
    for (int i = 0; rc == 0 && i < d.n; i++)
        if (first_user(&d, i) == i) rc = load_storage(A, &d, entry, i, out, e);
    free(entry);
    pickle_state_dict_free(&d);
    return rc;
}

static int read_and_close(Archive* A, TensorSet* out, Error* e) {
    tensorset_init(out);
    int rc = read_archive(A, out, e);
    zip_discard(A->z);
    free(A->prefix);
    if (rc) tensorset_free(out);
    return rc;
}

int pth_read(const char* path, TensorSet* out, Error* e) {
    tensorset_init(out);
    struct stat st;
    if (stat(path, &st) != 0) return errorf(e, "%s: cannot open checkpoint: %s", path, strerror(errno));
    int code = 0;
    zip_t* z = zip_open(path, ZIP_RDONLY, &code);
    if (!z) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, code);
        errorf(e, "%s: cannot open checkpoint as a zip archive: %s (is it a torch.save .pth file, complete and not truncated?)",
               path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return -1;
    }
    Archive A = {.z = z, .name = path, .file_len = (uint64_t)st.st_size};
    return read_and_close(&A, out, e);
}

int pth_read_mem(const void* buf, size_t len, const char* name, TensorSet* out, Error* e) {
    tensorset_init(out);
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t* src = zip_source_buffer_create(buf, len, 0, &ze);
    zip_t* z = src ? zip_open_from_source(src, ZIP_RDONLY, &ze) : NULL;
    if (!z) {
        errorf(e, "%s: cannot open checkpoint as a zip archive: %s (is it a torch.save .pth file, complete and not truncated?)",
               name, zip_error_strerror(&ze));
        if (src) zip_source_free(src);
        zip_error_fini(&ze);
        return -1;
    }
    zip_error_fini(&ze);
    Archive A = {.z = z, .name = name, .file_len = len};
    return read_and_close(&A, out, e);
}

// ================================================================================================
// Writer: a minimal STORED zip (with zip64 records past 4 GiB), streamed to a temporary file.
// ================================================================================================

enum { ALIGN = 64 };
static const uint64_t kZip32Max = 0xFFFFFFFFu;

typedef struct ZipEntry {
    char* name;
    uint32_t crc;
    uint64_t size, offset;
} ZipEntry;

typedef struct ZipWriter {
    AtomicFile file;
    uint64_t off;      // bytes written so far
    ZipEntry* ents;
    int n, cap;
} ZipWriter;

static uint8_t* le(uint8_t* p, uint64_t v, int nbytes) {
    for (int i = 0; i < nbytes; i++) p[i] = (uint8_t)(v >> (8 * i));
    return p + nbytes;
}

static int zw_write(ZipWriter* w, const void* p, size_t n, Error* e) {
    if (atomic_file_write(&w->file, p, n, e)) return -1;
    w->off += n;
    return 0;
}

static uint32_t crc_of(const void* data, uint64_t size) {
    uLong crc = crc32(0L, Z_NULL, 0);
    const uint8_t* p = data;
    for (uint64_t done = 0; done < size;) {
        uInt chunk = size - done < (1u << 30) ? (uInt)(size - done) : (1u << 30);
        crc = crc32(crc, p + done, chunk);
        done += chunk;
    }
    return (uint32_t)crc;
}

// Local header: fixed part, name, [zip64 sizes], "FB" padding extra so that the data is 64-aligned.
static int zw_add(ZipWriter* w, const char* name, const void* data, uint64_t size, Error* e) {
    size_t nlen = strlen(name);
    int z64 = size >= kZip32Max;
    uint64_t start = w->off + 30 + nlen + (z64 ? 20 : 0) + 4;
    size_t pad = (size_t)((ALIGN - start % ALIGN) % ALIGN);
    uint32_t crc = crc_of(data, size);
    uint8_t h[30 + 20 + 4 + ALIGN], *p = h;
    p = le(p, 0x04034b50, 4);
    p = le(p, z64 ? 45 : 20, 2);                 // version needed
    p = le(p, 0, 2);                             // flags
    p = le(p, 0, 2);                             // method: stored
    p = le(p, 0, 2);                             // time 00:00
    p = le(p, (1 << 5) | 1, 2);                  // date 1980-01-01
    p = le(p, crc, 4);
    p = le(p, z64 ? kZip32Max : size, 4);        // compressed size
    p = le(p, z64 ? kZip32Max : size, 4);        // uncompressed size
    p = le(p, nlen, 2);
    p = le(p, (z64 ? 20 : 0) + 4 + pad, 2);      // extra length
    uint64_t hdr_off = w->off;
    if (zw_write(w, h, (size_t)(p - h), e) || zw_write(w, name, nlen, e)) return -1;
    p = h;
    if (z64) {
        p = le(p, 0x0001, 2);
        p = le(p, 16, 2);
        p = le(p, size, 8);
        p = le(p, size, 8);
    }
    p = le(p, 0x4246, 2);                        // "FB": torch's alignment padding field
    p = le(p, pad, 2);
    memset(p, 'Z', pad);
    p += pad;
    if (zw_write(w, h, (size_t)(p - h), e) || zw_write(w, data, (size_t)size, e)) return -1;
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->ents = xrealloc(w->ents, (size_t)w->cap * sizeof *w->ents);
    }
    w->ents[w->n++] = (ZipEntry){.name = xstrdup(name), .crc = crc, .size = size, .offset = hdr_off};
    return 0;
}

static int zw_central_entry(ZipWriter* w, const ZipEntry* z, Error* e) {
    int big_size = z->size >= kZip32Max, big_off = z->offset >= kZip32Max;
    size_t xlen = (big_size ? 16 : 0) + (big_off ? 8 : 0);
    size_t nlen = strlen(z->name);
    uint8_t h[46 + 4 + 24], *p = h;
    p = le(p, 0x02014b50, 4);
    p = le(p, xlen ? 45 : 20, 2);                // version made by (MS-DOS)
    p = le(p, xlen ? 45 : 20, 2);                // version needed
    p = le(p, 0, 2);
    p = le(p, 0, 2);
    p = le(p, 0, 2);
    p = le(p, (1 << 5) | 1, 2);
    p = le(p, z->crc, 4);
    p = le(p, big_size ? kZip32Max : z->size, 4);
    p = le(p, big_size ? kZip32Max : z->size, 4);
    p = le(p, nlen, 2);
    p = le(p, xlen ? xlen + 4 : 0, 2);
    p = le(p, 0, 2);                             // comment length
    p = le(p, 0, 2);                             // disk number
    p = le(p, 0, 2);                             // internal attributes
    p = le(p, 0, 4);                             // external attributes
    p = le(p, big_off ? kZip32Max : z->offset, 4);
    if (zw_write(w, h, (size_t)(p - h), e) || zw_write(w, z->name, nlen, e)) return -1;
    if (!xlen) return 0;
    p = h;
    p = le(p, 0x0001, 2);
    p = le(p, xlen, 2);
    if (big_size) { p = le(p, z->size, 8); p = le(p, z->size, 8); }
    if (big_off) p = le(p, z->offset, 8);
    return zw_write(w, h, (size_t)(p - h), e);
}

// Central directory, then (if any count/size/offset overflows) the zip64 end record and locator,
// then the classic end record.
static int zw_finish(ZipWriter* w, Error* e) {
    uint64_t cd_off = w->off;
    for (int i = 0; i < w->n; i++)
        if (zw_central_entry(w, &w->ents[i], e)) return -1;
    uint64_t cd_size = w->off - cd_off, count = (uint64_t)w->n;
    int z64 = count >= 0xFFFF || cd_size >= kZip32Max || cd_off >= kZip32Max;
    uint8_t h[56 + 20 + 22], *p = h;
    if (z64) {
        uint64_t z64_off = w->off;
        p = le(p, 0x06064b50, 4);
        p = le(p, 44, 8);
        p = le(p, 45, 2);
        p = le(p, 45, 2);
        p = le(p, 0, 4);
        p = le(p, 0, 4);
        p = le(p, count, 8);
        p = le(p, count, 8);
        p = le(p, cd_size, 8);
        p = le(p, cd_off, 8);
        p = le(p, 0x07064b50, 4);
        p = le(p, 0, 4);
        p = le(p, z64_off, 8);
        p = le(p, 1, 4);
    }
    p = le(p, 0x06054b50, 4);
    p = le(p, 0, 2);
    p = le(p, 0, 2);
    p = le(p, z64 ? 0xFFFF : count, 2);
    p = le(p, z64 ? 0xFFFF : count, 2);
    p = le(p, z64 ? kZip32Max : cd_size, 4);
    p = le(p, z64 ? kZip32Max : cd_off, 4);
    p = le(p, 0, 2);
    return zw_write(w, h, (size_t)(p - h), e);
}

// The zip's top directory: file name without directory and last extension ("archive" if empty).
static char* archive_stem(const char* path) {
    const char* base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char* dot = strrchr(base, '.');
    size_t n = (dot && dot != base) ? (size_t)(dot - base) : strlen(base);
    if (n == 0) return xstrdup("archive");
    char* s = xmalloc(n + 1);
    memcpy(s, base, n);
    s[n] = 0;
    return s;
}

static int add_named(ZipWriter* w, const char* prefix, const char* rel, const void* data, uint64_t size, Error* e) {
    size_t n = strlen(prefix) + strlen(rel) + 2;
    char* full = xmalloc(n);
    snprintf(full, n, "%s/%s", prefix, rel);
    int rc = zw_add(w, full, data, size, e);
    free(full);
    return rc;
}

// Entries in torch.save's order: data.pkl, .format_version, .storage_alignment, byteorder, data/<i>, version.
static int write_entries(ZipWriter* w, const char* prefix, const TensorSet* s, const uint8_t* pkl, size_t pkl_len, Error* e) {
    if (add_named(w, prefix, "data.pkl", pkl, pkl_len, e) || add_named(w, prefix, ".format_version", "1", 1, e) ||
        add_named(w, prefix, ".storage_alignment", "64", 2, e) || add_named(w, prefix, "byteorder", "little", 6, e))
        return -1;
    for (int i = 0; i < s->n; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "data/%d", i);
        if (add_named(w, prefix, rel, s->t[i].data, tensor_nbytes(&s->t[i]), e)) return -1;
    }
    if (add_named(w, prefix, "version", "3\n", 2, e)) return -1;
    return zw_finish(w, e);
}

// One storage per tensor, keyed "0", "1", ...; contiguous strides.
static uint8_t* describe(const TensorSet* s, size_t* len) {
    PickleTensor* pt = xcalloc((size_t)s->n + 1, sizeof *pt);
    char (*keys)[16] = xcalloc((size_t)s->n + 1, sizeof *keys);
    for (int i = 0; i < s->n; i++) {
        const NamedTensor* t = &s->t[i];
        snprintf(keys[i], sizeof keys[i], "%d", i);
        pt[i] = (PickleTensor){.name = t->name, .dtype = t->dtype, .storage_key = keys[i],
                               .storage_numel = tensor_numel(t), .ndim = t->ndim};
        int64_t stride = 1;
        for (int d = t->ndim - 1; d >= 0; d--) {
            pt[i].shape[d] = t->shape[d];
            pt[i].stride[d] = stride;
            stride *= t->shape[d];
        }
    }
    uint8_t* pkl = pickle_write_state_dict(pt, s->n, len);
    free(keys);
    free(pt);
    return pkl;
}

static int check_names(const char* path, const TensorSet* s, Error* e) {
    for (int i = 0; i < s->n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(s->t[i].name, s->t[j].name) == 0)
                return errorf(e, "%s: cannot save two tensors named '%s'", path, s->t[i].name);
    return 0;
}

int pth_write(const char* path, const TensorSet* s, Error* e) {
    ZipWriter w = {0};
    if (check_names(path, s, e) || atomic_file_open(&w.file, path, e)) return -1;
    size_t pkl_len;
    uint8_t* pkl = describe(s, &pkl_len);
    char* prefix = archive_stem(path);
    int rc = atomic_file_finish(&w.file, write_entries(&w, prefix, s, pkl, pkl_len, e), e);
    for (int i = 0; i < w.n; i++) free(w.ents[i].name);
    free(w.ents);
    free(prefix);
    free(pkl);
    return rc;
}
