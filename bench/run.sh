#!/bin/bash
# `make bench`: noexecd against no guard, `noexec`, a minimal C fanotify responder and fapolicyd 1.1.7.
# Installs what it needs (Debian/Ubuntu), builds the small C programs with cc, runs every scenario in a
# private mount namespace (bench/inner.sh), then prints the ratio table and writes docs/benchmarks.md and its
# plot, bench/plot.png (bench/report.py, gnuplot). Not part of `make test`: timing goals belong here.
#
# Usage: bench/run.sh [NOEXECD_BIN]. Knobs (environment): BENCH_ROUNDS (11), BENCH_SPAWN (1000 execs per
# allowed run), BENCH_DENY (5000 per denied run), BENCH_STORM_SECS (3), BENCH_TIMEOUT (2400 s in all),
# BENCH_FILES (20000 files per open-heavy run), BENCH_CTR_ROUNDS (5), BENCH_CTR_STARTS (5 `podman run` per side
# and round), BENCH_CTR_IDLE (50 idle containers), BENCH_DIRS (100000 directories in the directory storm),
# BENCH_DIR_RATE (its mkdir/s, 20000), BENCH_RACE (10000 attempts per layout of the directory race),
# BENCH_PHASES (all: "exec nocache open filerules containers fapolicyd dirs race"; with fewer, the report goes to
# target/bench/benchmarks.md and target/bench/plot.png, not docs/).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${1:-target/release/noexecd}")
OUT=$PWD/target/bench
[ "$(id -u)" = 0 ] || { echo "make bench: needs root (fanotify, mounts); try: sudo make bench" >&2; exit 1; }
[ -x "$BIN" ] || { echo "make bench: $BIN not found; run make build first" >&2; exit 1; }

# --- what it needs -------------------------------------------------------------------------------------------
need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/libc.a ] || need+=(libc6-dev)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v python3 >/dev/null || need+=(python3)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
# The container phase (bench/containers.sh): podman with runc, and a static busybox for the image.
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v conmon >/dev/null || need+=(conmon)
file -L "$(command -v busybox 2>/dev/null || echo /nonexistent)" 2>/dev/null | grep -q 'statically linked' || need+=(busybox-static)
command -v file >/dev/null || need+=(file)
if ! command -v fapolicyd >/dev/null; then
    need+=(fapolicyd)
    # On a systemd host the package would enable and start fapolicyd host-wide with Debian's default rules
    # (deny executing anything untrusted). Mask the unit first: the bench only uses the binary, in a chroot.
    mkdir -p /etc/systemd/system
    [ -e /etc/systemd/system/fapolicyd.service ] || ln -s /dev/null /etc/systemd/system/fapolicyd.service
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "make bench: installing ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y --no-install-recommends "${need[@]}" >&2
fi

# --- the C programs ------------------------------------------------------------------------------------------
mkdir -p "$OUT/tools" "$OUT/pids"
cc -O2 -Wall -Wextra -o "$OUT/tools/execloop" bench/execloop.c
cc -O2 -Wall -Wextra -o "$OUT/tools/responder" bench/responder.c
cc -O2 -Wall -Wextra -o "$OUT/tools/open_responder" bench/open_responder.c
cc -O2 -static -o "$OUT/tools/execloop-static" bench/execloop.c
cc -O2 -static -o "$OUT/tools/hello-static" bench/hello.c
cc -O2 -o "$OUT/tools/hello-dynamic" bench/hello.c
cc -O2 -Wall -o "$OUT/tools/dirstorm" bench/dirstorm.c
cc -O2 -Wall -o "$OUT/tools/dirrace" bench/dirrace.c

# --- run -----------------------------------------------------------------------------------------------------
ALL_PHASES="exec nocache open filerules containers fapolicyd dirs race"
RES=$OUT/results.tsv
: > "$RES"
export BENCH_PIDS=$OUT/pids
reap() {
    # Whatever happened inside, nothing the bench started may outlive it (only pids it recorded, by pid).
    local f pid
    for f in "$BENCH_PIDS"/*; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            echo "make bench: stopping leftover $(basename "$f") (pid $pid)" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$f"
    done
}
trap reap EXIT
status=0
# The bench (daemons and loops alike) runs at real-time priority (chrt -f 10) so that other work on the
# machine does not distort it; BENCH_RT=0 runs it at nice -19 instead. Every process is bounded by timeout.
PRIO="chrt -f 10"
[ "${BENCH_RT:-1}" = 0 ] && PRIO="nice -n -19"
timeout -k 10 "${BENCH_TIMEOUT:-2400}" $PRIO unshare --mount --propagation private -- \
    bash bench/inner.sh "$BIN" "$OUT/tools" "$RES" || status=$?
reap
[ "$status" = 0 ] || { echo "make bench: a scenario failed (exit $status); partial results in $RES" >&2; exit "$status"; }

# A run of some phases only prints its figures (the rest as n/a) and writes its report below target/bench:
# docs/benchmarks.md and the plot always hold one whole run.
words() { printf '%s\n' $1 | sort -u | tr '\n' ' '; }
if [ "$(words "${BENCH_PHASES:-$ALL_PHASES}")" = "$(words "$ALL_PHASES")" ]; then
    python3 bench/report.py "$RES" "$BIN" docs/benchmarks.md bench/plot
else
    python3 bench/report.py "$RES" "$BIN" "$OUT/benchmarks.md" "$OUT/plot"
fi
