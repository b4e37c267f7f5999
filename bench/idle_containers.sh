#!/bin/bash
# The daemon's idle CPU with N running containers: what its look at the runtimes every 500 ms costs.
#
#   sudo bench/idle_containers.sh [NOEXECD] [N=100] [SECONDS=60]
#
# In a private mount namespace over a tmpfs of its own: podman's storage (runc, cgroupfs, no network) and the
# only path the daemon protects lie there, so nothing of the host's / or /tmp is marked. A containerd with a
# state and socket of its own (no containers) is asked too when `containerd` is installed, as the daemon asks
# it at every look when its task directory exists. The daemon holds a container policy (app=idle), starts,
# then N `sleep 3600` containers are started; after 10 s of settling, the daemon's utime+stime
# (/proc/PID/stat) is read over SECONDS. Everything is stopped and removed at the end.
#
# Needs root, podman, runc, conmon and a static busybox.
set -euo pipefail

BIN=${1:-target/release/noexecd}
N=${2:-100}
SECONDS_MEASURED=${3:-60}
BIN=$(readlink -f "$BIN")
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 2; }
for t in podman runc conmon busybox unshare; do
    command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 2; }
done

if [ "${NOEXECD_IDLE_INNER:-}" != 1 ]; then
    W=$(mktemp -d /var/tmp/noexecd-idle.XXXXXX)
    set +e
    NOEXECD_IDLE_INNER=1 W=$W timeout 900 unshare -m --propagation private "$0" "$BIN" "$N" "$SECONDS_MEASURED"
    rc=$?
    # A runtime's helper that outlived the namespace's tmpfs may have written below the directory itself.
    rm -rf --one-file-system "$W"
    exit $rc
fi

# ---- inside the private mount namespace ----
mount -t tmpfs -o size=2g,mode=0755 noexecd-idle "$W"
mkdir -p "$W"/{guarded,storage,run/podman,ctr-tmp,policy.d,img/bin,img/tmp,none}
# The protected directory on a tmpfs of its own: the one filesystem the daemon marks besides the layers'.
mount -t tmpfs -o size=16m noexecd-idle-guarded "$W/guarded"
chmod 1777 "$W/guarded" "$W/img/tmp"

cleanup() {
    set +e
    podman_ rm -f -a -t 0 >/dev/null 2>&1
    [ -n "${DAEMON_PID:-}" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    [ -n "${SERVICE_PID:-}" ] && kill "$SERVICE_PID" 2>/dev/null && wait "$SERVICE_PID" 2>/dev/null
    [ -n "${CTD_PID:-}" ] && kill "$CTD_PID" 2>/dev/null && wait "$CTD_PID" 2>/dev/null
    podman_ system prune -a -f >/dev/null 2>&1
    # conmon's `--rm` cleanups go on after the containers are removed: wait for them (at most a minute).
    for _ in $(seq 600); do pgrep -f "$W/storage" >/dev/null || break; sleep 0.1; done
    # The tmpfs goes with the namespace's last process (conmon's cleanup may outlive this script): no umount,
    # which would let a late write land in the real directory below.
}
trap cleanup EXIT

cat > "$W/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=10000:10000", "nproc=4096:4096"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
tmp_dir = "$W/ctr-tmp"
image_copy_tmp_dir = "$W/ctr-tmp"
CONF
export CONTAINERS_CONF=$W/containers.conf
podman_() {
    timeout 120 podman --root "$W/storage" --runroot "$W/run/podman" --storage-driver overlay --runtime runc \
        --cgroup-manager cgroupfs "$@"
}

cp "$(command -v busybox)" "$W/img/bin/busybox"
ln -s busybox "$W/img/bin/sleep"
ln -s busybox "$W/img/bin/sh"
tar -C "$W/img" -cf "$W/img.tar" .
podman_ import -q "$W/img.tar" localhost/noexecd-idle:1 >/dev/null

# Not under timeout: its pid is podman's own, which the cleanup stops.
podman --root "$W/storage" --runroot "$W/run/podman" --storage-driver overlay --runtime runc --cgroup-manager cgroupfs \
    system service --time=0 "unix://$W/podman.sock" >"$W/podman-service.log" 2>&1 &
SERVICE_PID=$!

CTD_STATE=$W/none/containerd-state
CTD_SOCKET=$W/none/containerd.sock
if command -v containerd >/dev/null; then
    mkdir -p "$W/containerd"
    CTD_STATE=$W/containerd/state
    CTD_SOCKET=$W/containerd/containerd.sock
    cat > "$W/containerd/config.toml" <<CONF
version = 2
root = "$W/containerd/root"
state = "$CTD_STATE"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$CTD_SOCKET"

[ttrpc]
  address = "$W/containerd/containerd.sock.ttrpc"
CONF
    containerd --config "$W/containerd/config.toml" >"$W/containerd.log" 2>&1 &
    CTD_PID=$!
fi
for _ in $(seq 100); do
    [ -S "$W/podman.sock" ] && { [ -z "${CTD_PID:-}" ] || [ -S "$CTD_SOCKET" ]; } && break
    sleep 0.1
done
# A namespace directory in containerd's task directory: the daemon then asks containerd's API at every look.
[ -n "${CTD_PID:-}" ] && mkdir -p "$CTD_STATE/io.containerd.runtime.v2.task/default"

cat > "$W/policy.d/idle.toml" <<'POLICY'
[[policy]]
name = "idle-containers"
action = "Block"
[policy.selector]
match_labels = { app = "idle" }
[[policy.process.match_directories]]
dir = "/tmp/"
recursive = true
POLICY
cat > "$W/noexecd.toml" <<CONF
[daemon]
mode = "enforce"
alert_log = "$W/alerts.jsonl"
policy_dir = "$W/policy.d"
alert_socket = ""
fail_mode = "open"

[containers]
podman_socket = "$W/podman.sock"
storage = "$W/storage"
docker_root = "$W/none/docker"
containerd_state = "$CTD_STATE"
containerd_socket = "$CTD_SOCKET"
containerd_root = "$W/none/containerd"

[[policy]]
name = "guarded"
action = "Block"
[[policy.process.match_directories]]
dir = "$W/guarded/"
recursive = true
CONF
"$BIN" check --config "$W/noexecd.toml" >"$W/check.txt" 2>&1 || { cat "$W/check.txt"; exit 1; }
"$BIN" run --config "$W/noexecd.toml" >"$W/noexecd.log" 2>&1 &
DAEMON_PID=$!
sleep 2
kill -0 "$DAEMON_PID" || { cat "$W/noexecd.log"; exit 1; }

for i in $(seq "$N"); do
    podman_ run -d --rm --network none --label app=idle --name "idle-$i" localhost/noexecd-idle:1 sleep 3600 >/dev/null
done
running=$(podman_ ps -q | wc -l)
sleep 10

ticks() { awk '{ print $14 + $15 }' "/proc/$DAEMON_PID/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks)
sleep "$SECONDS_MEASURED"
t1=$(ticks)
threads=$(ls "/proc/$DAEMON_PID/task" | wc -l)
awk -v d=$((t1 - t0)) -v hz="$hz" -v s="$SECONDS_MEASURED" -v n="$running" -v th="$threads" -v bin="$BIN" 'BEGIN {
    printf "%s: %d containers running, %d threads; %.2f s of CPU in %d s = %.2f%% of a core\n", bin, n, th, d / hz, s, 100 * d / hz / s
}'
