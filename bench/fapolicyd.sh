# Sourced by bench/inner.sh. fapolicyd 1.1.7 (Debian's package) run inside a chroot of the loop-mounted
# image: its /proc/mounts then lists only the image and what is mounted below it (proc, dev), so with
# watch_fs = ext4 it marks the image's mount and nothing else (FAN_MARK_MOUNT; allow_filesystem_mark = 0).
# Its configuration lives in the image's /etc/fapolicyd: trust = file, integrity = none, and rules that say
# what noexecd's default policy says: no execute in /tmp, /var/tmp, /dev/shm; everything else allowed.

FAPOLICYD_PID=

# copy_with_libs ROOT FILE...: FILE and every library ldd names, at the same paths under ROOT.
copy_with_libs() {
    local root=$1; shift
    local f lib
    for f in "$@"; do
        install -D -m 0755 "$(readlink -f "$f")" "$root$f"
        for lib in $(ldd "$f" | grep -o '/[^ ]*'); do
            [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
        done
    done
}

fapolicyd_prepare() {
    local root=$1
    copy_with_libs "$root" /usr/sbin/fapolicyd
    install -D -m 0644 /usr/share/fapolicyd/fapolicyd-magic.mgc "$root/usr/share/fapolicyd/fapolicyd-magic.mgc"
    install -D -m 0644 "$(readlink -f /usr/share/misc/magic.mgc)" "$root/usr/share/misc/magic.mgc"
    mkdir -p "$root/etc/fapolicyd/trust.d" "$root/etc/fapolicyd/rules.d" "$root/var/lib/fapolicyd" \
        "$root/run/fapolicyd" "$root/proc" "$root/dev" "$root/var/tmp" "$root/dev/shm"
    : > "$root/etc/fapolicyd/fapolicyd.trust"
    cat > "$root/etc/fapolicyd/fapolicyd.conf" <<'CONF'
permissive = 0
nice_val = 0
q_size = 640
uid = 0
gid = 0
do_stat_report = 0
detailed_report = 0
db_max_size = 50
subj_cache_size = 1549
obj_cache_size = 8191
watch_fs = ext4
trust = file
integrity = none
syslog_format = rule,dec,perm,auid,pid,exe,:,path,ftype,trust
rpm_sha256_only = 0
allow_filesystem_mark = 0
CONF
    cat > "$root/etc/fapolicyd/rules.d/50-bench.rules" <<'RULES'
deny_audit perm=execute all : dir=/tmp/
deny_audit perm=execute all : dir=/var/tmp/
deny_audit perm=execute all : dir=/dev/shm/
allow perm=any all : all
RULES
    cp "$root/etc/fapolicyd/rules.d/50-bench.rules" "$root/etc/fapolicyd/compiled.rules"
    cp /etc/passwd /etc/group "$root/etc/"
}

# fapolicyd_start ROOT LOG: starts it in the chroot; sets FAPOLICYD_PID; waits until its marks are placed.
fapolicyd_start() {
    local root=$1 log=$2
    mount -t proc proc "$root/proc"
    mount --bind /dev "$root/dev"
    # Safety: inside the chroot, only these mounts are visible; the ext4 one is the image.
    local seen
    seen=$(awk -v r="$root" '$2 == r || index($2, r "/") == 1' /proc/self/mounts)
    echo "fapolicyd will see these mounts:" >&2
    echo "$seen" | sed 's/^/    /' >&2
    if [ "$(echo "$seen" | awk '$3 == "ext4"' | wc -l)" != 1 ] || ! echo "$seen" | awk -v r="$root" '$3 == "ext4" && $2 == r' | grep -q .; then
        echo "SAFETY: fapolicyd would see an ext4 mount other than the image; not starting it" >&2
        return 1
    fi
    # Foreground (--debug-deny) so the bench owns its pid; a daemonized fapolicyd would escape it. It prints
    # one line per denial, sent to $log (a tmpfs file).
    setpriv --pdeathsig KILL -- chroot "$root" /usr/sbin/fapolicyd --debug-deny >"$log" 2>&1 &
    FAPOLICYD_PID=$!
    echo "$FAPOLICYD_PID" > "$BENCH_PIDS/fapolicyd"
    # Ready when the group holds its mark (fdinfo lists a mnt_id line).
    local i
    for i in $(seq 1 100); do
        if grep -qs '^fanotify mnt_id' /proc/"$FAPOLICYD_PID"/fdinfo/* 2>/dev/null; then
            sleep 0.5
            return 0
        fi
        kill -0 "$FAPOLICYD_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "fapolicyd did not come up:" >&2
    cat "$log" >&2
    return 1
}

fapolicyd_stop() {
    local root=$1
    if [ -n "$FAPOLICYD_PID" ] && kill -0 "$FAPOLICYD_PID" 2>/dev/null; then
        kill -TERM "$FAPOLICYD_PID"
        timeout 10 tail --pid="$FAPOLICYD_PID" -f /dev/null || kill -KILL "$FAPOLICYD_PID" 2>/dev/null || true
    fi
    FAPOLICYD_PID=
    rm -f "$BENCH_PIDS/fapolicyd"
    umount "$root/dev" 2>/dev/null || true
    umount "$root/proc" 2>/dev/null || true
}
