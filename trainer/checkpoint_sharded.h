// checkpoint_sharded.h — checkpoints written in parallel: every rank writes its own share of the model and the
// optimizer state, rank 0 writes the index last (DESIGN.md "Parallelism"; issue: sharded checkpoints).
//
// Layout: <run>/checkpoints/step-XXXXXXXX.shards/
//   rank-RRRRR.safetensors  one per rank that holds something: its "pieces" (fp32, unique keys), described by
//                           the file's metadata "pieces" (a JSON array as a string): for each key the tensor
//                           name (checkpoint name, "optimizer.exp_avg." prefixes included), the tensor-parallel
//                           slice it belongs to (tp_dim, part of parts, the slice's shape: params.h) and the flat
//                           range [start, start + n) of that slice it holds (ZeRO-1 moment shards cut tensors).
//   index.json              written last and atomically by rank 0 once every rank's file is complete, so a
//                           directory without it is an interrupted save and is ignored: {"format":
//                           "modrwkv-sharded-checkpoint", "version": 1, "files": [...], "tensors": [{"name",
//                           "shape" (whole tensor), "covered" (values the pieces must supply; the rest is 0)}],
//                           "metadata": the single-file checkpoint's __metadata__ JSON text}.
// Reading assembles whole tensors and the metadata exactly as a single-file checkpoint holds them, so a
// sharded checkpoint loads under any dp x tp layout (re-sharding happens as for single files) and in every
// tool that reads checkpoints (trainer/checkpoint.h tensor_file_read).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"
#include "sharding/comm.h"
#include "trainer/tensorset.h"

typedef struct CkptWriter CkptWriter;

CkptWriter* ckpt_writer_create(void);
void ckpt_writer_free(CkptWriter* w);
// Adds values[0, n) = the flat range [start, start + n) of tp slice `part` of `parts` (along tp_dim; parts 1:
// the whole tensor) of tensor `name`, whose slice has the given shape. The values are copied.
void ckpt_writer_add(CkptWriter* w, const char* name, int ndim, const int64_t* slice_shape, int tp_dim, int part,
                      int parts, size_t start, size_t n, const float* values);
// Rank 0: declares a tensor of the checkpoint (whole shape) and how many of its values the pieces of all ranks
// supply together (its numel, or 0 for moments of frozen tensors, which read as zeros).
void ckpt_writer_declare(CkptWriter* w, const char* name, int ndim, const int64_t* shape, size_t covered);
// Collective over world: every rank with pieces writes <dir>/rank-RRRRR.safetensors; when all succeeded,
// rank 0 writes <dir>/index.json (metadata: rank 0's single-file metadata text). Returns 0 on every rank, or
// -1 on every rank with e naming the rank that failed.
int ckpt_writer_commit(CkptWriter* w, Comm* world, const char* dir, const char* metadata, Error* e);

// 1 when path is a directory holding index.json (a complete sharded checkpoint).
int is_sharded_checkpoint(const char* path);
// Reads a complete sharded checkpoint into whole tensors (in declaration order) and its metadata. Returns 0,
// or -1 with e naming the directory and the file/tensor (missing index, file, key, uncovered values).
int sharded_checkpoint_read(const char* dir, TensorSet* out, Error* e);
// Deletes the directory and the files in it (pruning old checkpoints).
void sharded_checkpoint_remove(const char* dir);
