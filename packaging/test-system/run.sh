#!/bin/bash
# make test-system: the installed .deb under a real systemd, in a booted Debian 12 container.
#
#   1. Build a Debian 12 rootfs once (debootstrap --variant=minbase + systemd), cached in
#      target/system-test/rootfs, from the apt mirror this host uses.
#   2. In a private mount namespace (unshare -m), copy it onto a fresh tmpfs: the container's whole root
#      filesystem, /var/tmp included, is that tmpfs, and nspawn gives it a tmpfs /tmp and /dev/shm.
#      So no fanotify mark the container's noexecd places can land on this machine's own filesystems.
#   3. Boot it twice with systemd-nspawn (--system-call-filter="fanotify_init fanotify_mark": without it,
#      fanotify_init fails with EPERM in the container) and run packaging/test-system/inside.sh in it
#      through nsenter: boot 1 installs the .deb and tests the service, boot 2 tests start at boot,
#      dpkg -r and dpkg -P, then the .rpm's scriptlets (rpm -i / -U / -e) under the same systemd.
#      Upgrades and downgrades go between the packages and those of target/packaging/next/ (build.sh next).
# Everything is bounded by timeouts; the namespace, its mounts and the container die with this script.
# Not root, or a tool missing: prints why and skips; with NOEXECD_REQUIRE_PRIVILEGED=1 a skip fails.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
REPO=$PWD
ST=$REPO/target/system-test
ROOTFS=$ST/rootfs
SUITE=bookworm
PKGS=systemd,systemd-sysv,dbus,procps,logrotate,libpam-systemd,rpm
STAMP="$SUITE minbase $PKGS rootfs-v1"

skip() {
    if [ "${NOEXECD_REQUIRE_PRIVILEGED:-}" = 1 ]; then
        echo "test-system: FAIL: cannot run ($*) and NOEXECD_REQUIRE_PRIVILEGED=1 forbids skipping" >&2
        exit 1
    fi
    echo "test-system: SKIP: $*"
    exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, unshare -m, systemd-nspawn)"
for t in debootstrap systemd-nspawn unshare nsenter mount umount timeout; do
    command -v "$t" >/dev/null || skip "$t is missing (make package-deps installs it)"
done
shopt -s nullglob
debs=("$REPO"/target/packaging/noexecd_*.deb)
[ "${#debs[@]}" = 1 ] || { echo "test-system: expected one target/packaging/noexecd_*.deb (make deb)" >&2; exit 1; }
DEB=${debs[0]}
rpms=("$REPO"/target/packaging/noexecd-*.rpm)
[ "${#rpms[@]}" = 1 ] || { echo "test-system: expected one target/packaging/noexecd-*.rpm (make rpm)" >&2; exit 1; }
RPMFILE=${rpms[0]}
# The next version of the same build (packaging/build.sh next), to upgrade to and downgrade from.
next_debs=("$REPO"/target/packaging/next/noexecd_*.deb)
next_rpms=("$REPO"/target/packaging/next/noexecd-*.rpm)
[ "${#next_debs[@]}" = 1 ] && [ "${#next_rpms[@]}" = 1 ] ||
    { echo "test-system: expected one .deb and one .rpm in target/packaging/next/ (packaging/build.sh next)" >&2; exit 1; }

host_mirror() {
    local m=
    [ -n "${NOEXECD_DEBIAN_MIRROR:-}" ] && { echo "$NOEXECD_DEBIAN_MIRROR"; return; }
    # deb822 stanzas: the URIs of a stanza whose Suites include bookworm.
    m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$SUITE" '
        /^[[:space:]]*$/ { u = "" } /^URIs:/ { u = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s && u != "") { print u; exit } }')
    [ -z "$m" ] && m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | sed 's/\[[^]]*\]//' |
        awk -v s="$SUITE" '$1 == "deb" && $3 == s && $2 ~ /debian/ { print $2; exit }')
    echo "${m:-http://deb.debian.org/debian}"
}

