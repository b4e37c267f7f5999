/* Exec load for the robustness tests; compiled by the test with `cc -O2`.
 *
 *   execloop soak <allowed> <denied> <count> <deny_every>
 *       posix_spawn (vfork-style) `count` times: attempt i runs <denied> when i % deny_every == 0, else
 *       <allowed>; waits for each child. Prints one line of counts.
 *   execloop flood <denied> <count>
 *       forks `count` short-lived children that each execve <denied> once and exit at once (42 on EPERM);
 *       prints "child <pid>" per child, then the counts.
 *   execloop race <dir> <template> <count>
 *       writes a copy of <template> at <dir>/r<i>, forks a child that execs it while the parent unlinks it,
 *       so the file is often gone by the time the daemon decides; child exit 0 = ran, 2 = EPERM, 3 = ENOENT.
 *   execloop until <stopfile> <path>
 *       posix_spawn <path> again and again, as fast as it can, until <stopfile> exists; counts the attempts
 *       that ran (whatever their exit status) and those refused with EPERM.
 *
 * Any attempt whose outcome is not the expected one is counted under a "wrong"/"other" key.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int soak(const char *allowed, const char *denied, long count, long deny_every) {
    long allowed_ok = 0, denied_eperm = 0, wrong_ran = 0, wrong_denied = 0, allowed_failed = 0, other = 0;
    for (long i = 0; i < count; i++) {
        int deny = i % deny_every == 0;
        const char *path = deny ? denied : allowed;
        char *argv[] = {(char *)path, NULL};
        pid_t pid;
        int rc = posix_spawn(&pid, path, NULL, NULL, argv, environ);
        if (rc == 0) {
            int st;
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            if (deny)
                wrong_ran++;
            else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
                allowed_ok++;
            else
                allowed_failed++;
        } else if (rc == EPERM) {
            if (deny)
                denied_eperm++;
            else
                wrong_denied++;
        } else {
            if (other < 5)
                fprintf(stderr, "attempt %ld (%s): %s\n", i, path, strerror(rc));
            other++;
        }
    }
    printf("allowed_ok=%ld denied_eperm=%ld wrong_ran=%ld wrong_denied=%ld allowed_failed=%ld other=%ld\n",
           allowed_ok, denied_eperm, wrong_ran, wrong_denied, allowed_failed, other);
    return 0;
}

static int flood(const char *denied, long count) {
    long eperm = 0, other = 0;
    for (long i = 0; i < count; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            other++;
            continue;
        }
        if (pid == 0) {
            char *argv[] = {(char *)denied, NULL};
            execve(denied, argv, environ);
            _exit(errno == EPERM ? 42 : 43);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        printf("child %d\n", (int)pid);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 42)
            eperm++;
        else
            other++;
    }
    printf("eperm=%ld other=%ld pid=%d\n", eperm, other, (int)getpid());
    return 0;
}

static int race(const char *dir, const char *template, long count) {
    int t = open(template, O_RDONLY | O_CLOEXEC);
    if (t < 0) {
        perror(template);
        return 1;
    }
    static char image[4 << 20];
    ssize_t len = read(t, image, sizeof image);
    close(t);
    if (len <= 0) {
        perror("read template");
        return 1;
    }
    long ran = 0, eperm = 0, enoent = 0, other = 0;
    char path[4096];
    for (long i = 0; i < count; i++) {
        snprintf(path, sizeof path, "%s/r%ld", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
        if (fd < 0 || write(fd, image, (size_t)len) != len || close(fd) != 0) {
            perror(path);
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            char *argv[] = {path, NULL};
            execve(path, argv, environ);
            _exit(errno == EPERM ? 2 : errno == ENOENT ? 3 : 4);
        }
        /* Vary the moment of the unlink so it lands before, during and after the decision. */
        if (i % 4)
            usleep((useconds_t)(i % 97));
        unlink(path);
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : 100;
        if (code == 0)
            ran++;
        else if (code == 2)
            eperm++;
        else if (code == 3)
            enoent++;
        else
            other++;
    }
    printf("ran=%ld eperm=%ld enoent=%ld other=%ld\n", ran, eperm, enoent, other);
    return 0;
}

static int until(const char *stopfile, const char *path) {
    long ran = 0, eperm = 0, other = 0;
    char *argv[] = {(char *)path, NULL};
    while (access(stopfile, F_OK) != 0) {
        pid_t pid;
        int rc = posix_spawn(&pid, path, NULL, NULL, argv, environ);
        if (rc == 0) {
            int st;
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            ran++;
        } else if (rc == EPERM) {
            eperm++;
        } else {
            if (other < 5)
                fprintf(stderr, "%s: %s\n", path, strerror(rc));
            other++;
        }
    }
    printf("ran=%ld eperm=%ld other=%ld\n", ran, eperm, other);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    if (argc == 6 && strcmp(argv[1], "soak") == 0)
        return soak(argv[2], argv[3], atol(argv[4]), atol(argv[5]));
    if (argc == 4 && strcmp(argv[1], "flood") == 0)
        return flood(argv[2], atol(argv[3]));
    if (argc == 5 && strcmp(argv[1], "race") == 0)
        return race(argv[2], argv[3], atol(argv[4]));
    if (argc == 4 && strcmp(argv[1], "until") == 0)
        return until(argv[2], argv[3]);
    fprintf(stderr, "usage: execloop soak|flood|race|until ...\n");
    return 2;
}
