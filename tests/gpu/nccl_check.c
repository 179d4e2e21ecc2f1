// nccl_check.c — specification of the NCCL communicator (sharding/comm_nccl.h) against the MPI one: run on
// a GPU node with `mpirun -np G build/nccl_check` (G ranks, one GPU each: G <= the node's GPUs; several
// nodes: `srun --mpi=pmix --ntasks-per-node=8 build/nccl_check`). Not registered in ctest (CI has no GPU).
//
// Every rank builds its contribution on the host (positive values over 5 decades, seeded by rank), runs
// the collective once through the MPI world on host buffers and once through the NCCL communicator on
// device buffers, and compares (the worst value over all ranks is printed once, by rank 0):
// - all_reduce SUM/AVG/MAX, reduce_scatter SUM/AVG, all_gather, gather (root P-1) for sizes that do and do
//   not divide by P (and n < P): within 1e-6 relative (NCCL sums in its own order; with values of one
//   sign the rounding differences stay below 2 P eps), MAX and the gathers exactly; the zero padding of
//   reduce_scatter's chunk exactly 0.
// - broadcast of 13 B and 1 MiB bit for bit; scalar all-reduce SUM/AVG/MAX within 1e-12; a barrier.
// - a split into even and odd ranks: an all-reduce in each group equals the MPI split's.
// - accounting: an all-reduce of n floats counts 2 (P-1) n 4 / P bytes each way.
// `--scenario timeout`: rank 1 sleeps 2 s past a 2 s timeout before an all-reduce; every other rank must
// end the job non-zero with "rank R: NCCL collective all_reduce ... timed out" (check by hand).
#include <cuda_runtime_api.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/common.h"
#include "sharding/comm.h"
#include "sharding/comm_nccl.h"
#include "tests/testutil.h"

static int g_rank;