build_rootfs() {
    if [ -d "$ROOTFS" ] && [ "$(cat "$ST/rootfs.stamp" 2>/dev/null)" = "$STAMP" ]; then
        echo "test-system: using cached rootfs $ROOTFS"
        return 0
    fi
    local mirror tmp=$ST/rootfs.tmp
    mirror=$(host_mirror)
    echo "test-system: building the Debian $SUITE rootfs from $mirror (about a minute, cached afterwards)"
    rm -rf "$tmp" "$ROOTFS" "$ST/rootfs.stamp"
    mkdir -p "$ST"
    if ! timeout 900 debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$tmp" "$mirror" > "$ST/debootstrap.log" 2>&1; then
        tail -20 "$ST/debootstrap.log" >&2
        echo "test-system: debootstrap failed (log: $ST/debootstrap.log)" >&2
        rm -rf "$tmp"
        return 1
    fi
    echo noexecd-test > "$tmp/etc/hostname"
    : > "$tmp/etc/machine-id"
    # Nothing reads a console here: no getty. Smaller cache: no apt lists or .debs.
    ln -sf /dev/null "$tmp/etc/systemd/system/console-getty.service"
    ln -sf /dev/null "$tmp/etc/systemd/system/getty@.service"
    rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
    mv "$tmp" "$ROOTFS"
    echo "$STAMP" > "$ST/rootfs.stamp"
}

build_rootfs || exit 1

RUN=$ST/run
rm -rf "$RUN"
mkdir -p "$RUN/mnt"
cp "$DEB" "$RUN/noexecd.deb"
cp "$RPMFILE" "$RUN/noexecd.rpm"
cp "${next_debs[0]}" "$RUN/noexecd-next.deb"
cp "${next_rpms[0]}" "$RUN/noexecd-next.rpm"
# The versions the binaries report: the packages' upstream versions (the .deb's Version without its revision).
dpkg-deb -f "$DEB" Version | sed 's/-[^-]*$//' > "$RUN/version-n"
dpkg-deb -f "${next_debs[0]}" Version | sed 's/-[^-]*$//' > "$RUN/version-next"
echo "test-system: booting $ROOTFS (on a tmpfs copy) with $(basename "$DEB") and $(basename "$RPMFILE"), next $(cat "$RUN/version-next")"
# TERM first so boot.sh's trap powers the container off; KILL 30 s later in any case.
timeout --kill-after=30 900 unshare --mount --propagation private -- \
    bash "$REPO/packaging/test-system/boot.sh" "$ROOTFS" "$RUN" "$REPO/packaging/test-system/inside.sh" &
inner=$!
# timeout(1) runs in a process group of its own: pass a TERM/INT given to us on to it (boot.sh's trap then
# powers the container off), and wait for it.
trap 'kill -TERM "$inner" 2>/dev/null' TERM INT
wait "$inner"; rc=$?
while kill -0 "$inner" 2>/dev/null; do wait "$inner"; rc=$?; done
trap - TERM INT
# If boot.sh itself was killed (timeout), make sure no container it started outlives it.
if [ -f "$RUN/leader.pid" ]; then
    lp=$(cat "$RUN/leader.pid")
    if [ "$(awk '/^NSpid:/ { print (NF >= 3 && $NF == 1) ? "init" : "no" }' "/proc/$lp/status" 2>/dev/null)" = init ]; then
        echo "test-system: killing the leftover container (its PID 1 is host pid $lp)"
        kill -KILL "$lp" 2>/dev/null
    fi
fi
pass=$(grep -c '^ok ' "$RUN/results.txt" 2>/dev/null)
fail=$(grep -c '^FAIL ' "$RUN/results.txt" 2>/dev/null)
if [ "$rc" != 0 ] && [ "${fail:-0}" = 0 ]; then
    fail=1
    echo "FAIL - the booted-container run itself failed (rc=$rc); logs in $RUN"
fi
echo "test-system: ${pass:-0} passed, ${fail:-0} failed"
[ "${fail:-0}" = 0 ] && [ "$rc" = 0 ]
