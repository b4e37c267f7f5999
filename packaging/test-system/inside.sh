#!/bin/bash
# Runs INSIDE the booted test container (as root, via nsenter from boot.sh). Prints "ok - ..." or
# "FAIL - ..." per assertion. Usage: inside.sh phase1|phase2
#   phase1 (first boot): dpkg -i; service active, enabled, own-namespace checks; /tmp exec denied with an
#          alert; journal; reload to audit mode and back; a bad policy keeps the old one; logrotate
#          reopens the log; kill -9 during an exec loop (restart <= 2 s, nothing ran in the gap);
#          upgrade to the next version (packaging/build.sh next) and downgrade back with dpkg -i while nobody
#          execs from /tmp in a loop: no attempt runs, none waits > 2 s, one alert per refused attempt, the
#          version on the status line; a new binary that refuses the configuration leaves the old one guarding.
#   phase2 (second boot): started at boot, before sysinit.target; watchdog fed for > WatchdogSec; a crash
#          after the binary was replaced restarts into the new file without waiting; dpkg -r
#          stops it and /tmp exec works; dpkg -P leaves no file of the package; then the .rpm's scriptlets
#          under the same systemd: rpm -i enables and starts, rpm -U to the next version and rpm -U --oldpackage
#          back hand over under the exec loop (as with dpkg), rpm -e stops and removes.
set -u
PHASE=${1:?usage: inside.sh phase1|phase2}
export SYSTEMD_PAGER='' SYSTEMD_COLORS=0
ALERTS=/var/log/noexecd/alerts.jsonl
CONF=/etc/noexecd/noexecd.toml
POLICY=ksp-block-exec-inside-tmp
pass=0 fail=0
ok()   { pass=$((pass + 1)); echo "ok - [$PHASE] $*"; }
bad()  { fail=$((fail + 1)); echo "FAIL - [$PHASE] $*"; }
info() { echo "   $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
prop() { timeout 10 systemctl show -p "$1" --value noexecd.service 2>/dev/null; }

# try_exec FILE: exec FILE from a child bash; prints "RC STDERR" (126 "Operation not permitted" when denied).
try_exec() { local err rc; err=$(timeout 20 bash -c "$1" 2>&1 >/dev/null); rc=$?; echo "$rc ${err##*: }"; }
# wait_exec FILE RC [SECONDS]: retry until the exec gives RC (a reload is asynchronous).
wait_exec() {
    local i r
    for i in $(seq 1 $((${3:-5} * 10))); do r=$(try_exec "$1"); [ "${r%% *}" = "$2" ] && return 0; sleep 0.1; done
    echo "   last result for $1: $r" >&2
    return 1
}
# alert_for FILE ACTION: an alert line for FILE with ACTION and our policy appears within 5 s.
alert_for() {
    local i
    for i in $(seq 1 50); do
        if [ -f "$ALERTS" ] && grep -F "\"$1\"" "$ALERTS" | grep -E "\"Action\": ?\"$2\"" | grep -qE "\"PolicyName\": ?\"$POLICY\""; then
            return 0
        fi
        sleep 0.1
    done
    echo "   no $2 alert for $1 in $ALERTS; its last lines:" >&2
    tail -3 "$ALERTS" 2>/dev/null | sed 's/^/     /' >&2
    return 1
}
make_bin() { cp /bin/true "$1" && chmod 755 "$1"; }
# Exec-free helpers, for the moments when the daemon is down and every exec may wait on the stored group.
nap() { read -rt "$1" <> <(:) 2>/dev/null || true; }
daemon_pid() { # pid of a running noexecd, found with bash builtins only
    local f c
    for f in /proc/[0-9]*/comm; do
        read -r c < "$f" 2>/dev/null || continue
        if [ "$c" = noexecd ]; then f=${f#/proc/}; echo "${f%/comm}"; return 0; fi
    done
    return 1
}
# probe_exec FILE SECONDS: run FILE in the background; print its exit status, or "stuck" (then kill it).
probe_exec() {
    local p i
    "$1" >/dev/null 2>&1 &
    p=$!
    for ((i = 0; i < $2 * 10; i++)); do
        if ! kill -0 "$p" 2>/dev/null; then wait "$p"; echo $?; return; fi
        nap 0.1
    done
    kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null
    echo stuck
}
# describe_children PID: state and wait channel of PID's children (why an exec waits).
describe_children() {
    local d pp st wc
    for d in /proc/[0-9]*; do
        pp=$(awk '/^PPid:/ { print $2 }' "$d/status" 2>/dev/null)
        [ "$pp" = "$1" ] || continue
        st=$(awk '/^State:/ { print $2 }' "$d/status" 2>/dev/null); wc=$(cat "$d/wchan" 2>/dev/null)
        echo "   stuck child ${d#/proc/}: state $st, wchan ${wc:-?}, exe $(readlink "$d/exe" 2>/dev/null)"
    done
}
wait_active() { timeout "${1:-10}" bash -c 'until systemctl is-active --quiet noexecd.service; do sleep 0.1; done'; }
VERSION_N=$(cat /root/version-n) VERSION_NEXT=$(cat /root/version-next)
shows_version() { systemctl status noexecd.service --no-pager 2>/dev/null | grep -qF "noexecd $1: "; }
# alerts_whole: every line of the alert log is one JSON object and the file ends with a newline (none cut).
alerts_whole() { ! grep -qvE '^\{.*\}$' "$ALERTS" && [ "$(tail -c 1 "$ALERTS" | od -An -c | tr -d ' ')" = '\n' ]; }

# handover_under_loop WHAT VERSION CMD...: runs CMD (a package upgrade or downgrade) while nobody execs a copy
# of /bin/true from /tmp as fast as it can, from 1 s before to 1 s after. Asserts: no attempt ran, none waited
# more than 2 s, a new daemon whose status line shows noexecd VERSION, the alert log whole, and an alert for
# every refused attempt (max_alerts_per_sec is raised beforehand so that none is throttled).
# Only bash builtins run in the loop besides the payload: an exec of anything else could wait too.
handover_under_loop() {
    local what=$1 version=$2; shift 2
    local d=/run/noexecd-loop payload=/tmp/noexecd-payload pid0 lines0 out rc i n ran denied other max alerts
    rm -rf "$d"; mkdir -p "$d"; chown nobody "$d"
    make_bin "$payload"
    pid0=$(prop MainPID)
    lines0=$(wc -l < "$ALERTS")
    setpriv --reuid=nobody --regid=nogroup --clear-groups -- bash -c '
        d=$1 p=$2 n=0 ran=0 denied=0 other=0 max=0
        while [ ! -e "$d/stop" ]; do
            t0=${EPOCHREALTIME/./}
            "$p" 2>/dev/null; rc=$?
            w=$((${EPOCHREALTIME/./} - t0))
            [ "$w" -gt "$max" ] && max=$w
            n=$((n + 1))
            case $rc in 0) ran=$((ran + 1)) ;; 126) denied=$((denied + 1)) ;; *) other=$((other + 1)) ;; esac
        done
        echo "$n $ran $denied $other $max" > "$d/result"' _ "$d" "$payload" &
    local loop=$!
    nap 1
    local t0=$EPOCHREALTIME
    out=$(timeout 120 "$@" 2>&1); rc=$?
    local t1=$EPOCHREALTIME
    nap 1
    : > "$d/stop"
    for ((i = 0; i < 150; i++)); do kill -0 "$loop" 2>/dev/null || break; nap 0.1; done
    if kill -0 "$loop" 2>/dev/null; then
        bad "$what: the exec loop did not end within 15 s of being told to (an exec waiting on the group?)"
        describe_children "$loop"
        kill -9 "$loop" 2>/dev/null
    fi
    wait "$loop" 2>/dev/null
    check "$what: exit status 0 ($rc), $(( (${t1/./} - ${t0/./}) / 1000 )) ms" test "$rc" = 0
    echo "$out" | sed 's/^/   | /'
    read -r n ran denied other max < "$d/result" 2>/dev/null || n=
    alerts=$(tail -n +$((lines0 + 1)) "$ALERTS" | grep -cF "\"$payload\"")
    info "$what: exec loop as nobody: ${n:-?} attempts, ${ran:-?} ran, ${denied:-?} refused, ${other:-?} other; longest wait ${max:-?} us; $alerts alerts for them"
    check "$what: the exec loop ran throughout (${n:-0} attempts)" test "${n:-0}" -ge 100
    check "$what: no exec attempt ran (${ran:-?} of ${n:-?})" test "${ran:-x}" = 0 -a "${other:-x}" = 0
    check "$what: no exec attempt waited longer than 2 s (longest ${max:-?} us)" test "${max:-9999999999}" -le 2000000
    check "$what: a new daemon guards (MainPID $pid0 -> $(prop MainPID), $(systemctl is-active noexecd.service))" \
        test "$(prop MainPID)" != "$pid0" -a "$(systemctl is-active noexecd.service)" = active
    check "$what: systemctl status shows 'noexecd $version: ' ($(prop StatusText | cut -c1-40))" shows_version "$version"
    check "$what: the alert log is whole (every line one JSON object, none cut)" alerts_whole
    # At least one: a refused attempt without its alert is a lost line. An attempt at the very moment of the
    # hand-over has shown twice in some runs (one of about 2 000), alerted by the old daemon and again by the
    # new one: printed below when it happens.
    check "$what: an alert for every refused attempt, none lost ($alerts alerts, ${denied:-?} refused)" test "$alerts" -ge "${denied:-999999999}"
    if [ "$alerts" != "${denied:-x}" ]; then
        tail -n +$((lines0 + 1)) "$ALERTS" | grep -F "\"$payload\"" | grep -oE '"PID": ?[0-9]+' | sort | uniq -d | head -3 |
            while read -r dup; do
                info "alerted more than once ($dup):" $(grep -F "$dup" "$ALERTS" | grep -F "\"$payload\"" | grep -oE '"(UpdatedTime|Data|Result)":"[^"]*"')
            done
    fi
    check "$what: the group is still in systemd's FD store (NFileDescriptorStore=1)" test "$(prop NFileDescriptorStore)" = 1
    rm -rf "$d"
}
# unthrottled: no alert of the exec loop is dropped by max_alerts_per_sec.
unthrottled() {
    sed -i 's/^max_alerts_per_sec = .*/max_alerts_per_sec = 1000000/' "$CONF"
    timeout 20 systemctl reload noexecd.service
}

