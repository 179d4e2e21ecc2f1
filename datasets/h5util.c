// h5util.c — see h5util.h.
#include "datasets/h5util.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_ATTR_STRING = 1 << 16 };

void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct Innermost {
    char desc[400];
} Innermost;

// Walking upward starts at the most specific error; keep the first one that says something.
static herr_t take_innermost(unsigned n, const H5E_error2_t* err, void* data) {
    Innermost* in = data;
    if (in->desc[0] == 0 && err->desc && err->desc[0]) snprintf(in->desc, sizeof in->desc, "%s", err->desc);
    return 0;
}

int h5_fail(Error* e, const char* file, const char* object, const char* action, const char* hint) {
    Innermost in = {{0}};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost, &in);
    H5Eclear2(H5E_DEFAULT);
    const char* why = in.desc[0] ? in.desc : "no HDF5 message";
    if (object && object[0])
        return errorf(e, "%s: %s: %s failed: %s (%s)", file, object, action, why, hint);
    return errorf(e, "%s: %s failed: %s (%s)", file, action, why, hint);
}

int h5_check(int64_t rc, Error* e, const char* file, const char* object, const char* action, const char* hint) {
    if (rc >= 0) return 0;
    return h5_fail(e, file, object, action, hint);
}

int h5_close_id(hid_t id) {
    if (id < 0) return 0;
    switch (H5Iget_type(id)) {
    case H5I_FILE: return H5Fclose(id);
    case H5I_GROUP: return H5Gclose(id);
    case H5I_DATASET: return H5Dclose(id);
    case H5I_DATASPACE: return H5Sclose(id);
    case H5I_DATATYPE: return H5Tclose(id);
    case H5I_ATTR: return H5Aclose(id);
    case H5I_GENPROP_LST: return H5Pclose(id);
    default: return -1;
    }
}

static const char* WRITE_HINT = "check free disk space and that the output directory is writable";
static const char* READ_HINT = "the shard is corrupt or not written by modrwkv: regenerate it";

int h5_attr_write_string(hid_t obj, const char* name, const char* value, const char* file, Error* e) {
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    int rc = h5_check(type, e, file, name, "string type", WRITE_HINT);
    if (rc == 0) rc = h5_check(H5Tset_size(type, strlen(value) + 1), e, file, name, "string size", WRITE_HINT);
    if (rc == 0) rc = h5_check(space, e, file, name, "scalar dataspace", WRITE_HINT);
    if (rc == 0) attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (rc == 0) rc = h5_check(attr, e, file, name, "create attribute", WRITE_HINT);
    if (rc == 0) rc = h5_check(H5Awrite(attr, type, value), e, file, name, "write attribute", WRITE_HINT);
    h5_close_id(attr);
    h5_close_id(space);
    h5_close_id(type);
    return rc;
}

int h5_attr_write_int(hid_t obj, const char* name, int64_t value, hid_t file_type, const char* file, Error* e) {
    hid_t space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    int rc = h5_check(space, e, file, name, "scalar dataspace", WRITE_HINT);
    if (rc == 0) attr = H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (rc == 0) rc = h5_check(attr, e, file, name, "create attribute", WRITE_HINT);
    if (rc == 0) rc = h5_check(H5Awrite(attr, H5T_NATIVE_INT64, &value), e, file, name, "write attribute", WRITE_HINT);
    h5_close_id(attr);
    h5_close_id(space);
    return rc;
}

int h5_attr_exists(hid_t obj, const char* name, const char* file, Error* e) {
    htri_t x = H5Aexists(obj, name);
    if (x < 0) return h5_fail(e, file, name, "look up attribute", READ_HINT);
    return x > 0;
}

