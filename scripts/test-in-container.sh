#!/usr/bin/env bash
# `make test-in-container`: the integration tests (tests/it, the `it` binary built on this host) run inside a
# podman container given CAP_SYS_ADMIN and CAP_SYS_PTRACE (what the shipped unit and DaemonSet give the
# daemon), as CI jobs that are "a container with SYS_ADMIN" run them. Not
# --privileged: no host devices (so no loop devices), podman's default seccomp profile and capabilities
# otherwise, read-only /sys and cgroup hierarchies.
#
#   scripts/test-in-container.sh TEST_BINARY NOEXECD_BINARY [ARGS FOR THE TEST BINARY...]
#
# The container's root is a read-only directory of mount points; the host's /usr and /etc and the
# repository (with its target directory) are bound read-only at the same paths; /tmp, /var/tmp and /run are
# the container's own tmpfs (podman's, with --read-only). So no test can write to a host filesystem, and the host's / and /tmp
# are each seen in the container only as the devices the harness refuses to mark (tests/it/common checks
# every policy against the devices of /, /tmp and /usr/bin before a daemon starts).
#
# NOEXECD_IT_IN_CONTAINER=1 inside tells the harness where it runs: the tests that need what this container
# cannot have skip there (docs/testing.md, "Tests in a container"), and only those, even under
# NOEXECD_REQUIRE_PRIVILEGED=1, which is passed through.
#
# podman keeps this container's records in a directory of its own (--root/--runroot below the scratch
# directory), never the machine's podman storage. Bounded: the tests by `timeout` inside, the container by
# `timeout` outside, and `podman rm -f` on every exit.
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

die() { echo "test-in-container: $*" >&2; exit 1; }
(($# >= 2)) || die "usage: $0 TEST_BINARY NOEXECD_BINARY [ARGS...]"
test_bin=$(realpath "$1") noexecd_bin=$(realpath "$2")
shift 2
[[ -x $test_bin && -x $noexecd_bin ]] || die "$test_bin or $noexecd_bin is not an executable"
[[ $(id -u) == 0 ]] || die "needs root (podman with CAP_SYS_ADMIN in the container)"
for tool in podman runc tini timeout; do
    command -v "$tool" >/dev/null || die "$tool not found (run \`make test-deps\`)"
done

repo=$(cd "$(dirname "$0")/.." && pwd)
# The tests' time limit inside, and the container's outside (it also covers podman's own start and stop).
inner_secs=${NOEXECD_IT_CONTAINER_SECS:-1800}
outer_secs=$((inner_secs + 120))

scratch=$(mktemp -d /tmp/noexecd-in-container.XXXXXX)
name="noexecd-it-$$"
podman=(podman --root "$scratch/storage" --runroot "$scratch/run" --cgroup-manager cgroupfs
    --events-backend none --runtime runc)
cleanup() {
    timeout 60 "${podman[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
    # podman's storage may hold mounts of its own below the scratch directory.
    umount -R "$scratch/storage" "$scratch/run" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT
# A signal ends the script through `exit`, so the EXIT trap removes the container.
trap 'exit 130' INT
trap 'exit 143' TERM

# The root: mount points only, and the host's top-level links (Debian's merged /usr: /bin -> usr/bin).
root="$scratch/rootfs"
mkdir -p "$root"/{usr,etc,proc,sys,dev,tmp,run,var/tmp,var/lib,root}
# podman's tmpfs at /tmp and /var/tmp (--read-only) take the mode of the directory they cover.
chmod 1777 "$root/tmp" "$root/var/tmp"
binds=(--volume /usr:/usr:ro --volume /etc:/etc:ro)
for top in bin sbin lib lib32 lib64 libx32; do
    if [[ -L /$top ]]; then
        ln -s "$(readlink "/$top")" "$root/$top"
    elif [[ -d /$top ]]; then
        mkdir -p "$root/$top"
        binds+=(--volume "/$top:/$top:ro")
    fi
done
# The repository (the test binary's CARGO_MANIFEST_DIR: its helpers' sources, the manifests) and the
# binaries, at the paths they have here.
for dir in "$repo" "$(dirname "$test_bin")" "$(dirname "$noexecd_bin")"; do
    [[ $dir == "$repo" || $dir != "$repo"/* ]] || continue
    mkdir -p "$root$dir"
    binds+=(--volume "$dir:$dir:ro")
done

# podman's default limits are above this host's hard limits, which runc cannot raise without
# CAP_SYS_RESOURCE: the caller's limits instead (processes: at most pid_max, beyond which runc refused them).
nproc=$(ulimit -Hu)
pid_max=$(cat /proc/sys/kernel/pid_max)
[[ $nproc == unlimited ]] || ((nproc > pid_max)) && nproc=$pid_max

# What each option is for: docs/testing.md, "Tests in a container".
opts=(
    --cap-add SYS_ADMIN --cap-add SYS_PTRACE
    --read-only
    --cgroupns private --network none
    --ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit "nproc=$nproc:$nproc"
)
if [[ $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null) == Y ]]; then
    opts+=(--security-opt apparmor=unconfined)
fi

echo "test-in-container: ${podman[*]} run ${opts[*]} ... $test_bin $*" >&2
timeout --kill-after=30 "$outer_secs" "${podman[@]}" run --rm --name "$name" "${opts[@]}" "${binds[@]}" \
    --workdir "$repo" \
    --env NOEXECD_IT_IN_CONTAINER=1 --env NOEXECD_BIN="$noexecd_bin" \
    --env NOEXECD_REQUIRE_PRIVILEGED="${NOEXECD_REQUIRE_PRIVILEGED:-}" \
    --env RUST_BACKTRACE="${RUST_BACKTRACE:-1}" --env HOME=/root --env PATH="$PATH" \
    --env NOEXECD_IT_SKIP_LOG=/tmp/noexecd-it-skips \
    --rootfs "$root" tini -- sh -c '
        timeout --kill-after=30 "$0" "$@"; rc=$?
        echo "test-in-container: $(cat /tmp/noexecd-it-skips 2>/dev/null | wc -l) tests skipped in the container:"
        cat /tmp/noexecd-it-skips 2>/dev/null
        exit $rc' "$inner_secs" "$test_bin" "$@"
