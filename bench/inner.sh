#!/bin/bash
# Runs inside `unshare --mount --propagation private` (see bench/run.sh): every mount made here vanishes with
# the namespace. Nothing here marks the host's own filesystems: noexecd and the C responders mark only the
# tmpfs and ext4 images mounted below $W (checked with `noexecd check` and stat before each start), fapolicyd
# runs chrooted in the image and sees only its mounts (bench/fapolicyd.sh).
#
# Usage: inner.sh NOEXECD_BIN TOOLS_DIR RESULTS_TSV
# Writes one line per measurement: scenario<TAB>series<TAB>round<TAB>value<TAB>unit
set -euo pipefail

BIN=$1 TOOLS=$2 RES=$3
ROUNDS=${BENCH_ROUNDS:-11}
N_SPAWN=${BENCH_SPAWN:-1000}
N_DENY=${BENCH_DENY:-5000}
STORM_SECS=${BENCH_STORM_SECS:-3}
N_FILES=${BENCH_FILES:-20000}
CTR_ROUNDS=${BENCH_CTR_ROUNDS:-5}
CTR_STARTS=${BENCH_CTR_STARTS:-5}
CTR_IDLE=${BENCH_CTR_IDLE:-50}
# Which phases run (all by default): exec (noexecd with the cache, the C responder, noexec), nocache, open, filerules,
# containers, fapolicyd, dirs, race. The C responders run whatever is chosen.
PHASES=" ${BENCH_PHASES:-exec nocache open filerules containers fapolicyd dirs race} "
phase() { case "$PHASES" in *" $1 "*) return 0 ;; esac; return 1; }
export BENCH_PIDS=${BENCH_PIDS:?}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/fapolicyd.sh"
. "$HERE/containers.sh"
EL=$TOOLS/execloop

W=$(mktemp -d /tmp/noexecd-bench.XXXXXX)
# From here on everything lives in RAM: the directory on the host's /tmp is only a mount point.
mount -t tmpfs -o size=1200m,mode=0755 noexecd-bench "$W"
DAEMON_PID= RESP_PIDS= OPEN_RESP_PID=
cleanup() {
    set +e
    ctr_cleanup
    fapolicyd_stop "$W/img"
    for p in $DAEMON_PID $RESP_PIDS $OPEN_RESP_PID; do kill -TERM "$p" 2>/dev/null; done
    for p in $DAEMON_PID $RESP_PIDS $OPEN_RESP_PID; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null; done
    rm -f "$BENCH_PIDS"/noexecd "$BENCH_PIDS"/responder-* "$BENCH_PIDS"/open-responder
    umount -R "$W" 2>/dev/null || log "cleanup: $W is still busy (a process the bench started is left?)"
    rmdir "$W" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$RES"; }

# --- filesystems ---------------------------------------------------------------------------------------------
# img: the ext4 image standing for `/` (marked by noexecd), base: an identical twin nobody marks (the no-guard
# side), rimg and nimg: twins marked only by the C responders, plain and naming (the floors of a path-decided
# filesystem; one image each, so that each has one responder all along).
make_root() {
    local dir=$1
    truncate -s 384M "$W/$dir.ext4"
    mkfs.ext4 -q -F "$W/$dir.ext4"
    mkdir -p "$W/$dir"
    mount -o loop "$W/$dir.ext4" "$W/$dir"
    local r=$W/$dir
    mkdir -p "$r/tmp" "$r/var/tmp" "$r/usr/bin" "$r/tmp/work"
    chmod 1777 "$r/tmp" "$r/var/tmp"
    chmod 0777 "$r/tmp/work"
    install -m 0755 "$TOOLS/hello-static" "$r/usr/bin/hello-static"
    install -m 0755 "$TOOLS/hello-dynamic" "$r/usr/bin/hello-dynamic"
    copy_with_libs "$r" "$TOOLS/hello-dynamic" >/dev/null
    rm -f "$r$TOOLS/hello-dynamic"
    install -m 0755 "$TOOLS/hello-static" "$r/tmp/x"
}
for root in img base rimg nimg; do make_root "$root"; done
# tmpfs filesystems holding nothing but protected files: noexecd (decided without a path), the C responders
# (plain and naming), a noexec mount.
for d in prot resp nresp nx; do
    mkdir -p "$W/$d"
    opts=size=16m,mode=0755
    [ "$d" = nx ] && opts=$opts,noexec
    mount -t tmpfs -o "$opts" "noexecd-bench-$d" "$W/$d"
    install -m 0755 "$TOOLS/hello-static" "$W/$d/x"
done
mkdir -p "$W/run"

# Safety: the devices we may mark are these, never the host's `/` or `/tmp`.
host_devs="$(stat -c %d / /tmp | sort -u | tr '\n' ' ')"
for m in img prot resp nresp rimg nimg; do
    d=$(stat -c %d "$W/$m")
    case " $host_devs " in *" $d "*) log "SAFETY: $W/$m is on a host filesystem"; exit 1 ;; esac
