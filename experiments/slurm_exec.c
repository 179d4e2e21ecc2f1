// slurm_exec.c — running the Slurm client programs (sbatch, squeue) without a shell: posix_spawn with an
// argument vector, stdout read through a pipe, stderr left to the user's terminal (experiments/slurm_submit.h).
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "experiments/slurm_submit.h"

extern char** environ;

int slurm_find_program(const char* name, char* path, size_t size) {
    if (strchr(name, '/')) {
        snprintf(path, size, "%s", name);
        return access(path, X_OK) == 0;
    }
    const char* env = getenv("PATH");
    char* dirs = xstrdup(env ? env : "/usr/bin:/bin");
    int found = 0;
    char* save = NULL;
    for (char* d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        struct stat st;
        snprintf(path, size, "%s/%s", *d ? d : ".", name);
        found = stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
    }
    free(dirs);
    return found;
}

// Reads everything from fd into a growing NUL-terminated buffer.
static char* read_all(int fd) {
    size_t len = 0, cap = 4096;
    char* buf = xmalloc(cap);
    for (;;) {
        if (len + 1024 > cap) buf = xrealloc(buf, cap *= 2);
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
    }
    buf[len] = 0;
    return buf;
}

static int wait_status(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return 127;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 127;
}

// stdout into a pipe (read until EOF), stderr into an unnamed temporary file (read after the exit): the two
// cannot block each other.
int slurm_run(char* const* argv, char** out, char** err, Error* e) {
    char path[PATH_MAX];
    if (!slurm_find_program(argv[0], path, sizeof path)) return errorf(e, "%s not found on PATH", argv[0]);
    int fds[2] = {-1, -1};
    if (out && pipe(fds) != 0) return errorf(e, "%s: cannot create a pipe (%s)", argv[0], strerror(errno));
    FILE* errf = err ? tmpfile() : NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (errf) posix_spawn_file_actions_adddup2(&fa, fileno(errf), STDERR_FILENO);
    if (out) {
        posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
        posix_spawn_file_actions_addclose(&fa, fds[0]);
        posix_spawn_file_actions_addclose(&fa, fds[1]);
    }
    fflush(stdout);
    pid_t pid;
    int rc = posix_spawn(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (out) close(fds[1]);
    if (rc != 0) {
        if (out) close(fds[0]);
        if (errf) fclose(errf);
        return errorf(e, "%s: cannot start (%s)", path, strerror(rc));
    }
    if (out) {
        *out = read_all(fds[0]);
        close(fds[0]);
    }
    int status = wait_status(pid);
    if (errf) {
        lseek(fileno(errf), 0, SEEK_SET);
        *err = read_all(fileno(errf));
        fclose(errf);
    }
    return status;
}

// The job id at the start of sbatch --parsable's output: "123", "123;cluster".
static int parse_job_id(const char* text, char* id, size_t size) {
    size_t n = strspn(text, "0123456789");
    if (n == 0 || n >= size) return -1;
    memcpy(id, text, n);
    id[n] = 0;
    return 0;
}

int slurm_sbatch(const char* script, const char* const* extra, int n_extra, char* id, size_t id_size, Error* e) {
    char path[PATH_MAX];
    if (!slurm_find_program("sbatch", path, sizeof path))
        return errorf(e, "sbatch not found: install Slurm's client or use --dry-run");
    char** argv = xcalloc((size_t)n_extra + 4, sizeof *argv);
    int n = 0;
    argv[n++] = "sbatch";
    argv[n++] = "--parsable";
    for (int i = 0; i < n_extra; i++) argv[n++] = (char*)extra[i];
    argv[n++] = (char*)script;
    char *out = NULL, *err = NULL;
    int rc = slurm_run(argv, &out, &err, e);
    free(argv);
    for (size_t n = err ? strlen(err) : 0; n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '); n--) err[n - 1] = 0;
    if (rc > 0) errorf(e, "sbatch %s failed (exit status %d): %.600s", script, rc, err && *err ? err : "no message");
    else if (rc == 0 && parse_job_id(out, id, id_size) != 0)
        rc = errorf(e, "sbatch %s printed no job id (output: '%.200s' %.300s)", script, out, err ? err : "");
    else if (rc == 0 && err && *err)
        fputs(err, stderr);  // sbatch's warnings of a successful submission
    free(out);
    free(err);
    return rc == 0 ? 0 : -1;
}

char* slurm_self_exe(void) {
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return NULL;
    buf[n] = 0;
    return xstrdup(buf);
}

char* slurm_absolute(const char* path, Error* e) {
    char buf[PATH_MAX];
    if (!realpath(path, buf)) {
        errorf(e, "%s: %s", path, strerror(errno));
        return NULL;
    }
    return xstrdup(buf);
}