// Opens an attribute that must hold exactly one element of type class `want`.
static hid_t open_scalar_attr(hid_t obj, const char* name, H5T_class_t want, hid_t* type, const char* file, Error* e) {
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0) {
        h5_fail(e, file, name, "open attribute", READ_HINT);
        return H5I_INVALID_HID;
    }
    hid_t space = H5Aget_space(attr);
    hssize_t n = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
    h5_close_id(space);
    *type = H5Aget_type(attr);
    H5T_class_t cls = *type < 0 ? H5T_NO_CLASS : H5Tget_class(*type);
    if (n == 1 && cls == want) return attr;
    h5_close_id(*type);
    h5_close_id(attr);
    *type = H5I_INVALID_HID;
    H5Eclear2(H5E_DEFAULT);
    errorf(e, "%s: attribute '%s' must be a single %s (%s)", file, name, want == H5T_STRING ? "string" : "integer",
           READ_HINT);
    return H5I_INVALID_HID;
}

// The memory type keeps the file's character set (h5py writes UTF-8; HDF5 converts no character sets).
static int read_variable_string(hid_t attr, hid_t type, char** out, const char* file, const char* name, Error* e) {
    hid_t mem = H5Tcopy(H5T_C_S1);
    char* p = NULL;
    int rc = h5_check(mem, e, file, name, "string type", READ_HINT);
    if (rc == 0) rc = h5_check(H5Tset_size(mem, H5T_VARIABLE), e, file, name, "string type", READ_HINT);
    if (rc == 0) rc = h5_check(H5Tset_cset(mem, H5Tget_cset(type)), e, file, name, "string type", READ_HINT);
    if (rc == 0) rc = h5_check(H5Aread(attr, mem, &p), e, file, name, "read attribute", READ_HINT);
    if (rc == 0 && p == NULL) rc = errorf(e, "%s: attribute '%s' is a null string (%s)", file, name, READ_HINT);
    if (rc == 0 && strlen(p) >= MAX_ATTR_STRING)
        rc = errorf(e, "%s: attribute '%s' is longer than %d bytes (%s)", file, name, MAX_ATTR_STRING, READ_HINT);
    if (rc == 0) *out = xstrdup(p);
    if (p) H5free_memory(p);
    h5_close_id(mem);
    return rc;
}

// Fixed-length strings are read as raw bytes; padding is NULs (or spaces for SPACEPAD), nothing after it.
static int read_fixed_string(hid_t attr, hid_t type, char** out, const char* file, const char* name, Error* e) {
    size_t size = H5Tget_size(type);
    if (size == 0 || size >= MAX_ATTR_STRING)
        return errorf(e, "%s: attribute '%s' has a string size of %zu bytes (%s)", file, name, size, READ_HINT);
    char* buf = xcalloc(size + 1, 1);
    if (h5_check(H5Aread(attr, type, buf), e, file, name, "read attribute", READ_HINT)) {
        free(buf);
        return -1;
    }
    size_t len = strlen(buf);
    for (size_t i = len; i < size; i++) {
        if (buf[i] != 0) {
            free(buf);
            return errorf(e, "%s: attribute '%s' contains a NUL byte (%s)", file, name, READ_HINT);
        }
    }
    if (H5Tget_strpad(type) == H5T_STR_SPACEPAD)
        while (len > 0 && buf[len - 1] == ' ') buf[--len] = 0;
    *out = buf;
    return 0;
}

int h5_attr_read_string(hid_t obj, const char* name, char** out, const char* file, Error* e) {
    hid_t type;
    hid_t attr = open_scalar_attr(obj, name, H5T_STRING, &type, file, e);
    if (attr < 0) return -1;
    htri_t var = H5Tis_variable_str(type);
    int rc = var < 0   ? h5_fail(e, file, name, "inspect string type", READ_HINT)
             : var > 0 ? read_variable_string(attr, type, out, file, name, e)
                       : read_fixed_string(attr, type, out, file, name, e);
    h5_close_id(type);
    h5_close_id(attr);
    return rc;
}

int h5_attr_read_int(hid_t obj, const char* name, int64_t* out, const char* file, Error* e) {
    hid_t type;
    hid_t attr = open_scalar_attr(obj, name, H5T_INTEGER, &type, file, e);
    if (attr < 0) return -1;
    int rc = h5_check(H5Aread(attr, H5T_NATIVE_INT64, out), e, file, name, "read attribute", READ_HINT);
    h5_close_id(type);
    h5_close_id(attr);
    return rc;
}