done

# --- noexecd -------------------------------------------------------------------------------------------------
write_config() { # write_config FILE EXTRA_DAEMON_LINES
    cat > "$1" <<CFG
[daemon]
alert_log = "$W/run/alerts.jsonl"
alert_socket = ""
policy_dir = "$W/run/policy.d"
max_alerts_per_sec = 10
$2

[[policy]]
name = "ksp-block-exec-inside-tmp"
[[policy.process.match_directories]]
dir = "$W/img/tmp/"
recursive = true
[[policy.process.match_directories]]
dir = "$W/img/var/tmp/"
recursive = true
[[policy.process.match_directories]]
dir = "$W/prot/"
recursive = true
CFG
}

daemon_start() { # daemon_start CONFIG
    local cfg=$1 marks
    marks=$("$BIN" check --config "$cfg" | awk -F'\t' '$1 == "mark" {print $2}')
    for m in $marks; do
        # `img/tmp` and `ds/tmp`: the image's /tmp bound onto itself (a mount of the image's filesystem).
        case "$m" in "$W/img"|"$W/img/tmp"|"$W/prot"|"$W/ds"|"$W/ds/tmp"|"$W/rt") ;; *) log "SAFETY: noexecd would mark $m"; exit 1 ;; esac
    done
    : > "$W/run/daemon.log"
    setpriv --pdeathsig KILL -- "$BIN" run --config "$cfg" >>"$W/run/daemon.log" 2>&1 &
    DAEMON_PID=$!
    echo "$DAEMON_PID" > "$BENCH_PIDS/noexecd"
    local i
    for i in $(seq 1 100); do
        grep -q "noexecd is guarding" "$W/run/daemon.log" && return 0
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "noexecd did not start:"; cat "$W/run/daemon.log" >&2; exit 1
}
daemon_stop() {
    [ -n "$DAEMON_PID" ] || return 0
    kill -TERM "$DAEMON_PID"
    timeout 10 tail --pid="$DAEMON_PID" -f /dev/null || kill -KILL "$DAEMON_PID"
    DAEMON_PID=
    rm -f "$BENCH_PIDS/noexecd"
}

# proc_cpu PID: utime+stime in clock ticks. proc_rss PID: VmRSS in KiB.
proc_cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
proc_rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
TICK=$(getconf CLK_TCK)
# task_cpu_ns PID: on-CPU time of every thread of PID in ns (schedstat: finer than stat's clock ticks).
task_cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d\n", s}'; }

