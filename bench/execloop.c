/* Exec timing loops for `make bench`. Built by bench/run.sh with cc.
 *
 *   execloop [-r ROOT] spawn PATH N       fork+execve+wait N times; prints mean ns per iteration
 *   execloop [-r ROOT] deny PATH N        execve(PATH) N times in this process, each must fail; prints mean ns
 *   execloop [-r ROOT] storm PATH SECS    deny loop for SECS seconds; prints "count max_ns"
 *   execloop [-r ROOT] files DIR N        create, open, read N small files in DIR; prints mean ns per file
 *
 * -r ROOT: chroot(ROOT) first, so a dynamic binary loads its ld.so and libc from ROOT too. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static char *const empty_env[] = {NULL};

int main(int argc, char **argv) {
    int a = 1;
    if (argc > 2 && strcmp(argv[1], "-r") == 0) {
        if (chroot(argv[2]) != 0 || chdir("/") != 0) { perror("chroot"); return 2; }
        a = 3;
    }
    if (argc - a != 3) { fprintf(stderr, "usage: execloop [-r ROOT] spawn|deny|storm|files PATH N\n"); return 2; }
    const char *mode = argv[a], *path = argv[a + 1];
    long n = atol(argv[a + 2]);
    char *args[] = {(char *)path, NULL};
    if (strcmp(mode, "spawn") == 0) {
        long long t0 = now_ns();
        for (long i = 0; i < n; i++) {
            pid_t p = vfork();
            if (p == 0) { execve(path, args, empty_env); _exit(127); }
            int st;
            if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "execloop: %s did not run (status %d)\n", path, st);
                return 1;
            }
        }
        printf("%lld\n", (now_ns() - t0) / n);
    } else if (strcmp(mode, "deny") == 0) {
        long long t0 = now_ns();
        for (long i = 0; i < n; i++) {
            if (execve(path, args, empty_env) == 0 || (errno != EPERM && errno != EACCES)) {
                fprintf(stderr, "execloop: execve %s: %s (expected a denial)\n", path, strerror(errno));
                return 1;
            }
        }
        printf("%lld\n", (now_ns() - t0) / n);
    } else if (strcmp(mode, "storm") == 0) {
        long long end = now_ns() + n * 1000000000LL, count = 0, worst = 0;
        for (;;) {
            long long t = now_ns();
            if (t >= end) break;
            for (int i = 0; i < 64; i++) {
                long long s = now_ns();
                if (execve(path, args, empty_env) == 0 || (errno != EPERM && errno != EACCES)) {
                    fprintf(stderr, "execloop: execve %s: %s (expected a denial)\n", path, strerror(errno));
                    return 1;
                }
                long long d = now_ns() - s;
                if (d > worst) worst = d;
            }
            count += 64;
        }
        printf("%lld %lld\n", count, worst);
    } else if (strcmp(mode, "files") == 0) {
        char name[4096], buf[512];
        memset(buf, 'x', sizeof buf);
        long long t0 = now_ns();
        for (long i = 0; i < n; i++) {
            snprintf(name, sizeof name, "%s/f%ld", path, i % 1000);
            int fd = open(name, O_CREAT | O_WRONLY | O_TRUNC, 0644);
            if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) { perror(name); return 1; }
            close(fd);
            fd = open(name, O_RDONLY);
            if (fd < 0 || read(fd, buf, sizeof buf) != (ssize_t)sizeof buf) { perror(name); return 1; }
            close(fd);
        }
        printf("%lld\n", (now_ns() - t0) / n);
    } else {
        fprintf(stderr, "execloop: unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