static int report(const char* name, double measured, double tol) {
    double worst = 0;
    MPI_Allreduce(&measured, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    int fail = !(worst <= tol);
    if (g_rank == 0) printf("%s: worst over ranks %.3e (tol %.1e) %s\n", name, worst, tol, fail ? "FAIL" : "PASS");
    return fail;
}

static void cuda_ok(cudaError_t rc, const char* what) {
    if (rc != cudaSuccess) fatal("nccl_check: %s: %s", what, cudaGetErrorString(rc));
}

// Device copy of n host floats (x NULL: NaN-poisoned; at least one float allocated).
static float* to_device(const float* x, size_t n) {
    float* d = NULL;
    cuda_ok(cudaMalloc((void**)&d, (n + 1) * sizeof(float)), "cudaMalloc");
    cuda_ok(cudaMemset(d, 0xff, (n + 1) * sizeof(float)), "cudaMemset");  // NaN poison
    if (n && x) cuda_ok(cudaMemcpy(d, x, n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
    return d;
}

static float* from_device(const float* d, size_t n) {
    float* x = xmalloc((n + 1) * sizeof(float));
    if (n) cuda_ok(cudaMemcpy(x, d, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return x;
}

static double max_rel(const float* got, const float* want, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]) / fmax(fabs((double)want[i]), 1e-30);
        if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

// Rank q's positive contribution, 5 decades.
static float* contribution(size_t n, int q, uint64_t salt) {
    TestRng r;
    test_rng_seed(&r, 77 + 13 * (uint64_t)q + salt);
    float* x = xmalloc((n + 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = test_rng_uniform(&r, 0.5f, 1.5f) * powf(10.0f, (float)(i % 5) - 2);
    return x;
}

// ---------------------------------------------------------------------------- collectives
static double all_reduce_err(Comm* mpi, Comm* nccl, size_t n, CommOp op) {
    float* host = contribution(n, comm_rank(mpi), n);
    float* dev = to_device(host, n);
    comm_all_reduce(mpi, host, n, op);
    comm_all_reduce(nccl, dev, n, op);
    float* got = from_device(dev, n);
    double err = max_rel(got, host, n);
    free(host);
    free(got);
    cudaFree(dev);
    return err;
}

static double reduce_scatter_err(Comm* mpi, Comm* nccl, size_t n, CommOp op) {
    size_t chunk = comm_chunk(n, comm_size(mpi)), len = comm_chunk_len(n, comm_size(mpi), comm_rank(mpi));
    float* in = contribution(n, comm_rank(mpi), 3 * n);
    float* want = xmalloc((chunk + 1) * sizeof(float));
    float* d_in = to_device(in, n);
    float* d_out = to_device(NULL, chunk);
    comm_reduce_scatter(mpi, want, in, n, op);
    comm_reduce_scatter(nccl, d_out, d_in, n, op);
    float* got = from_device(d_out, chunk);
    double err = max_rel(got, want, len);
    for (size_t i = len; i < chunk; i++) err += got[i] != 0.0f;  // the padding is exactly zero
    free(in);
    free(want);
    free(got);
    cudaFree(d_in);
    cudaFree(d_out);
    return err;
}

// all_gather (root < 0) or gather to root: exact.
static double gather_err(Comm* mpi, Comm* nccl, size_t n, int root) {
    int P = comm_size(mpi), r = comm_rank(mpi);
    size_t chunk = comm_chunk(n, P), len = comm_chunk_len(n, P, r);
    float* mine = contribution(len, r, 5 * n);
    float* want = xmalloc((chunk * (size_t)P + 1) * sizeof(float));
    float* d_in = to_device(mine, len);
    float* d_out = to_device(NULL, n);
    if (root < 0) {
        comm_all_gather(mpi, want, mine, n);
        comm_all_gather(nccl, d_out, d_in, n);
    } else {
        comm_gather(mpi, want, mine, n, root);
        comm_gather(nccl, d_out, d_in, n, root);
    }
    float* got = from_device(d_out, n);
    double err = root < 0 || r == root ? max_rel(got, want, n) : 0;
    free(mine);
    free(want);
    free(got);
    cudaFree(d_in);
    cudaFree(d_out);
    return err;
}

static int check_collectives(Comm* mpi, Comm* nccl) {
    size_t sizes[] = {1, 3, 7, 1000, 1001, 65537, (1 << 20) + 3};
    const char* ops[] = {"SUM", "AVG", "MAX"};
    int fail = 0, P = comm_size(mpi);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        char name[256];
        for (int op = COMM_SUM; op <= COMM_MAX; op++) {
            snprintf(name, sizeof name, "all_reduce %s n=%zu: NCCL vs MPI, max relative difference", ops[op], n);
            fail += report(name, all_reduce_err(mpi, nccl, n, (CommOp)op), op == COMM_MAX ? 0 : 1e-6);
        }
        for (int op = COMM_SUM; op <= COMM_AVG; op++) {
            snprintf(name, sizeof name, "reduce_scatter %s n=%zu (chunk %zu): NCCL vs MPI", ops[op], n, comm_chunk(n, P));
            fail += report(name, reduce_scatter_err(mpi, nccl, n, (CommOp)op), 1e-6);
        }
        snprintf(name, sizeof name, "all_gather n=%zu: NCCL vs MPI (exact)", n);
        fail += report(name, gather_err(mpi, nccl, n, -1), 0);
        snprintf(name, sizeof name, "gather to rank %d n=%zu: NCCL vs MPI (exact)", P - 1, n);
        fail += report(name, gather_err(mpi, nccl, n, P - 1), 0);
    }
    return fail;
}

static int check_broadcast(Comm* nccl, size_t bytes) {
    int P = comm_size(nccl), r = comm_rank(nccl), root = P / 2;
    uint8_t* want = xmalloc(bytes);
    for (size_t i = 0; i < bytes; i++) want[i] = (uint8_t)(i * 31 + 7);
    uint8_t* host = xmalloc(bytes);
    memset(host, r == root ? 0 : 0xab, bytes);
    if (r == root) memcpy(host, want, bytes);
    void* d = NULL;
    cuda_ok(cudaMalloc(&d, bytes), "cudaMalloc");
    cuda_ok(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    comm_broadcast(nccl, d, bytes, root);
    cuda_ok(cudaMemcpy(host, d, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
    double bad = memcmp(host, want, bytes) != 0;
    free(want);
    free(host);
    cudaFree(d);
    char name[128];
    snprintf(name, sizeof name, "broadcast %zu B from rank %d: bytes differing", bytes, root);
    return report(name, bad, 0);
}

static int check_scalars(Comm* mpi, Comm* nccl) {
    double x = 1.0 / (3 + comm_rank(mpi)), err = 0;
    for (int op = COMM_SUM; op <= COMM_MAX; op++) {
        double a = comm_all_reduce_double(mpi, x, (CommOp)op), b = comm_all_reduce_double(nccl, x, (CommOp)op);
        err = fmax(err, fabs(a - b) / fabs(a));
    }
    comm_barrier(nccl);
    return report("all_reduce_double SUM/AVG/MAX: NCCL vs MPI, then a barrier", err, 1e-12);
}

static int check_split(Comm* mpi, Comm* nccl) {
    Error e = {{0}};
    int color = comm_rank(mpi) % 2;
    Comm* ms = comm_split(mpi, color, 0, &e);
    Comm* ns = ms ? comm_split(nccl, color, 0, &e) : NULL;
    if (!ns) fatal("nccl_check: split: %s", e.msg);
    double bad = comm_size(ms) != comm_size(ns) || comm_rank(ms) != comm_rank(ns);
    double err = all_reduce_err(ms, ns, 4099, COMM_SUM);
    comm_free(ns);
    comm_free(ms);
    return report("split even/odd: sizes and ranks equal, all_reduce NCCL vs MPI", bad + err, 1e-6);
}

static int check_accounting(Comm* nccl) {
    int P = comm_size(nccl);
    size_t n = 1000;
    float* d = to_device(NULL, n);
    cuda_ok(cudaMemset(d, 0, n * sizeof(float)), "cudaMemset");
    comm_stats_reset(nccl);
    comm_all_reduce(nccl, d, n, COMM_SUM);
    CommStats s;
    comm_stats_get(nccl, &s);
    cudaFree(d);
    uint64_t want = 2 * (uint64_t)(P - 1) * n * 4 / (uint64_t)P;
    double bad = fabs((double)s.kind[COMM_KIND_ALL_REDUCE].bytes_sent - (double)want) +
                 fabs((double)s.kind[COMM_KIND_ALL_REDUCE].bytes_received - (double)want) +
                 fabs((double)s.kind[COMM_KIND_ALL_REDUCE].calls - 1);
    return report("accounting: all_reduce of 1000 floats counts 2 (P-1) n 4 / P bytes each way", bad, 0);
}

// ---------------------------------------------------------------------------- main
static void timeout_scenario(Comm* nccl) {
    comm_set_timeout(nccl, 2);
    float* d = to_device(NULL, 1024);
    if (comm_rank(nccl) == 1) sleep(4);
    comm_all_reduce(nccl, d, 1024, COMM_SUM);
    printf("rank %d: all_reduce completed\n", comm_rank(nccl));
    cudaFree(d);
}

int main(int argc, char** argv) {
    Error e = {{0}};
    Comm* world = comm_world_create(&argc, &argv, &e);
    if (!world) fatal("%s", e.msg);
    int mpi_ready = 0, provided = 0;
    MPI_Initialized(&mpi_ready);
    if (!mpi_ready) MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    Comm* nccl = comm_nccl_create(world, -1, &e);
    if (!nccl) fatal("%s", e.msg);
    if (g_rank == 0)
        printf("nccl_check: %d rank(s), host communicator '%s', rank 0 on GPU %d\n", comm_size(world),
               comm_backend_name(world), comm_nccl_gpu(nccl));
    int fail = 0;
    if (argc > 2 && strcmp(argv[1], "--scenario") == 0 && strcmp(argv[2], "timeout") == 0) {
        timeout_scenario(nccl);
    } else {
        fail += check_collectives(world, nccl);
        fail += check_broadcast(nccl, 13);
        fail += check_broadcast(nccl, 1 << 20);
        fail += check_scalars(world, nccl);
        fail += check_split(world, nccl);
        fail += check_accounting(nccl);
    }
    comm_free(nccl);
    int total = 0;
    MPI_Allreduce(&fail, &total, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    comm_free(world);
    if (!mpi_ready) MPI_Finalize();
    if (g_rank != 0) return total ? 1 : 0;
    return test_summary("nccl_check", total);
}