# --- measurements --------------------------------------------------------------------------------------------
# spawn_pair SCENARIO SERIES ROUND: allowed exec of each binary, guarded image vs twin, side by side.
# The order flips every round, so that neither side always goes first.
spawn_pair() {
    local sc=$1 series=$2 r=$3 kind v side
    for kind in static dynamic; do
        for side in $( ((r % 2)) && echo "base img" || echo "img base"); do
            v=$(timeout 120 "$EL" -r "$W/$side" spawn "/usr/bin/hello-$kind" "$N_SPAWN")
            # The no-guard side is recorded per phase: each guarded series is paired with its own.
            if [ "$side" = base ]; then rec "$sc" "none@$series-$kind" "$r" "$v" ns; else rec "$sc" "$series-$kind" "$r" "$v" ns; fi
        done
    done
}
deny() { # deny SCENARIO SERIES ROUND [-r ROOT] PATH
    local sc=$1 series=$2 r=$3; shift 3
    local v
    v=$(timeout 120 "$EL" "${@:1:$#-1}" deny "${@: -1}" "$N_DENY")
    rec "$sc" "$series" "$r" "$v" ns
}
# storm SERIES ROUND PID [-r ROOT] PATH: two concurrent deny loops; decisions/s, worst single call, the
# responder's CPU and RSS.
storm() {
    local series=$1 r=$2 pid=$3; shift 3
    local c0 out1 out2 n1 n2 w1 w2 rss
    c0=$(proc_cpu "$pid")
    timeout $((STORM_SECS + 30)) "$EL" "${@:1:$#-1}" storm "${@: -1}" "$STORM_SECS" > "$W/run/s1" &
    local p1=$!
    timeout $((STORM_SECS + 30)) "$EL" "${@:1:$#-1}" storm "${@: -1}" "$STORM_SECS" > "$W/run/s2" &
    local p2=$!
    sleep $((STORM_SECS / 2)).5
    rss=$(proc_rss "$pid")
    wait "$p1" "$p2"
    local c1; c1=$(proc_cpu "$pid")
    read -r n1 w1 < "$W/run/s1"; read -r n2 w2 < "$W/run/s2"
    rec storm "$series-rate" "$r" $(( (n1 + n2) / STORM_SECS )) "decisions/s"
    rec storm "$series-worst" "$r" $(( w1 > w2 ? w1 : w2 )) ns
    rec storm "$series-cpu" "$r" $(( (c1 - c0) * 100 / TICK / STORM_SECS )) "% of one core"
    rec storm "$series-rss" "$r" "$rss" KiB
}
idle() { # idle SERIES PID: CPU over 5 s with nothing happening, and RSS.
    local c0 c1
    c0=$(proc_cpu "$2"); sleep 5; c1=$(proc_cpu "$2")
    rec idle "$1-cpu" 0 $(( (c1 - c0) * 100 / TICK / 5 )) "% of one core"
    rec idle "$1-rss" 0 "$(proc_rss "$2")" KiB
}

# --- the C responders: exec (deny everything on their filesystem) ------------------------------------------
# resp_start NAME [-n] DIR: a responder (-n: naming) marking DIR's filesystem, until resp_stop_all.
resp_start() {
    local name=$1; shift
    "$TOOLS/responder" "$@" > "$W/run/responder-$name.out" &
    local pid=$!
    RESP_PIDS="$RESP_PIDS $pid"
    echo "$pid" > "$BENCH_PIDS/responder-$name"
    for i in $(seq 1 50); do grep -q ready "$W/run/responder-$name.out" && break; sleep 0.1; done
    grep -q ready "$W/run/responder-$name.out" || { log "the C responder $name did not start"; exit 1; }
    [ "$name" = resp ] && RESP_PID=$pid
    return 0
}
resp_stop_all() {
    local p
    for p in $RESP_PIDS; do kill -TERM "$p"; wait "$p" 2>/dev/null || true; done
    RESP_PIDS=; rm -f "$BENCH_PIDS"/responder-*
}
resp_start resp "$W/resp"
resp_start nresp -n "$W/nresp"
resp_start rimg "$W/rimg"
resp_start nimg -n "$W/nimg"

