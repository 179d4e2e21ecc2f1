// comm_nccl.h — the NCCL communicator: the collectives of comm.h on DEVICE buffers, one GPU per rank
// (DESIGN.md, "Parallelism"). Built when CMake finds CUDA and NCCL (MODRWKV_HAVE_NCCL).
//
// Contract (what differs from comm.h's host communicators is said so):
// - Creation is collective over `parent` (an MPI or one-rank communicator of the same ranks; not owned, it
//   must outlive the NCCL communicator): every rank selects its GPU (cudaSetDevice(device); device < 0:
//   comm_nccl_device(local rank of parent)), rank 0 of the parent draws an ncclUniqueId and broadcasts it
//   over the parent (comm_broadcast), and every rank joins with ncclCommInitRankConfig in non-blocking mode,
//   polled until the parent's timeout. The ranks agree over the parent after each step, so when any rank
//   fails (no GPU, more ranks than GPUs on a node, an NCCL error) every rank returns NULL with e filled
//   and none is left waiting. The result has the parent's size, ranks, world ranks, local ranks, timeout.
// - Buffers (x, in, out, buf) are DEVICE memory of the communicator's GPU. all_reduce_double takes and
//   returns host values. Every collective first makes its stream wait for the work already queued on the
//   compute stream (comm_nccl_set_compute_stream; default: the legacy default stream), runs on the
//   communicator's own stream and returns once it has completed: results are ready for every stream and
//   the host (a synchronous API, like comm.h; overlap comes from calling it per bucket between backward
//   kernels on other streams).
// - Chunks as comm.h: chunk = comm_chunk(n, size) = ceil(n / size), rank r owns [r*chunk, r*chunk + len_r).
//   NCCL's ncclReduceScatter/ncclAllGather take equal chunks, so when size does not divide n the data goes
//   through staging buffers of chunk*size floats on the GPU: reduce_scatter copies the n inputs into one,
//   pads it with zeros and reduces it (out gets len_r values then zeros, as comm.h says); all_gather
//   gathers into one and copies its first n values (the padding lies past n). When size divides n, no
//   staging. gather: grouped ncclSend/ncclRecv of len_r values to the root. broadcast: ncclBroadcast of
//   bytes. barrier: an all-reduce of one float, completed. AVG: ncclAvg; MAX: ncclMax (NaN handling is
//   NCCL's).
// - Determinism: NOT rank-ordered. NCCL sums in the order of its algorithm (ring, tree, NVLS, chosen by
//   size and topology), so results can differ from the MPI communicator's in the last bits and between
//   machines or NCCL versions; CPU-vs-GPU comparisons use tolerances (tests/gpu/nccl_check.c: 1e-6
//   relative on data of one sign). Same machine, same NCCL_ALGO/NCCL_PROTO: repeatable in practice.
// - Timeouts (watchdog): a collective is enqueued, then the host polls cudaStreamQuery and
//   ncclCommGetAsyncError until it completes. On an asynchronous NCCL error (a peer died, the network
//   failed) or after the communicator's timeout (comm_set_timeout; inherited from the parent) it calls
//   ncclCommAbort (which ends the hung kernels) and aborts the job through the parent with one line naming
//   this rank, the collective and what to do (MPI_Abort: every rank exits non-zero).
// - Errors: every CUDA and NCCL call is checked; a failure prints the call, its source line, CUDA's or
//   NCCL's message and what to do (rerun with NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET; check
//   CUDA_VISIBLE_DEVICES and nvidia-smi) and aborts the job.
// - Accounting (comm_stats.h): NCCL picks its algorithm, so the bytes counted per rank are the ring
//   algorithm's for what is actually moved (staging padding included): all_reduce of n values of e bytes
//   2 (P-1) n e / P each way, reduce_scatter/all_gather (P-1) chunk e each way, gather len_r e sent (the
//   root receives the others' values), broadcast: the root sends bytes, the others receive them (NCCL's
//   forwarding along its ring is not counted), scalar 2 (P-1) 8 / P, barrier 2 (P-1) 4 / P.
// - split: ncclCommSplit (NCCL >= 2.18; else a new unique id per color over the parent's split) plus
//   comm_split of the parent for the new group's host communicator, which the split owns. abort:
//   ncclCommAbort, then the parent's abort. free: ncclCommFinalize + ncclCommDestroy, the stream, the
//   staging buffers, and the host communicator of a split.
#pragma once
#include "kernels/common.h"
#include "sharding/comm.h"

#ifdef MODRWKV_HAVE_NCCL
#include <cuda_runtime_api.h>

// The GPU of a rank: local_rank mod the number of visible devices. Returns -1 with e filled when no device
// is visible or when the node runs more ranks (local_size) than it has GPUs.
int comm_nccl_device(int local_rank, int local_size, Error* e);
// See above. device < 0: comm_nccl_device(comm_local_rank(parent), comm_local_size(parent)).
Comm* comm_nccl_create(Comm* parent, int device, Error* e);
// The stream whose queued work every later collective of c waits for (NULL: the legacy default stream).
void comm_nccl_set_compute_stream(Comm* c, cudaStream_t stream);
// The communicator's own stream and GPU.
cudaStream_t comm_nccl_stream(const Comm* c);
int comm_nccl_gpu(const Comm* c);
#endif
