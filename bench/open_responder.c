/* The floor for an open-time guard: FAN_OPEN_PERM on one filesystem, FAN_ALLOW for every event, with the
 * same 64 KiB read batch as responder.c. noexecd's open guard answers the same events (and reads each
 * file's head to tell whether it could run); this one looks at nothing. Prints "ready" once marked; exits on
 * SIGTERM/SIGINT (the kernel then allows whatever is pending). Built by bench/run.sh.
 *
 *   open_responder DIR           a filesystem mark on the filesystem holding DIR
 *   open_responder -i DIR...     inode marks on each DIR (FAN_EVENT_ON_CHILD), as noexecd marks a
 *                                path-decided filesystem's protected directories
 *   open_responder -s -i DIR...  the same, looking before each FAN_ALLOW at what any guard telling a file that
 *                                could run from one that cannot must see: a statx of the event fd, a pread of
 *                                its first 64 bytes (event fds opened O_NOATIME, as noexecd's), and a readlink
 *                                of the opener's /proc/PID/exe (the sniffing floor) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int sniff = argc > 1 && strcmp(argv[1], "-s") == 0;
    argc -= sniff;
    argv += sniff;
    int inode = argc > 2 && strcmp(argv[1], "-i") == 0;
    if (argc < 2 || (inode && argc < 3)) { fprintf(stderr, "usage: open_responder [-s] [-i] DIR...\n"); return 2; }
    unsigned event_flags = O_RDONLY | O_LARGEFILE | O_CLOEXEC | (sniff ? O_NOATIME : 0);
    int g = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_UNLIMITED_QUEUE, event_flags);
    if (g < 0) { perror("fanotify_init"); return 1; }
    for (int i = inode ? 2 : 1; i < (inode ? argc : 2); i++) {
        unsigned flags = FAN_MARK_ADD | (inode ? 0 : FAN_MARK_FILESYSTEM);
        unsigned long long mask = FAN_OPEN_PERM | (inode ? FAN_EVENT_ON_CHILD : 0);
        if (fanotify_mark(g, flags, mask, AT_FDCWD, argv[i]) != 0) { perror("fanotify_mark"); return 1; }
    }
    int proc = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    printf("ready\n");
    fflush(stdout);
    static char buf[65536];
    static char head[64], exe[4097];
    for (;;) {
        ssize_t n = read(g, buf, sizeof buf);
        if (n <= 0) return n == 0 ? 0 : 1;
        struct fanotify_event_metadata *m = (struct fanotify_event_metadata *)buf;
        for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
            if (m->fd < 0) continue;
            if (sniff) {
                struct statx stx;
                char name[32];
                if (statx(m->fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) == 0 && S_ISREG(stx.stx_mode) &&
                    stx.stx_size > 0 && pread(m->fd, head, sizeof head, 0) > 0) {
                    snprintf(name, sizeof name, "%d/exe", m->pid);
                    if (readlinkat(proc, name, exe, sizeof exe) < 0) exe[0] = 0;
                }
            }
            struct fanotify_response r = {.fd = m->fd, .response = FAN_ALLOW};
            if (write(g, &r, sizeof r) != sizeof r) perror("respond");
            close(m->fd);
        }
    }
}
