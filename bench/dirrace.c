/* The race a directory made a moment ago offers the open guard.
 *
 *   dirrace DIR COUNT [SH]
 *
 * COUNT times, as fast as it can: mkdir DIR/r<PID>-<N>, write a script `exit 42` into it as x, and run
 * `SH x` at once (default /bin/sh): `sh /tmp/x` raises only FAN_OPEN_PERM on the script, which the open
 * guard refuses in a protected directory (sh then exits with another status). An attempt whose script ran
 * (exit status 42) is one the guard missed: the directory was not marked yet when sh opened the script.
 * Each attempt's script and directory are removed afterwards, so the directories below DIR stay few.
 *
 * Prints one line: attempts N ran R refused F other O secs S (O: sh ended otherwise, counted apart).
 * Exits 0 when every attempt ended either way. Build: cc -O2 -o dirrace dirrace.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: dirrace DIR COUNT [SH]\n");
        return 2;
    }
    const char *dir = argv[1];
    long count = atol(argv[2]);
    const char *sh = argc > 3 ? argv[3] : "/bin/sh";
    static const char script[] = "exit 42\n";
    long ran = 0, refused = 0, other = 0;
    char sub[4096], file[4096 + 3];
    /* Silence the refused sh's complaint: 10 000 lines of it say nothing. */
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    double t0 = now();
    for (long i = 0; i < count; i++) {
        snprintf(sub, sizeof sub, "%s/r%d-%ld", dir, (int)getpid(), i);
        snprintf(file, sizeof file, "%s/x", sub);
        if (mkdir(sub, 0755) != 0) {
            fprintf(stderr, "dirrace: mkdir %s: %s\n", sub, strerror(errno));
            return 1;
        }
        int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || write(fd, script, sizeof script - 1) != (ssize_t)(sizeof script - 1) || close(fd) != 0) {
            fprintf(stderr, "dirrace: write %s: %s\n", file, strerror(errno));
            return 1;
        }
        pid_t pid;
        char *args[] = {(char *)"sh", file, NULL};
        int err = posix_spawn(&pid, sh, &actions, NULL, args, environ);
        if (err != 0) {
            fprintf(stderr, "dirrace: spawn %s: %s\n", sh, strerror(err));
            return 1;
        }
        int status;
        while (waitpid(pid, &status, 0) < 0) {
            if (errno != EINTR) {
                perror("dirrace: waitpid");
                return 1;
            }
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 42)
            ran++;
        else if (WIFEXITED(status))
            refused++;
        else
            other++;
        unlink(file);
        rmdir(sub);
    }
    printf("attempts %ld ran %ld refused %ld other %ld secs %.2f\n", count, ran, refused, other, now() - t0);
    return 0;
}
