// h5util.h — checked HDF5 calls for the shard writer and reader: every failing call becomes one Error line
// naming the file, the HDF5 object and the innermost message of HDF5's error stack (which HDF5 is told
// never to print by itself), plus scalar attribute helpers.
//
// Contract: HDF5 (the Debian build) is not thread-safe; these helpers, like the shard reader and writer,
// must be used from one thread of a process at a time.
#pragma once
#include <hdf5.h>
#include <stdint.h>

#include "kernels/common.h"

// Turns off HDF5's automatic error-stack printing (H5Eset_auto2(H5E_DEFAULT, NULL, NULL)); idempotent.
void h5_quiet(void);
// Fills e with "<file>: <object>: <action> failed: <innermost HDF5 message> (<hint>)" (object may be
// NULL or ""), clears HDF5's error stack and returns -1.
int h5_fail(Error* e, const char* file, const char* object, const char* action, const char* hint);
// h5Check: 0 when rc >= 0 (an herr_t, hid_t or htri_t), otherwise h5_fail(...).
int h5_check(int64_t rc, Error* e, const char* file, const char* object, const char* action, const char* hint);
// Closes an id of any kind when it is valid (>= 0); returns 0 or -1 like H5*close.
int h5_close_id(hid_t id);

// Scalar attributes on an object (root group or dataset).
int h5_attr_write_string(hid_t obj, const char* name, const char* value, const char* file, Error* e);
int h5_attr_write_int(hid_t obj, const char* name, int64_t value, hid_t file_type, const char* file, Error* e);
// 1 when the attribute exists, 0 when it does not, -1 (e filled) when HDF5 cannot tell.
int h5_attr_exists(hid_t obj, const char* name, const char* file, Error* e);
// Reads a string attribute (fixed-length or variable-length, as h5py writes them) into a malloc'ed
// NUL-terminated string; rejects other types, non-scalar shapes and strings with NUL bytes inside.
int h5_attr_read_string(hid_t obj, const char* name, char** out, const char* file, Error* e);
// Reads an integer attribute (any integer type, scalar or one element) as int64.
int h5_attr_read_int(hid_t obj, const char* name, int64_t* out, const char* file, Error* e);
