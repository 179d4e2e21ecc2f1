// pth.h — PyTorch `.pth` checkpoints: the zip archive torch.save(state_dict) writes.
//
// Contract (reader): the archive may use any prefix directory (<prefix>/data.pkl, <prefix>/data/<key>);
// data.pkl must be the torch state_dict pickle subset (pickle.h); tensors come out in the order of the
// file with the dtype of their storage, as contiguous copies (storage offsets and strides are
// gathered). Missing entries, sizes that disagree with the pickle, views reaching outside their
// storage, big-endian archives and anything truncated -> -1 with a one-line message naming the file.
// Contract (writer): the layout torch.save produces — STORED entries with 64-byte aligned data,
// <stem>/data.pkl (protocol 2 OrderedDict of _rebuild_tensor_v2), .format_version, .storage_alignment,
// byteorder, data/<i> (one storage per tensor), version — so that torch.load (weights_only too) reads
// it. Zip64 records are added when the archive outgrows 4 GiB. Written atomically (temp + rename).
#pragma once
#include <stddef.h>

#include "kernels/common.h"
#include "trainer/tensorset.h"

// `out` is initialized by the call (pass an empty or fresh set); on failure it is left empty.
int pth_read(const char* path, TensorSet* out, Error* e);
// Same from memory; `name` is used in messages in place of a path.
int pth_read_mem(const void* buf, size_t len, const char* name, TensorSet* out, Error* e);
// The zip's prefix directory is the stem of path's file name ("archive" if empty).
int pth_write(const char* path, const TensorSet* s, Error* e);