phase1() {
    # --- install: enables and starts the service
    local out
    out=$(timeout 120 dpkg -i /root/noexecd.deb 2>&1); local rc=$?
    check "dpkg -i noexecd.deb" test "$rc" = 0
    [ "$rc" = 0 ] || echo "$out" | sed 's/^/   /'
    wait_active 15
    check "systemctl is-active noexecd (started by the package's postinst)" systemctl is-active --quiet noexecd.service
    check "systemctl is-enabled noexecd (enabled by the package's postinst)" systemctl is-enabled --quiet noexecd.service
    out=$(timeout 30 systemd-analyze verify --man=no noexecd.service 2>&1)
    check "systemd-analyze verify noexecd.service on the booted system" test -z "$out"
    [ -z "$out" ] || echo "$out" | sed 's/^/   verify: /'
    local pid; pid=$(prop MainPID)
    info "MainPID=$pid Status='$(prop StatusText)' NFileDescriptorStore=$(prop NFileDescriptorStore) WatchdogUSec=$(prop WatchdogUSec)"
    check "the daemon shares PID 1's mount namespace (no mount-namespace directive)" \
        test "$(readlink "/proc/$pid/ns/mnt")" = "$(readlink /proc/1/ns/mnt)"
    check "the daemon runs under seccomp (SystemCallFilter=)" grep -qE '^Seccomp:[[:space:]]+2' "/proc/$pid/status"
    check "the daemon's capability bounding set is only CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, CAP_AUDIT_WRITE, CAP_CHOWN" \
        grep -qE '^CapBnd:[[:space:]]+0000000020280005$' "/proc/$pid/status"
    check "sd_notify STATUS= text is set" test -n "$(prop StatusText)"
    check "fail_mode closed: the fanotify group is in systemd's FD store (NFileDescriptorStore=1)" test "$(prop NFileDescriptorStore)" = 1
    info "/tmp is $(stat -f -c %T /tmp), /var/tmp is $(stat -f -c %T /var/tmp), /dev/shm is $(stat -f -c %T /dev/shm)"

    # --- a binary dropped into /tmp, /var/tmp, /dev/shm is denied with EPERM and an alert
    make_bin /tmp/noexecd-x; make_bin /var/tmp/noexecd-y; make_bin /dev/shm/noexecd-z
    check "exec of /usr/bin/true (not protected) works" test "$(try_exec /usr/bin/true)" = "0 "
    for f in /tmp/noexecd-x /var/tmp/noexecd-y /dev/shm/noexecd-z; do
        local r; r=$(try_exec "$f")
        check "exec of $f is denied: exit 126 'Operation not permitted' (got '$r')" test "$r" = "126 Operation not permitted"
        check "Block alert for $f in $ALERTS with PolicyName $POLICY" alert_for "$f" Block
    done
    grep -F '"/tmp/noexecd-x"' "$ALERTS" 2>/dev/null | tail -1 | sed 's/^/   alert: /'
    check "alerts.jsonl: every line is one JSON object" bash -c "! grep -qvE '^\{.*\}$' '$ALERTS'"
    local jl; jl=$(journalctl _SYSTEMD_UNIT=noexecd.service -o cat --no-pager 2>/dev/null)
    check "the daemon's own log is in the journal (journalctl _SYSTEMD_UNIT=noexecd.service)" test -n "$jl"
    echo "$jl" | tail -5 | sed 's/^/   journal: /'

    # --- reload: switch to audit mode, then back
    sed -i 's/^mode = "enforce"/mode = "audit"/' "$CONF"
    check "systemctl reload noexecd (mode = audit)" timeout 20 systemctl reload noexecd.service
    make_bin /tmp/noexecd-audit
    check "after the reload, exec of /tmp/noexecd-audit passes (audit mode)" wait_exec /tmp/noexecd-audit 0
    check "Audit alert for /tmp/noexecd-audit" alert_for /tmp/noexecd-audit Audit
    sed -i 's/^mode = "audit"/mode = "enforce"/' "$CONF"
    check "systemctl reload noexecd (mode = enforce)" timeout 20 systemctl reload noexecd.service
    check "after the reload, /tmp exec is denied again" wait_exec /tmp/noexecd-x 126
    # a broken drop-in must not take the guard down or change the policy
    printf '[[policy]]\nname = "broken"\n[[policy.process.match_paths]]\npath = "relative/path"\n' > /etc/noexecd/policy.d/zz-broken.toml
    timeout 20 systemctl reload noexecd.service; sleep 1
    check "a reload with a broken policy keeps the service active" systemctl is-active --quiet noexecd.service
    check "a reload with a broken policy keeps the old policy (/tmp exec still denied)" wait_exec /tmp/noexecd-x 126
    rm -f /etc/noexecd/policy.d/zz-broken.toml
    timeout 20 systemctl reload noexecd.service

    # --- logrotate: the shipped config rotates and the daemon reopens its log
    if command -v logrotate >/dev/null; then
        check "logrotate -f /etc/logrotate.d/noexecd" timeout 30 logrotate -f /etc/logrotate.d/noexecd
        check "the rotated log exists (alerts.jsonl.1)" test -s "$ALERTS.1"
        make_bin /tmp/noexecd-rotated
        try_exec /tmp/noexecd-rotated >/dev/null
        check "after rotation the new alert goes to a fresh alerts.jsonl (log reopened on SIGHUP)" alert_for /tmp/noexecd-rotated Block
    fi

    # --- the live alert socket in RuntimeDirectory=, given to a group (needs CAP_CHOWN and @chown)
    check "the alert socket /run/noexecd/alerts.sock exists, 0600 root" test "$(stat -c '%a %U' /run/noexecd/alerts.sock 2>/dev/null)" = "600 root"
    sed -i 's/^\[daemon\]$/[daemon]\nalert_socket_group = "adm"/' "$CONF"
    timeout 30 systemctl restart noexecd.service; wait_active 10
    check "with alert_socket_group = \"adm\" the service starts" systemctl is-active --quiet noexecd.service
    check "with alert_socket_group the socket is 0660 root:adm in a 0755 /run/noexecd ($(stat -c '%a %U:%G' /run/noexecd/alerts.sock 2>/dev/null), dir $(stat -c %a /run/noexecd))" \
        test "$(stat -c '%a %U:%G' /run/noexecd/alerts.sock 2>/dev/null) $(stat -c %a /run/noexecd)" = "660 root:adm 755"
    sed -i '/^alert_socket_group = "adm"$/d' "$CONF"
    timeout 30 systemctl restart noexecd.service; wait_active 10

    # --- NRestarts stays 0 so far: the watchdog (WatchdogSec=) is being fed
    check "no restart so far (watchdog fed, no crash): NRestarts=0" test "$(prop NRestarts)" = 0

    # --- kill -9 during a loop of exec attempts
    local pid0 nr0 loop t0 t1 newpid=
    pid0=$(prop MainPID); nr0=$(prop NRestarts)
    : > /root/loop.log
    ( end=$((SECONDS + 6)); while [ "$SECONDS" -lt "$end" ]; do /tmp/noexecd-x 2>/dev/null; echo "$? $EPOCHREALTIME" >> /root/loop.log; done ) &
    loop=$!
    sleep 1.5
    t0=$EPOCHREALTIME
    kill -9 "$pid0"
    # Find the new daemon with bash builtins only: while it is down, every exec here may wait (fail closed).
    # No `$(seq ...)` here: an exec the killed daemon read before it died is denied by the restarted one.
    local i c f
    for ((i = 0; i < 1000; i++)); do
        for f in /proc/[0-9]*/comm; do
            read -r c < "$f" 2>/dev/null || continue
            if [ "$c" = noexecd ]; then f=${f#/proc/}; f=${f%/comm}; [ "$f" != "$pid0" ] && { newpid=$f; break 2; }; fi
        done
        read -rt 0.01 <> <(:) 2>/dev/null || true
    done
    t1=$EPOCHREALTIME
    wait_active 10
    local t2=$EPOCHREALTIME
    local dt=$(( (${t1/./} - ${t0/./}) / 1000 )) dta=$(( (${t2/./} - ${t0/./}) / 1000 ))
    info "kill -9 $pid0: new daemon pid ${newpid:-none} after ${dt} ms, active after ${dta} ms, NRestarts $(prop NRestarts)"
    check "kill -9: a new daemon process within 2 s (${dt} ms)" test -n "$newpid" -a "$dt" -le 2000
    check "kill -9: systemd has it active again within 2 s (${dta} ms)" test "$dta" -le 2000
    check "kill -9: NRestarts went up by one" test "$(prop NRestarts)" = $((nr0 + 1))
    # Every attempt must come back: one whose event the killed daemon had read but not answered would
    # wait for as long as systemd holds the group (the kernel answers such events only when the group closes).
    local n
    for ((n = 0; n < 150; n++)); do kill -0 "$loop" 2>/dev/null || break; nap 0.1; done
    if kill -0 "$loop" 2>/dev/null; then
        bad "kill -9: an exec attempt made around the kill was still waiting 15 s later (an event the killed daemon had read but not answered: the restarted daemon must answer those)"
        describe_children "$loop"
        for c in $(awk -v p="$loop" '$1 == "PPid:" && $2 == p { print FILENAME }' /proc/[0-9]*/status 2>/dev/null); do
            c=${c#/proc/}; kill -9 "${c%/status}" 2>/dev/null
        done
        kill -9 "$loop" 2>/dev/null
    else
        ok "kill -9: every exec attempt made around the kill came back"
    fi
    wait "$loop" 2>/dev/null
    local total denied passed other
    total=$(wc -l < /root/loop.log); denied=$(grep -c '^126 ' /root/loop.log); passed=$(grep -c '^0 ' /root/loop.log)
    other=$((total - denied - passed))
    info "exec loop: $total attempts, $denied denied, $passed succeeded, $other other"
    check "exec loop ran on both sides of the kill" test "$total" -ge 2
    check "fail_mode closed: no exec of /tmp/noexecd-x succeeded around the kill -9 ($passed of $total did)" test "$passed" = 0
    check "fail_mode closed: the group came back from the FD store (NFileDescriptorStore=1 after the restart)" test "$(prop NFileDescriptorStore)" = 1
    check "after the restart /tmp exec is denied" wait_exec /tmp/noexecd-x 126

    # --- a crash loop must not hold the host: after StartLimitBurst=5 starts in 60 s the unit fails and
    #     systemd closes the stored group, so execs go through again (fail open) instead of waiting forever.
    # Driven with builtins only: an exec here could itself wait on the stored group.
    local i j p r gone=0 kills=0
    for ((i = 0; i < 12; i++)); do
        p=$(daemon_pid) || p=
        if [ -z "$p" ]; then
            for ((j = 0; j < 30; j++)); do nap 0.1; p=$(daemon_pid) && break; done
            [ -n "$p" ] || { gone=1; break; }
        fi
        kill -9 "$p" 2>/dev/null && kills=$((kills + 1))
        nap 0.3
    done
    check "crash loop: after $kills kill -9 systemd stopped restarting the daemon" test "$gone" = 1
    r=$(probe_exec /usr/bin/true 5)
    check "crash loop: execs are not held once systemd gave up (exec of /usr/bin/true: $r)" test "$r" = 0
    info "after repeated kill -9: ActiveState=$(prop ActiveState) Result=$(prop Result) NRestarts=$(prop NRestarts)"
    check "crash loop: the unit gave up (ActiveState=failed: start request repeated too quickly)" test "$(prop ActiveState)" = failed
    check "crash loop: systemd released the stored group (NFileDescriptorStore=0)" test "$(prop NFileDescriptorStore)" = 0
    timeout 10 systemctl reset-failed noexecd.service
    check "systemctl start after reset-failed" timeout 30 systemctl start noexecd.service
    check "after the restart /tmp exec is denied again" wait_exec /tmp/noexecd-x 126

    # --- upgrade and downgrade: the running daemon hands the group to the new binary; nothing runs meanwhile
    unthrottled
    check "before the upgrade systemctl status shows 'noexecd $VERSION_N: '" shows_version "$VERSION_N"
    handover_under_loop "dpkg -i (upgrade $VERSION_N -> $VERSION_NEXT)" "$VERSION_NEXT" dpkg -i /root/noexecd-next.deb
    check "after the upgrade dpkg has $VERSION_NEXT-1 installed" test "$(dpkg-query -W -f '${Version}' noexecd)" = "$VERSION_NEXT-1"
    handover_under_loop "dpkg -i (downgrade $VERSION_NEXT -> $VERSION_N)" "$VERSION_N" dpkg -i /root/noexecd.deb

    # --- a new binary that refuses the configuration: the package installs, the old daemon keeps guarding
    local p1 lines1
    p1=$(prop MainPID); lines1=$(wc -l < "$ALERTS")
    cp "$CONF" /root/noexecd.toml.good
    echo 'this line is not TOML' >> "$CONF"
    out=$(timeout 120 dpkg -i /root/noexecd-next.deb 2>&1); rc=$?
    echo "$out" | sed 's/^/   | /'
    check "refused hand-over: dpkg -i still succeeds ($rc)" test "$rc" = 0
    check "refused hand-over: the postinst says why and that the old daemon keeps guarding" \
        bash -c 'grep -q "REFUSED" <<<"$1" && grep -q "keeps guarding" <<<"$1"' _ "$out"
    check "refused hand-over: the same daemon runs (MainPID $p1), still 'noexecd $VERSION_N: '" \
        bash -c '[ "$(systemctl show -p MainPID --value noexecd.service)" = "$1" ] && systemctl status noexecd.service --no-pager | grep -qF "noexecd $2: "' _ "$p1" "$VERSION_N"
    check "refused hand-over: /tmp exec is still denied" wait_exec /tmp/noexecd-x 126
    check "refused hand-over: a HandOverRefused alert" \
        bash -c 'tail -n +$(($2 + 1)) "$1" | grep -q "\"HandOverRefused\""' _ "$ALERTS" "$lines1"
    cp /root/noexecd.toml.good "$CONF"
    out=$(timeout 60 noexecd handover 2>&1); rc=$?
    echo "$out" | sed 's/^/   | /'
    check "with the configuration fixed, noexecd handover completes the upgrade (exit $rc, now 'noexecd $VERSION_NEXT: ')" \
        bash -c '[ "$1" = 0 ] && systemctl status noexecd.service --no-pager | grep -qF "noexecd $2: "' _ "$rc" "$VERSION_NEXT"
    check "after the hand-over /tmp exec is denied" wait_exec /tmp/noexecd-x 126
}

phase2() {
    check "noexecd is active after a reboot (enabled, WantedBy=sysinit.target)" wait_active 10
    local me si tf db
    me=$(prop ActiveEnterTimestampMonotonic)
    si=$(systemctl show -p ActiveEnterTimestampMonotonic --value sysinit.target)
    tf=$(systemctl show -p InactiveExitTimestampMonotonic --value systemd-tmpfiles-setup.service)
    db=$(systemctl show -p ExecMainStartTimestampMonotonic --value dbus.service)
    info "monotonic us: noexecd ready $me, tmpfiles-setup start $tf, sysinit.target $si, dbus.service start $db"
    check "noexecd was ready before sysinit.target" test "$me" -gt 0 -a "$me" -le "$si"
    check "noexecd was ready before systemd-tmpfiles-setup started" test "$me" -le "$tf"
    check "noexecd was ready before an ordinary service (dbus) started" test "$me" -le "$db"
    make_bin /tmp/noexecd-x
    check "after the reboot /tmp exec is denied" wait_exec /tmp/noexecd-x 126

    # --- the watchdog is fed: still the same process, never restarted, after more than WatchdogSec=10s
    local pid up; pid=$(prop MainPID)
    for _ in $(seq 1 40); do up=$(ps -o etimes= -p "$pid" 2>/dev/null | tr -d ' '); [ "${up:-0}" -ge 13 ] && break; sleep 0.5; done
    check "watchdog: the daemon ran ${up:-?} s (> WatchdogSec=10s) without a restart (NRestarts=0, same MainPID)" \
        test "${up:-0}" -ge 13 -a "$(prop NRestarts)" = 0 -a "$(prop MainPID)" = "$pid"
    check "watchdog: no 'Watchdog timeout' in the journal" bash -c '! journalctl -u noexecd.service -o cat --no-pager | grep -q "Watchdog timeout"'

    # --- a crash after a package manager replaced the binary, before any hand-over: the daemon has exempted
    #     the new file by then (its mount check looks at the inodes of its restart's files), so systemd's start
    #     of the new binary does not wait on the stored group that nobody answers
    local replaced0 replaced p0 p i t0 dt
    replaced0=$(journalctl -u noexecd.service -o cat --no-pager | grep -c "was replaced")
    cp -p /usr/sbin/noexecd /usr/sbin/noexecd.dpkg-new && mv /usr/sbin/noexecd.dpkg-new /usr/sbin/noexecd
    for i in $(seq 1 50); do
        replaced=$(journalctl -u noexecd.service -o cat --no-pager | grep -c "was replaced")
        [ "$replaced" -gt "$replaced0" ] && break
        sleep 0.1
    done
    check "a binary replaced under the running daemon is exempted again within a mount check (journal: 'was replaced')" \
        test "$replaced" -gt "$replaced0"
    p0=$(prop MainPID)
    t0=$EPOCHREALTIME
    kill -9 "$p0"
    # Builtins only until the new daemon runs: while it is down, every exec here may wait on the stored group.
    p=
    for ((i = 0; i < 200; i++)); do
        p=$(daemon_pid) && [ "$p" != "$p0" ] && break
        p=
        nap 0.02
    done
    dt=$(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 ))
    check "kill -9 after the binary was replaced: systemd started the new file within 2 s (pid ${p:-none}, ${dt} ms)" \
        test -n "$p" -a "$dt" -le 2000
    wait_active 10
    check "kill -9 after the binary was replaced: active again, /tmp exec denied" wait_exec /tmp/noexecd-x 126

    dpkg -L noexecd > /root/noexecd.files
    local out rc
    out=$(timeout 120 dpkg -r noexecd 2>&1); rc=$?
    check "dpkg -r noexecd" test "$rc" = 0
    [ "$rc" = 0 ] || echo "$out" | sed 's/^/   /'
    check "after dpkg -r the service is not active" bash -c '! systemctl is-active --quiet noexecd.service'
    check "after dpkg -r no noexecd process runs" bash -c '! pgrep -x noexecd >/dev/null'
    check "after dpkg -r exec from /tmp works again" test "$(try_exec /tmp/noexecd-x)" = "0 "
    check "after dpkg -r the conffile and the alert log remain" test -f "$CONF" -a -d /var/log/noexecd

    # --- dpkg -P: nothing of the package is left
    out=$(timeout 120 dpkg -P noexecd 2>&1); rc=$?
    check "dpkg -P noexecd" test "$rc" = 0
    [ "$rc" = 0 ] || echo "$out" | sed 's/^/   /'
    rm -f /tmp/noexecd-* /var/tmp/noexecd-* /dev/shm/noexecd-*   # this test's own files
    local left=() f
    while read -r f; do
        [ -n "$f" ] || continue
        if [ -L "$f" ] || [ -f "$f" ]; then left+=("$f"); fi
    done < /root/noexecd.files
    for f in /etc/noexecd /var/log/noexecd /run/noexecd /usr/share/doc/noexecd \
             /etc/systemd/system/sysinit.target.wants/noexecd.service /var/lib/systemd/deb-systemd-helper-enabled/noexecd.service; do
        [ -e "$f" ] || [ -L "$f" ] && left+=("$f")
    done
    while read -r f; do left+=("$f"); done < <(find / -xdev \( -path /proc -o -path /root \) -prune -o -name '*noexecd*' -print 2>/dev/null)
    check "after dpkg -P no file of the package is left (${left[*]:-none})" test "${#left[@]}" = 0
    check "after dpkg -P dpkg has no record of the package" bash -c '! dpkg -s noexecd >/dev/null 2>&1'

    # --- the .rpm's scriptlets under the same systemd (rpm is Debian's; --nodeps: no rpm database of the OS)
    if [ -f /root/noexecd.rpm ] && command -v rpm >/dev/null; then
        local RPM=(rpm --force-debian --nodeps)
        out=$(timeout 120 "${RPM[@]}" -i /root/noexecd.rpm 2>&1); rc=$?
        check "rpm -i noexecd.rpm" test "$rc" = 0
        [ "$rc" = 0 ] || echo "$out" | sed 's/^/   /'
        wait_active 15
        make_bin /tmp/noexecd-x
        check "rpm %post: the service is enabled and active" bash -c 'systemctl is-enabled --quiet noexecd.service && systemctl is-active --quiet noexecd.service'
        check "rpm install: /tmp exec is denied" wait_exec /tmp/noexecd-x 126
        cp "$CONF" /root/noexecd.toml.rpm
        unthrottled
        handover_under_loop "rpm -U (upgrade $VERSION_N -> $VERSION_NEXT)" "$VERSION_NEXT" "${RPM[@]}" -U /root/noexecd-next.rpm
        check "rpm upgrade: the hand-over marker is gone" test ! -e /run/noexecd.rpm-handover
        handover_under_loop "rpm -U --oldpackage (downgrade $VERSION_NEXT -> $VERSION_N)" "$VERSION_N" "${RPM[@]}" -U --oldpackage /root/noexecd.rpm
        check "rpm downgrade: rpm has $VERSION_N installed" test "$(rpm --force-debian -q --qf '%{VERSION}' noexecd 2>/dev/null)" = "$VERSION_N"
        # As shipped again: rpm -e saves a changed %config file as .rpmsave.
        cp /root/noexecd.toml.rpm "$CONF"
        rpm --force-debian -ql noexecd > /root/noexecd.rpmfiles 2>/dev/null
        out=$(timeout 120 "${RPM[@]}" -e noexecd 2>&1); rc=$?
        check "rpm -e noexecd" test "$rc" = 0
        [ "$rc" = 0 ] || echo "$out" | sed 's/^/   /'
        check "rpm %preun: the service is stopped and disabled" bash -c '! systemctl is-active --quiet noexecd.service && ! systemctl is-enabled --quiet noexecd.service 2>/dev/null'
        check "after rpm -e exec from /tmp works again" test "$(try_exec /tmp/noexecd-x)" = "0 "
        left=()
        while read -r f; do [ -e "$f" ] && [ ! -d "$f" ] && left+=("$f"); done < /root/noexecd.rpmfiles
        for f in /etc/noexecd /usr/share/doc/noexecd /etc/systemd/system/sysinit.target.wants/noexecd.service; do
            [ -e "$f" ] || [ -L "$f" ] && left+=("$f")
        done
        check "after rpm -e no file of the package is left but the alert log (${left[*]:-none})" test "${#left[@]}" = 0
        rm -f /tmp/noexecd-*
    else
        bad "rpm test skipped: /root/noexecd.rpm or the rpm tool missing in the container"
    fi
}

# SAFETY: the guard marks the filesystems holding /tmp, /var/tmp and /dev/shm. In this container each must be
# a tmpfs of the test's own (the root is a tmpfs copy, nspawn mounts /tmp and /dev/shm), never the host's disk.
for d in / /tmp /var/tmp /dev/shm; do
    if [ "$(stat -f -c %T "$d")" != tmpfs ]; then
        bad "SAFETY: $d is on $(stat -f -c %T "$d"), not a tmpfs of this test: refusing to install noexecd here"
        echo "inside $PHASE: $pass passed, $fail failed"
        exit 1
    fi
done

"$PHASE"
echo "inside $PHASE: $pass passed, $fail failed"
[ "$fail" = 0 ]