# --- phase 1: noexecd (exec cache on) and the C responder, side by side with no guard and noexec -----------
if phase exec; then
log "== noexecd $("$BIN" --version 2>/dev/null || true) with the exec cache; minimal C responder; noexec"
write_config "$W/run/cache.toml" ""
daemon_start "$W/run/cache.toml"
idle noexecd "$DAEMON_PID"
spawn_pair allowed warmup 0 >/dev/null
sleep 0.5
# What the exec cache holds after the warm-up: inode marks with FAN_OPEN_EXEC_PERM in their ignored mask.
cached=$(cat /proc/"$DAEMON_PID"/fdinfo/* 2>/dev/null | grep -c '^fanotify ino:.*ignored_mask:40000' || true)
rec cache noexecd-cached-inodes 0 "$cached" inodes
log "   exec cache after warm-up: $cached inode(s) (hello-static, hello-dynamic, ld.so expected)"
for r in $(seq 1 "$ROUNDS"); do
    log "   round $r/$ROUNDS"
    spawn_pair allowed noexecd "$r"
    # Short back-to-back runs, order rotating, several per round: each pair sees the same load.
    for k in 1 2 3; do
        rr=$(( (r - 1) * 3 + k ))
        # responder-path and responder-named: the plain and the naming C responder on an image like img.
        order=(responder noexecd noexecd-path noexec responder-path responder-named)
        for i in 0 1 2 3 4 5; do
            case ${order[$(( (i + rr) % 6 ))]} in
                responder) deny denied responder "$rr" "$W/resp/x" ;;
                noexecd) deny denied noexecd "$rr" "$W/prot/x" ;;
                noexecd-path) deny denied noexecd-path "$rr" -r "$W/img" /tmp/x ;;
                noexec) deny denied noexec "$rr" "$W/nx/x" ;;
                responder-path) deny denied responder-path "$rr" -r "$W/rimg" /tmp/x ;;
                responder-named) deny denied responder-named "$rr" -r "$W/nimg" /tmp/x ;;
            esac
        done
    done
done
for r in 1 2 3; do
    storm noexecd "$r" "$DAEMON_PID" "$W/prot/x"
    storm responder "$r" "$RESP_PID" "$W/resp/x"
    storm noexecd-path "$r" "$DAEMON_PID" -r "$W/img" /tmp/x
done
idle noexecd-after "$DAEMON_PID"
daemon_stop
fi

# --- phase 2: noexecd without the exec cache (every allowed exec on the image is decided) ------------------
if phase nocache; then
log "== noexecd without the exec cache"
write_config "$W/run/nocache.toml" "exec_cache = false"
daemon_start "$W/run/nocache.toml"
spawn_pair allowed warmup 0 >/dev/null
for r in $(seq 1 "$ROUNDS"); do
    log "   round $r/$ROUNDS"
    spawn_pair allowed noexecd-nocache "$r"
done
storm noexecd-nocache 1 "$DAEMON_PID" "$W/prot/x"
daemon_stop
fi

# --- phase 3: open-heavy work in /tmp: no guard, the minimal C FAN_OPEN_PERM responder, noexecd ------------
# The image's /tmp is a directory of a path-decided filesystem: noexecd's open guard puts FAN_OPEN_PERM inode
# marks on /tmp and every directory below it; bench/open_responder.c marks the same two directories the same
# way and allows every event (the floor); with -s it also does what any guard telling a file that could run
# from one that cannot must do (statx, the first 64 bytes, the opener's /proc/PID/exe: the sniffing floor).
# noexecd with the open guard off is measured too (execs only), and on with the image's /tmp bound onto itself
# (`bound`: the bind the docs offer, whose mount carries the open guard's mount mark besides the directory marks).
if phase open; then
OPEN_KEY=
# The open guard is the `[open_guard]` table (`enabled`); BENCH_OPEN_SETTING="..." overrides the lines used.
for candidate in ${BENCH_OPEN_SETTING:+"$BENCH_OPEN_SETTING"} $'[open_guard]\nenabled = true' "open_guard = true"; do
    write_config "$W/run/open.toml" "$candidate"
    if "$BIN" check --config "$W/run/open.toml" >/dev/null 2>&1; then OPEN_KEY=$candidate; break; fi
done
if [ -n "$OPEN_KEY" ]; then
    log "== open-heavy work in /tmp: no guard, minimal C open responder, noexecd ($OPEN_KEY) on and off"
    off=${OPEN_KEY/true/false}
    write_config "$W/run/open-off.toml" "$off"
    files() { timeout 120 "$EL" -r "$W/$1" files /tmp/work "$N_FILES"; }
    # The guarded run, and the CPU time its guard (noexecd or the C responder, all threads) spent per open:
    # two opens per file, each one FAN_OPEN_PERM event when the open guard is on.
    guarded() {
        local pid=$DAEMON_PID c0 v c1
        [ -n "$OPEN_RESP_PID" ] && pid=$OPEN_RESP_PID
        c0=$(task_cpu_ns "$pid"); v=$(files img); c1=$(task_cpu_ns "$pid")
        rec open "guard-$mode" "$r" "$v" ns
        rec open "cpu-$mode" "$r" $(( (c1 - c0) / (2 * N_FILES) )) "ns per open"
    }
    for r in $(seq 1 "$ROUNDS"); do
        log "   round $r/$ROUNDS"
        for mode in on resp sniff off bound; do
            case $mode in
                on) daemon_start "$W/run/open.toml" ;;
                bound) mount --bind "$W/img/tmp" "$W/img/tmp"; daemon_start "$W/run/open.toml" ;;
                off) daemon_start "$W/run/open-off.toml" ;;
                resp|sniff)
                    # shellcheck disable=SC2046 # -s or nothing
                    "$TOOLS/open_responder" $([ "$mode" = sniff ] && echo -s) -i "$W/img/tmp" "$W/img/tmp/work" \
                        > "$W/run/open-responder.out" &
                    OPEN_RESP_PID=$!
                    echo "$OPEN_RESP_PID" > "$BENCH_PIDS/open-responder"
                    for i in $(seq 1 50); do grep -q ready "$W/run/open-responder.out" && break; sleep 0.1; done
                    grep -q ready "$W/run/open-responder.out" || { log "the C open responder did not start"; exit 1; }
                    ;;
            esac
            # Order alternating within the pair.
            if ((r % 2)); then
                rec open "none@$mode" "$r" "$(files base)" ns
                guarded
            else
                guarded
                rec open "none@$mode" "$r" "$(files base)" ns
            fi
            if [ "$mode" = resp ] || [ "$mode" = sniff ]; then
                kill -TERM "$OPEN_RESP_PID"; wait "$OPEN_RESP_PID" 2>/dev/null || true
                OPEN_RESP_PID=; rm -f "$BENCH_PIDS/open-responder"
            else
                daemon_stop
            fi
            [ "$mode" = bound ] && umount "$W/img/tmp"
        done
    done
else
    log "== open-heavy work in /tmp: n/a (open guard not built)"
    rec open "n/a" 0 0 "open guard not built"
fi
fi

# --- phase 3a: file rules: opens a rule covers and lets through, and opens next to them no rule covers ----------
# A host Block rule with owner_only on img/srv/ruled/: the bench runs as root and owns the files, so every open
# it makes there (for writing as well as reading: the `files` loop does both) is covered, decided and let
# through without an alert, and without reading the opener's /proc/PID/syscall (an owner_only rule needs only
# the file's owner; a read_only rule would refuse the loop's write opens, and an Audit rule would alert).
# img/srv/plain/ sits next to it, on the same filesystem, under no rule. Sides: no guard (`base`, the twin
# image), the minimal C open responder with the same directory mark (`open_responder -i`), noexecd with the
# open guard on (its default) and the rule.
if phase filerules; then
FR_KEY=$'[open_guard]\nenabled = true'
write_config "$W/run/filerules.toml" "$FR_KEY"
"$BIN" check --config "$W/run/filerules.toml" >/dev/null 2>&1 || write_config "$W/run/filerules.toml" ""
cat >> "$W/run/filerules.toml" <<CFG

[[policy]]
name = "hsp-owner-only-srv"
action = "Block"
[[policy.file.match_directories]]
dir = "$W/img/srv/ruled/"
recursive = true
owner_only = true
CFG
if "$BIN" check --config "$W/run/filerules.toml" 2>&1 | grep -q 'not-enforced:.*hsp-owner-only-srv\|^error'; then
    log "== file rules: n/a (file rules not enforced by this build)"
    rec filerules "n/a" 0 0 "file rules not enforced"
else
    log "== file rules: opens covered and allowed (owner_only, opened by the owner), opens next to them no rule covers"
    for root in img base; do
        mkdir -p "$W/$root/srv/ruled" "$W/$root/srv/plain"
        chmod 0755 "$W/$root/srv/ruled" "$W/$root/srv/plain"
    done
    frfiles() { timeout 120 "$EL" -r "$W/$1" files "/srv/$2" "$N_FILES"; }
    for r in $(seq 1 "$ROUNDS"); do
        log "   round $r/$ROUNDS"
        for mode in on resp; do
            if [ "$mode" = on ]; then
                daemon_start "$W/run/filerules.toml"
                if [ "$r" = 1 ]; then
                    # The rule is enforced: another user's open of a covered file is refused.
                    echo x > "$W/img/srv/ruled/probe"; chmod 0644 "$W/img/srv/ruled/probe"
                    if timeout 10 setpriv --reuid 65534 --regid 65534 --clear-groups cat "$W/img/srv/ruled/probe" >/dev/null 2>&1; then
                        log "file rules: nobody's open of $W/img/srv/ruled/probe went through: the rule is not enforced"; exit 1
                    fi
                    for i in $(seq 1 50); do grep -q 'srv/ruled/probe' "$W/run/alerts.jsonl" 2>/dev/null && break; sleep 0.1; done
                fi
            else
                "$TOOLS/open_responder" -i "$W/img/srv/ruled" > "$W/run/open-responder.out" &
                OPEN_RESP_PID=$!
                echo "$OPEN_RESP_PID" > "$BENCH_PIDS/open-responder"
                for i in $(seq 1 50); do grep -q ready "$W/run/open-responder.out" && break; sleep 0.1; done
                grep -q ready "$W/run/open-responder.out" || { log "the C open responder did not start"; exit 1; }
            fi
            # Order rotating, so that no side always goes first.
            for k in 0 1 2; do
                case $(( (k + r) % 3 )) in
                    0) rec filerules "none@$mode" "$r" "$(frfiles base ruled)" ns ;;
                    1) rec filerules "covered-$mode" "$r" "$(frfiles img ruled)" ns ;;
                    2) rec filerules "uncovered-$mode" "$r" "$(frfiles img plain)" ns ;;
                esac
            done
            if [ "$mode" = resp ]; then
                kill -TERM "$OPEN_RESP_PID"; wait "$OPEN_RESP_PID" 2>/dev/null || true
                OPEN_RESP_PID=; rm -f "$BENCH_PIDS/open-responder"
            else
                daemon_stop
            fi
        done
    done
    # Every covered open of the loop was let through without an alert (the probe's is the only one expected).
    n_alerts=$(grep -c 'srv/ruled/f[0-9]' "$W/run/alerts.jsonl" 2>/dev/null || true)
    rec filerules alerts 0 "${n_alerts:-0}" alerts
    [ "${n_alerts:-0}" = 0 ] || { log "file rules: $n_alerts alert(s) from opens the rule lets through"; exit 1; }
fi
fi

# --- phase 3b: podman containers (bench/containers.sh) -------------------------------------------------------
if phase containers; then ctr_phase; fi
resp_stop_all

# --- phase 4: fapolicyd 1.1.7 on the same image -------------------------------------------------------------
if ! phase fapolicyd; then
    :
elif command -v fapolicyd >/dev/null; then
    log "== fapolicyd $(dpkg-query -W -f '${Version}' fapolicyd 2>/dev/null) (trust=file, integrity=none)"
    fapolicyd_prepare "$W/img"
    fapolicyd_start "$W/img" "$W/run/fapolicyd.log"
    idle fapolicyd "$FAPOLICYD_PID"
    spawn_pair allowed warmup 0 >/dev/null
    for r in $(seq 1 "$ROUNDS"); do
        log "   round $r/$ROUNDS"
        spawn_pair allowed fapolicyd "$r"
        deny denied fapolicyd "$r" -r "$W/img" /tmp/x
    done
    for r in 1 2 3; do storm fapolicyd "$r" "$FAPOLICYD_PID" -r "$W/img" /tmp/x; done
    fapolicyd_stop "$W/img"
else
    log "== fapolicyd: not installed"
fi

# --- phase 5: the open guard's directory tracking: a storm of mkdirs, then 100 000 standing directories -----
# A tmpfs holding a protected directory and an unprotected one is decided by path, like /tmp on `/`: the
# protected tree gets inode marks (directories cost tmpfs no blocks, so 100 000 fit).
if phase dirs; then
N_DIRS=${BENCH_DIRS:-100000}
log "== open guard directory tracking: $N_DIRS directories made in a storm, then standing"
mkdir -p "$W/ds"
mount -t tmpfs -o size=64m,mode=0755 noexecd-bench-ds "$W/ds"
mkdir -p "$W/ds/tmp" "$W/ds/usr"
chmod 1777 "$W/ds/tmp"
cat > "$W/run/dirs.toml" <<CFG
[daemon]
alert_log = "$W/run/alerts.jsonl"
alert_socket = ""
policy_dir = "$W/run/policy.d"
max_alerts_per_sec = 10

[[policy]]
name = "ksp-block-exec-inside-tmp"
[[policy.process.match_directories]]
dir = "$W/ds/tmp/"
recursive = true
CFG
val() { awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}' <<< "$line"; }
# First with ds/tmp bound onto itself (its mount then carries the open guard's mount mark too): the storm's
# cost with the mount mark, in a tree of its own, removed afterwards.
mkdir -p "$W/ds/tmp/bound"
mount --bind "$W/ds/tmp" "$W/ds/tmp"
daemon_start "$W/run/dirs.toml"
c0=$(proc_cpu "$DAEMON_PID"); t0=$(date +%s.%N)
line=$(timeout 300 "$TOOLS/dirstorm" "$W/ds/tmp/bound" "$N_DIRS" 500 "${BENCH_DIR_RATE:-20000}")
c1=$(proc_cpu "$DAEMON_PID"); t1=$(date +%s.%N)
log "   bound onto itself: $line"
rec dirs bound-probes 0 "$(val probes)" probes
rec dirs bound-probes-guarded 0 "$(val guarded)" probes
rec dirs bound-mark-p99 0 "$(val p99_ms)" ms
rec dirs bound-storm-cpu 0 "$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v t="$TICK" 'BEGIN {printf "%.1f", (b - a) * 100 / t / (e - s)}')" "% of one core"
daemon_stop
umount "$W/ds/tmp"
rm -rf "$W/ds/tmp/bound"
daemon_start "$W/run/dirs.toml"
c0=$(proc_cpu "$DAEMON_PID"); t0=$(date +%s.%N)
# Paced at BENCH_DIR_RATE mkdir/s (20 000; 0 = as fast as one process can, which outruns any bounded queue).
line=$(timeout 300 "$TOOLS/dirstorm" "$W/ds/tmp" "$N_DIRS" 500 "${BENCH_DIR_RATE:-20000}")
c1=$(proc_cpu "$DAEMON_PID"); t1=$(date +%s.%N)
log "   $line"
rec dirs storm-rate 0 "$(val storm_rate)" "mkdir/s"
rec dirs storm-dirs 0 "$(val storm_dirs)" dirs
rec dirs probes 0 "$(val probes)" probes
rec dirs probes-guarded 0 "$(val guarded)" probes
rec dirs mark-p50 0 "$(val p50_ms)" ms
rec dirs mark-p99 0 "$(val p99_ms)" ms
rec dirs mark-max 0 "$(val max_ms)" ms
rec dirs storm-cpu 0 "$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v t="$TICK" 'BEGIN {printf "%.1f", (b - a) * 100 / t / (e - s)}')" "% of one core"
sleep 2
c0=$(proc_cpu "$DAEMON_PID"); sleep 10; c1=$(proc_cpu "$DAEMON_PID")
rec dirs idle-cpu 0 "$(awk -v a="$c0" -v b="$c1" -v t="$TICK" 'BEGIN {printf "%.2f", (b - a) * 100 / t / 10}')" "% of one core"
rec dirs idle-rss 0 "$(proc_rss "$DAEMON_PID")" KiB
rec dirs marks 0 "$(cat /proc/"$DAEMON_PID"/fdinfo/* 2>/dev/null | grep -c '^fanotify ino:' || true)" "inode marks"
daemon_stop
umount "$W/ds"
fi

# --- phase 6: a directory made a moment ago: mkdir, a script into it, `sh` on it at once (bench/dirrace.c) ----
# As uid 65534, BENCH_RACE times on each layout: /tmp a tmpfs of its own (`rt`), the image's /tmp bound onto
# itself, and the image's /tmp a plain directory of its `/` (where only the directory marks guard).
if phase race; then
N_RACE=${BENCH_RACE:-10000}
log "== a directory made a moment ago: $N_RACE attempts per layout"
mkdir -p "$W/rt"
mount -t tmpfs -o size=16m,mode=1777 noexecd-bench-rt "$W/rt"
cat > "$W/run/race.toml" <<CFG
[daemon]
alert_log = "$W/run/alerts.jsonl"
alert_socket = ""
policy_dir = "$W/run/policy.d"
max_alerts_per_sec = 10

[[policy]]
name = "ksp-block-exec-inside-tmp"
[[policy.process.match_directories]]
dir = "$W/img/tmp/"
recursive = true
[[policy.process.match_directories]]
dir = "$W/rt/"
recursive = true
CFG
race() { # race SERIES DIR
    local line
    line=$(timeout 600 setpriv --reuid=65534 --regid=65534 --clear-groups -- "$W/run/dirrace" "$2" "$N_RACE")
    log "   $1: $line"
    rec race "$1-ran" 0 "$(awk '{print $4}' <<< "$line")" runs
    rec race "$1-attempts" 0 "$(awk '{print $2}' <<< "$line")" attempts
    rec race "$1-secs" 0 "$(awk '{print $10}' <<< "$line")" s
}
install -m 0755 "$TOOLS/dirrace" "$W/run/dirrace"
daemon_start "$W/run/race.toml"
race tmpfs "$W/rt"
race shared "$W/img/tmp"
daemon_stop
mount --bind "$W/img/tmp" "$W/img/tmp"
daemon_start "$W/run/race.toml"
race bound "$W/img/tmp"
daemon_stop
umount "$W/img/tmp"
umount "$W/rt"
fi
log "== done"
