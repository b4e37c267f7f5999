/* A directory storm and the open guard's mark latency under it.
 *
 *   dirstorm DIR COUNT [PROBES [RATE]]
 *
 * A child creates COUNT directories DIR/s<N> as fast as it can, or at RATE mkdir/s (the storm). Meanwhile the parent probes,
 * every 5 ms while the storm runs (at most PROBES times, default 200): mkdir DIR/p<N>, write a loadable ELF
 * (the first 4 KiB of this program) to DIR/p<N>/x, and open it read-only again and again, 100 us apart,
 * until open(2) fails with EPERM: this program is no ELF reader, so once the new directory carries the open
 * guard's mark, opening a loadable ELF in it is refused (the LD_PRELOAD/dlopen route). The time from mkdir
 * to the first EPERM is the probe's latency; a probe still allowed after 2 s counts as never guarded.
 *
 * Prints one line: storm_dirs N storm_secs S storm_rate R probes P guarded G p50_ms A p99_ms B max_ms C
 * (latencies of the guarded probes, plus 2000 ms for each one never guarded). Build: cc -O2 -o dirstorm
 * dirstorm.c. Nothing is removed afterwards. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: dirstorm DIR COUNT [PROBES [RATE]]\n");
        return 2;
    }
    const char *dir = argv[1];
    long count = atol(argv[2]);
    int probes = argc > 3 ? atoi(argv[3]) : 200;
    double rate = argc > 4 ? atof(argv[4]) : 0;
    char elf[4096];
    int self = open("/proc/self/exe", O_RDONLY);
    ssize_t elf_len = self < 0 ? -1 : read(self, elf, sizeof elf);
    if (elf_len < 64) {
        perror("read /proc/self/exe");
        return 1;
    }
    close(self);

    int pipefd[2];
    if (pipe(pipefd) != 0) return 1;
    double t0 = now();
    pid_t storm = fork();
    if (storm == 0) {
        char p[4096];
        long made = 0;
        for (long i = 0; i < count; i++) {
            snprintf(p, sizeof p, "%s/s%ld", dir, i);
            if (mkdir(p, 0755) == 0) made++;
            if (rate > 0 && i % 100 == 99) {
                double ahead = (i + 1) / rate - (now() - t0);
                if (ahead > 0) usleep((useconds_t)(ahead * 1e6));
            }
        }
        double secs = now() - t0;
        dprintf(pipefd[1], "%ld %.6f\n", made, secs);
        _exit(0);
    }
    close(pipefd[1]);

    double *lat = calloc(probes, sizeof *lat);
    int guarded = 0, done = 0, reaped = 0, st;
    for (int i = 0; i < probes; i++) {
        /* Only directories made during the storm count. */
        if (waitpid(storm, &st, WNOHANG) == storm) {
            reaped = 1;
            break;
        }
        done++;
        char d[4096], x[4200];
        snprintf(d, sizeof d, "%s/p%d", dir, i);
        snprintf(x, sizeof x, "%s/x", d);
        double start = now();
        if (mkdir(d, 0755) != 0) {
            perror("mkdir probe");
            return 1;
        }
        int fd = open(x, O_WRONLY | O_CREAT | O_TRUNC, 0755);
        if (fd < 0 || write(fd, elf, elf_len) != elf_len) {
            perror("write probe");
            return 1;
        }
        close(fd);
        double took = 2.0;
        while (now() - start < 2.0) {
            int r = open(x, O_RDONLY);
            if (r < 0 && errno == EPERM) {
                took = now() - start;
                guarded++;
                break;
            }
            if (r >= 0) close(r);
            usleep(100);
        }
        lat[i] = took * 1000.0;
        usleep(5000);
    }
    if (!reaped) waitpid(storm, &st, 0);
    if (done == 0) {
        fprintf(stderr, "the storm ended before the first probe\n");
        return 1;
    }
    probes = done;
    long made = 0;
    double secs = 0;
    char buf[128] = {0};
    if (read(pipefd[0], buf, sizeof buf - 1) > 0) sscanf(buf, "%ld %lf", &made, &secs);
    qsort(lat, probes, sizeof *lat, cmp);
    int p99 = (int)(probes * 0.99);
    if (p99 >= probes) p99 = probes - 1;
    printf("storm_dirs %ld storm_secs %.3f storm_rate %.0f probes %d guarded %d p50_ms %.2f p99_ms %.2f max_ms %.2f\n",
           made, secs, secs > 0 ? made / secs : 0, probes, guarded, lat[probes / 2], lat[p99], lat[probes - 1]);
    return 0;
}
