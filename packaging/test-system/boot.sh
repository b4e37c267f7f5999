#!/bin/bash
# Runs inside `unshare --mount --propagation private` (see run.sh): every mount made here disappears with
# this namespace. Usage: boot.sh ROOTFS RUNDIR INSIDE_SCRIPT
# Results: RUNDIR/results.txt ("ok - ..." / "FAIL - ..." lines), console logs RUNDIR/console-N.log.
set -uo pipefail
ROOTFS=$1 RUN=$2 INSIDE=$3
MNT=$RUN/mnt
RESULTS=$RUN/results.txt
: > "$RESULTS"
NSPAWN=
LEADER=

log() { echo "test-system: $*"; }
result() { echo "$*" | tee -a "$RESULTS"; }

stop_container() {
    [ -n "$NSPAWN" ] || return 0
    if kill -0 "$NSPAWN" 2>/dev/null; then
        [ -n "$LEADER" ] || find_leader
        kill -TERM "$NSPAWN" 2>/dev/null   # nspawn asks the container's systemd to power off
        for _ in $(seq 1 100); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$NSPAWN" 2>/dev/null; then
            log "container did not power off within 20 s: SIGKILL to its PID 1 ($LEADER) and to systemd-nspawn $NSPAWN"
            kill_leader
            kill -KILL "$NSPAWN" 2>/dev/null
        fi
    fi
    wait "$NSPAWN" 2>/dev/null
    kill_leader   # the container's PID 1 must not outlive nspawn (it would keep its tmpfs and marks alive)
    NSPAWN=
    LEADER=
    rm -f "$RUN/leader.pid"
}
kill_leader() { # SIGKILL to the container's PID 1 ends every process of its PID namespace
    [ -n "$LEADER" ] || return 0
    if [ "$(awk '/^NSpid:/ { print (NF >= 3 && $NF == 1) ? "init" : "no" }' "/proc/$LEADER/status" 2>/dev/null)" = init ]; then
        kill -KILL "$LEADER" 2>/dev/null
        for _ in $(seq 1 50); do [ -e "/proc/$LEADER" ] || break; sleep 0.1; done
    fi
}
cleanup() {
    stop_container
    umount -l "$MNT" 2>/dev/null
    umount -l /run/systemd/nspawn 2>/dev/null
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# nspawn keeps locks and propagation dirs under /run/systemd/nspawn; PID 1 here is not systemd.
mkdir -p /run/systemd/nspawn
mount -t tmpfs -o mode=0755 tmpfs /run/systemd/nspawn || exit 1
# SAFETY: the container's root (and so its /var/tmp) is a tmpfs of its own, never this host's /.
mount -t tmpfs -o mode=0755,size=4G noexecd-systest "$MNT" || exit 1
[ "$(stat -f -c %T "$MNT")" = tmpfs ] || { log "$MNT is not a tmpfs: refusing to boot"; exit 1; }
cp -a "$ROOTFS/." "$MNT/" || exit 1
install -m 0644 "$RUN/noexecd.deb" "$MNT/root/noexecd.deb"
install -m 0644 "$RUN/noexecd.rpm" "$MNT/root/noexecd.rpm"
for f in noexecd-next.deb noexecd-next.rpm version-n version-next; do install -m 0644 "$RUN/$f" "$MNT/root/$f"; done
install -m 0755 "$INSIDE" "$MNT/root/inside.sh"

LEADER=
find_leader() { # the container's PID 1 (NSpid ... 1) among the descendants of systemd-nspawn
    local p ns anc
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        ns=$(awk '/^NSpid:/ { print (NF >= 3 && $NF == 1) ? "init" : "no" }' "/proc/$p/status" 2>/dev/null)
        [ "$ns" = init ] || continue
        anc=$p
        while [ -n "$anc" ] && [ "$anc" -gt 1 ]; do
            anc=$(awk '/^PPid:/ { print $2 }' "/proc/$anc/status" 2>/dev/null)
            [ "$anc" = "$NSPAWN" ] && { LEADER=$p; echo "$p" > "$RUN/leader.pid"; return 0; }
        done
    done
    return 1
}

# cin SECONDS CMD...: run CMD inside the container's namespaces (root, mount, pid, ...), hard-bounded.
cin() {
    local t=$1; shift
    timeout -s KILL "$t" nsenter --target "$LEADER" --mount --uts --ipc --net --pid --cgroup --root --wd -- \
        /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= "$@"
}

boot() { # boot N: start the container and wait until its systemd has finished booting
    local n=$1 state
    systemd-nspawn --quiet -D "$MNT" --machine=noexecd-test --boot --register=no --keep-unit \
        --system-call-filter="fanotify_init fanotify_mark" --private-network --resolv-conf=off \
        --timezone=off --link-journal=no --console=read-only > "$RUN/console-$n.log" 2>&1 &
    NSPAWN=$!
    LEADER=
    for _ in $(seq 1 150); do find_leader && break; kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.2; done
    if [ -z "$LEADER" ]; then
        result "FAIL - boot $n: the container did not start (console: $RUN/console-$n.log)"
        tail -20 "$RUN/console-$n.log"
        return 1
    fi
    # PID 1 shows up before it has exec'd systemd: wait for systemd's own runtime directory first.
    for _ in $(seq 1 150); do
        [ "$(cat "/proc/$LEADER/comm" 2>/dev/null)" = systemd ] && cin 5 test -S /run/systemd/private && break
        sleep 0.2
    done
    state=$(cin 90 systemctl is-system-running --wait 2>/dev/null)
    log "boot $n: container PID 1 is host pid $LEADER, system state '$state'"
    if [ "$state" != running ] && [ "$state" != degraded ]; then
        result "FAIL - boot $n: systemd did not finish booting (state '$state')"
        return 1
    fi
    [ "$state" = degraded ] && cin 20 systemctl --failed --no-legend | sed 's/^/test-system:   failed unit: /'
    return 0
}

phase() { # phase N: run inside.sh phaseN in the booted container; its ok/FAIL lines go to results.txt
    local n=$1 rc
    cin 300 bash /root/inside.sh "phase$n" > "$RUN/inside-$n.log" 2>&1
    rc=$?
    cat "$RUN/inside-$n.log"
    grep -E '^(ok|FAIL) ' "$RUN/inside-$n.log" >> "$RESULTS"
    if [ "$rc" = 137 ]; then result "FAIL - phase $n: killed after 300 s (a hung exec? see $RUN/inside-$n.log)"; fi
    return 0
}

rc=0
for n in 1 2; do
    if boot "$n"; then phase "$n"; else rc=1; fi
    cin 20 journalctl -b --no-pager -o short-monotonic > "$RUN/journal-$n.log" 2>&1
    stop_container
    [ "$rc" = 0 ] || break
done
exit "$rc"
