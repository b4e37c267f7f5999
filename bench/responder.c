/* The smallest useful fanotify permission responder: the floor for any userspace exec guard.
 * One FAN_CLASS_CONTENT group, one FAN_MARK_FILESYSTEM mark with FAN_OPEN_EXEC_PERM on the filesystem that
 * holds DIR, and FAN_DENY for every event (everything on that filesystem is in scope). Prints "ready" once
 * marked; exits on SIGTERM/SIGINT (the kernel then allows whatever is pending). Built by bench/run.sh.
 *
 * -n (naming): before each answer, a statx of the event's fd and a readlink of /proc/self/fd/N, the least a
 * guard must do to decide by path (which file, on which mount, under which name). The floor for a
 * path-decided filesystem, where the plain mode is the floor for one decided as a whole. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int naming = argc == 3 && strcmp(argv[1], "-n") == 0;
    if (argc != 2 + naming) { fprintf(stderr, "usage: responder [-n] DIR\n"); return 2; }
    const char *dir = argv[1 + naming];
    int g = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_UNLIMITED_QUEUE, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
    if (g < 0) { perror("fanotify_init"); return 1; }
    if (fanotify_mark(g, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, AT_FDCWD, dir) != 0) {
        perror("fanotify_mark");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    static char buf[65536];
    char link[64], name[4096];
    for (;;) {
        ssize_t n = read(g, buf, sizeof buf);
        if (n <= 0) return n == 0 ? 0 : 1;
        struct fanotify_event_metadata *m = (struct fanotify_event_metadata *)buf;
        for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
            if (m->fd < 0) continue;
            if (naming) {
                struct statx sx;
                if (statx(m->fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_MNT_ID, &sx) != 0) perror("statx");
                snprintf(link, sizeof link, "/proc/self/fd/%d", m->fd);
                if (readlink(link, name, sizeof name) < 0) perror("readlink");
            }
            struct fanotify_response r = {.fd = m->fd, .response = FAN_DENY};
            if (write(g, &r, sizeof r) != sizeof r) perror("respond");
            close(m->fd);
        }
    }
}
