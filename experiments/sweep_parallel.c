// sweep_parallel.c — `modrwkv sweep run SWEEP --jobs N`: the runs of a sweep N at a time on one machine, each in
// its own process (`modrwkv sweep run SWEEP --index I`, so skipping, resuming and the markers are those of a
// single run). Children inherit stdout/stderr (their lines interleave; every run's training log is its own
// train.log). The exit status counts the runs whose process failed.
#include "experiments/sweep_parallel.h"

#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "experiments/slurm_submit.h"

extern char** environ;

// Starts run i in a child process; returns its pid or -1 (e filled).
static pid_t start_run(const char* exe, const char* sweep_path, int i, Error* e) {
    char index[16];
    snprintf(index, sizeof index, "%d", i);
    char* argv[] = {(char*)exe, "sweep", "run", (char*)sweep_path, "--index", index, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, exe, NULL, NULL, argv, environ);
    if (rc != 0) {
        errorf(e, "cannot start %s for run %d: %s", exe, i, strerror(rc));
        return -1;
    }
    return pid;
}

int sweep_run_parallel(const Sweep* s, const char* sweep_path, int jobs, FILE* log, Error* e) {
    char* exe = slurm_self_exe();
    if (!exe) return errorf(e, "cannot find this executable (/proc/self/exe) to start the runs");
    pid_t* pids = xcalloc((size_t)s->n_runs, sizeof(pid_t));  // (n_runs) 0: not started or reaped
    int next = 0, running = 0, failed = 0, rc = 0;
    fprintf(log, "sweep %s: %d runs, at most %d at a time\n", s->name, s->n_runs, jobs);
    fflush(log);
    while (next < s->n_runs || running > 0) {
        while (rc == 0 && running < jobs && next < s->n_runs) {
            pids[next] = start_run(exe, sweep_path, next, e);
            if (pids[next] < 0) rc = -1;
            else running++;
            next++;
        }
        if (running == 0) break;
        int status;
        pid_t done = waitpid(-1, &status, 0);
        if (done < 0 && errno == EINTR) continue;
        if (done < 0) break;
        for (int i = 0; i < s->n_runs; i++) {
            if (pids[i] != done) continue;
            pids[i] = 0;
            running--;
            int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            failed += !ok;
            fprintf(log, "sweep %s: run %d (%s) %s\n", s->name, i, s->runs[i].id,
                    ok ? "finished" : "FAILED (its FAILED file and train.log hold the error)");
            fflush(log);
        }
    }
    free(pids);
    free(exe);
    fprintf(log, "sweep %s: %d runs, %d failed\n", s->name, s->n_runs, failed);
    if (rc != 0) return -1;
    return failed;
}
