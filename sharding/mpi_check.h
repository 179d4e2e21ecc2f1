// mpi_check.h — every MPI call of modrwkv goes through mpi_check (llm.c's mpiCheck idea).
//
// Contract: communicators are set to MPI_ERRORS_RETURN, so a failing call returns its code here;
// mpi_check then prints one line naming this rank's world rank, the call and its source line, MPI's own
// error text and what to do, and terminates the whole job (MPI_Abort on MPI_COMM_WORLD, status 1).
// Include only from files compiled with MPI (comm_mpi.c and MPI programs).
#pragma once
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static inline void mpi_check_failed(int rc, const char* call, const char* file, int line) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0, rank = -1, initialized = 0, finalized = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "MPI error code %d", rc);
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    fflush(stdout);
    fprintf(stderr,
            "modrwkv: error: rank %d: %s failed (%s:%d): %s; check that every rank runs the same binary and "
            "configuration and see the launcher's output for the first rank that failed\n",
            rank, call, file, line, text);
    fflush(stderr);
    if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static inline void mpi_check_at(int rc, const char* call, const char* file, int line) {
    if (rc != MPI_SUCCESS) mpi_check_failed(rc, call, file, line);
}

// Checks the return code of one MPI call: mpi_check(MPI_Barrier(comm)).
#define mpi_check(call) mpi_check_at((call), #call, __FILE__, __LINE__)
