#!/usr/bin/env bash
# noexecd demo: `make demo` runs this as
#   timeout 60 unshare --mount --propagation private -- bash scripts/demo.sh target/release/noexecd
# Inside that private mount namespace it mounts a fresh tmpfs over /tmp (the host's /tmp is hidden, never
# touched), guards it with noexecd, drops a binary there, tries to run it, shows the denial and the alert,
# and stops the daemon. Nothing outside the namespace is changed; the tmpfs vanishes with it.
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BIN=$(readlink -f "${1:-target/release/noexecd}")
[[ -x $BIN ]] || { echo "demo: noexecd binary not found: ${1:-target/release/noexecd} (run: make build)" >&2; exit 1; }

if [[ -t 1 ]]; then B=$'\e[1m' R=$'\e[31m' G=$'\e[32m' N=$'\e[0m'; else B='' R='' G='' N=''; fi
# On a terminal, a short pause between steps so a person can follow; none when piped (CI, logs).
step() { if [[ -t 1 ]]; then sleep 1; fi; printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
note() { printf '    %s\n' "$*"; }
show() { printf '    $ %s\n' "$*"; }
die() { printf '%sdemo: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }

# --- Safety: only ever inside a private mount namespace ------------------------------------------------------
[[ $(id -u) == 0 ]] || die "needs root (fanotify permission events need CAP_SYS_ADMIN)"
if [[ $(readlink /proc/self/ns/mnt) == "$(readlink /proc/1/ns/mnt)" ]]; then
    die "not in a private mount namespace: run it through 'make demo' (unshare --mount --propagation private)"
fi
host_root_dev=$(stat -c '%Hd:%Ld' /)

DAEMON_PID='' LISTENER_PID=''
cleanup() {
    [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null && kill -KILL "$DAEMON_PID" 2>/dev/null
    [[ -n $LISTENER_PID ]] && kill -0 "$LISTENER_PID" 2>/dev/null && kill "$LISTENER_PID" 2>/dev/null
    return 0
}
trap cleanup EXIT

# --- 1. A fresh /tmp -----------------------------------------------------------------------------------------
step "1. A private mount namespace with its own tmpfs on /tmp"
mount --make-rprivate / 2>/dev/null || true
# The binary may live below /tmp (a checkout in /tmp): keep it open, and run it through that fd, so the new
# tmpfs cannot hide it.
exec {BIN_FD}<"$BIN"
BIN=/proc/$$/fd/$BIN_FD
mount -t tmpfs -o size=32m,mode=1777 noexecd-demo /tmp
tmp_dev=$(stat -c '%Hd:%Ld' /tmp)
[[ $tmp_dev != "$host_root_dev" ]] || die "/tmp is still the root filesystem; refusing to continue"
note "/tmp is now a new tmpfs (device $tmp_dev) that only this demo sees; the host's /tmp is untouched."
WORK=/tmp/.noexecd-demo
mkdir -p "$WORK"

# --- 2. The policy -------------------------------------------------------------------------------------------
step "2. The policy: block every exec inside /tmp (the CIS 1.1.5 control, as KubeArmor names it)"
cat >"$WORK/noexecd.toml" <<EOF
[daemon]
mode = "enforce"
alert_log = "$WORK/alerts.jsonl"
cluster_name = "default"
host_name = "noexecd-demo"
policy_dir = "$WORK/policy.d"

[[policy]]
name = "ksp-block-exec-inside-tmp"
action = "Block"
severity = 1
tags = ["CIS", "CIS_Linux", "CIS-1.1.5"]
message = "Alert! Execution attempted inside tmp folder"

[[policy.process.match_directories]]
dir = "/tmp/"
recursive = true
EOF
sed 's/^/    | /' "$WORK/noexecd.toml"

step "3. noexecd check: what it would mark"
show "noexecd check --config $WORK/noexecd.toml"
check_out=$("$BIN" check --config "$WORK/noexecd.toml") || die "noexecd check rejected the demo policy"
printf '%s\n' "$check_out" | sed 's/^/    /'
# Safety: every filesystem it would mark must be the demo's tmpfs.
while IFS=$'\t' read -r kind _mnt dev _rest; do
    [[ $kind == mark ]] || continue
    [[ ${dev#dev=} == "$tmp_dev" ]] || die "the policy would mark $dev, not the demo tmpfs ($tmp_dev); refusing"
done <<<"$check_out"

# --- 4. Start the guard --------------------------------------------------------------------------------------
step "4. Start the guard and wait for READY=1 (the systemd notification it sends once every mark is in place)"
NOTIFY=$WORK/notify.sock
have_listener=''
if command -v python3 >/dev/null 2>&1; then
    python3 - "$NOTIFY" >"$WORK/notify.out" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(0.2)
end = time.time() + 10
while time.time() < end:
    try:
        msg = s.recv(4096).decode(errors="replace")
    except socket.timeout:
        continue
    if "READY=1" in msg.split("\n"):
        print(" ".join(msg.split("\n")))
        sys.exit(0)
sys.exit(1)
PY
    LISTENER_PID=$!
    for _ in $(seq 50); do [[ -S $NOTIFY ]] && break; sleep 0.05; done
    [[ -S $NOTIFY ]] && have_listener=1
fi
show "noexecd run --config $WORK/noexecd.toml &"
NOTIFY_SOCKET=$NOTIFY NO_COLOR=1 "$BIN" run --config "$WORK/noexecd.toml" 2>"$WORK/noexecd.log" &
DAEMON_PID=$!
marked() { grep -qs '^fanotify sdev:' /proc/"$DAEMON_PID"/fdinfo/* 2>/dev/null; }
if [[ -n $have_listener ]]; then
    wait "$LISTENER_PID" || { cat "$WORK/noexecd.log" >&2; die "no READY=1 from noexecd within 10 s"; }
    LISTENER_PID=''
    note "noexecd (pid $DAEMON_PID) says: $(cat "$WORK/notify.out")"
else
    # No python3 to read the notify socket: wait until the kernel shows the mark instead.
    note "(python3 not found to read the notify socket: waiting until the kernel shows the mark instead)"
    for _ in $(seq 100); do marked && break; kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    marked || { cat "$WORK/noexecd.log" >&2; die "noexecd did not mark /tmp within 10 s"; }
fi
kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/noexecd.log" >&2; die "noexecd exited"; }
note "The kernel's view of the mark (/proc/$DAEMON_PID/fdinfo): one FAN_MARK_FILESYSTEM mark on the tmpfs:"
grep -h '^fanotify sdev:' /proc/"$DAEMON_PID"/fdinfo/* 2>/dev/null | sed 's/^/      /' || true

# --- 5. Drop a binary and run it ------------------------------------------------------------------------------
step "5. Drop a binary into /tmp and try to run it"
show "cp /bin/true /tmp/payload && chmod +x /tmp/payload"
cp /bin/true /tmp/payload
chmod +x /tmp/payload
show "/tmp/payload"
set +e
out=$(bash -c 'cd /tmp && exec /tmp/payload' 2>&1)
rc=$?
set -e
printf '%s\n' "$out" | grep -v ': Success$' | sed 's/^/    /'
if [[ $rc -ne 0 && $out == *"Operation not permitted"* ]]; then
    printf '    %sdenied%s: exit status %s, "Operation not permitted" (EPERM)\n' "$R" "$N" "$rc"
else
    die "expected the exec to be denied, got exit status $rc"
fi
show "/usr/bin/true   # outside /tmp: untouched"
/usr/bin/true && printf '    %sruns%s: exit status 0\n' "$G" "$N"

# --- 6. The alert --------------------------------------------------------------------------------------------
step "6. The alert noexecd wrote ($WORK/alerts.jsonl, KubeArmor's schema, one JSON object per line)"
for _ in $(seq 50); do [[ -s $WORK/alerts.jsonl ]] && break; sleep 0.1; done
[[ -s $WORK/alerts.jsonl ]] || { cat "$WORK/noexecd.log" >&2; die "no alert within 5 s"; }
alert=$(head -n 1 "$WORK/alerts.jsonl")
if command -v jq >/dev/null 2>&1; then
    printf '%s\n' "$alert" | jq . | sed 's/^/    /'
elif command -v python3 >/dev/null 2>&1; then
    printf '%s\n' "$alert" | python3 -m json.tool | sed 's/^/    /'
else
    printf '    %s\n' "$alert"
fi
note "and on stderr (journald under systemd):"
grep -m1 'exec blocked' "$WORK/noexecd.log" | sed 's/^/      /' || true

# --- 7. Stop ---------------------------------------------------------------------------------------------------
step "7. Stop the guard (SIGTERM removes the marks)"
show "kill -TERM $DAEMON_PID"
kill -TERM "$DAEMON_PID"
set +e
wait "$DAEMON_PID"
drc=$?
set -e
DAEMON_PID=''
note "noexecd exited with status $drc"
[[ $drc -eq 0 ]] || die "noexecd did not exit cleanly"
show "/tmp/payload"
if /tmp/payload; then
    printf '    %sruns%s again: exit status 0 (no guard, no mark)\n' "$G" "$N"
else
    die "/tmp/payload still fails after the guard stopped"
fi

step "Done. The tmpfs and everything on it vanish with this mount namespace; the host was not touched."
