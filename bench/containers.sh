# Sourced by bench/inner.sh: noexecd guarding podman containers (runc, cgroupfs, no network), measured side
# by side with the same containers on an unguarded twin. Two private podman storages (`--root`, `--runroot`):
# `img/var/lib/containers/storage` on the marked image (its layers are where a container's execs raise their
# events) and `base/var/lib/containers/storage` on the twin nobody marks; one image imported into each from a
# tarball (a static busybox, the static execloop and hello, `/tmp/x`), as tests/it/container_enforce.rs does.
# noexecd reads podman's API (`podman system service` on the guarded storage) and holds a container policy
# blocking exec in `/tmp/` and `/var/tmp/` for `app=bench` containers, next to the host policy.
#
# Needs podman, runc, conmon and a static busybox; without them the phase is skipped (`container n/a`).
# Containers go below the cgroup `noexecd-bench-<pid>` (removed at the end); their storage goes with the bench's
# tmpfs.

CTR_IMAGE=localhost/noexecd-bench:1
CTR_CGROUP=noexecd-bench-$$
# The policy is namespaced, as KubeArmor's are: the container carries the pod namespace label the kubelet sets.
CTR_LABELS="--label app=bench --label io.kubernetes.pod.namespace=bench"
CTR_SERVICE_PID=

ctr_have_tools() {
    local t
    for t in podman runc conmon busybox tar; do command -v "$t" >/dev/null || { log "   no $t"; return 1; }; done
    file -L "$(command -v busybox)" 2>/dev/null | grep -q 'statically linked' || { log "   busybox is not static"; return 1; }
}

# ctr_podman SIDE ARGS...: podman on the storage of img (guarded) or base (unguarded). Not at the bench's
# real-time priority: a real-time task cannot join a new cgroup of the v1 cpu controller (it has no real-time
# budget there), so runc could not start the container; nice -19 instead, for podman and the container alike.
ctr_podman() {
    local side=$1; shift
    ctr_argv "$side"
    CONTAINERS_CONF=$W/run/containers.conf timeout 120 chrt -o 0 nice -n -19 "${CTR_ARGV[@]}" "$@"
}
# ctr_argv SIDE: podman and its storage options for SIDE, in CTR_ARGV.
ctr_argv() {
    CTR_ARGV=(podman --root "$W/$1/var/lib/containers/storage" --runroot "$W/run/podman-$1" --storage-driver overlay
        --runtime runc --cgroup-manager cgroupfs)
}

# ctr_run SIDE ARGS...: podman run --rm in the bench's cgroup, no network, labelled app=bench.
ctr_run() {
    local side=$1; shift
    ctr_podman "$side" run --rm --network none --cgroup-parent "/$CTR_CGROUP" $CTR_LABELS "$@"
}

ctr_prepare() {
    local tar=$W/run/ctr-img.tar r=$W/run/ctr-img
    mkdir -p "$r/bin" "$r/tmp" "$r/var/tmp" "$W/run/ctr-tmp"
    chmod 1777 "$r/tmp" "$r/var/tmp"
    cp "$(command -v busybox)" "$r/bin/busybox"
    for a in sh sleep true; do ln -s busybox "$r/bin/$a"; done
    install -m 0755 "$TOOLS/execloop-static" "$r/bin/execloop"
    install -m 0755 "$TOOLS/hello-static" "$r/bin/hello"
    install -m 0755 "$TOOLS/hello-static" "$r/tmp/x"
    tar -C "$r" -cf "$tar" .
    cat > "$W/run/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=10000:10000", "nproc=4096:4096"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
tmp_dir = "$W/run/ctr-tmp"
image_copy_tmp_dir = "$W/run/ctr-tmp"
CONF
    local side
    for side in img base; do
        mkdir -p "$W/$side/var/lib/containers/storage" "$W/run/podman-$side"
        ctr_podman "$side" import -q "$tar" "$CTR_IMAGE" >/dev/null
    done
    # The container policy (a drop-in, KubeArmor's own form) and the daemon's [containers] table.
    mkdir -p "$W/run/policy.d"
    cat > "$W/run/policy.d/ksp-bench.yaml" <<'YAML'
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-block-exec-inside-tmp
  namespace: bench
spec:
  selector:
    matchLabels:
      app: bench
  process:
    matchDirectories:
    - dir: /tmp/
      recursive: true
    - dir: /var/tmp/
      recursive: true
  action: Block
YAML
    write_config "$W/run/ctr.toml" ""
    mkdir -p "$W/run/none"
    cat >> "$W/run/ctr.toml" <<CFG

[containers]
podman_socket = "$W/run/podman.sock"
storage = "$W/img/var/lib/containers/storage"
docker_root = "$W/run/none/docker"
containerd_state = "$W/run/none/containerd-state"
containerd_root = "$W/run/none/containerd"
CFG
    # Started as a simple command, not through ctr_podman: `$!` is then timeout's own pid, which forwards the
    # TERM of ctr_cleanup to podman (a backgrounded function is a subshell, whose death would orphan podman and
    # leave the bench's mounts busy). Bounded by the bench's whole timeout: it serves the whole phase.
    ctr_argv img
    CONTAINERS_CONF=$W/run/containers.conf timeout -k 10 "${BENCH_TIMEOUT:-2400}" chrt -o 0 nice -n -19 \
        "${CTR_ARGV[@]}" system service --time=0 "unix://$W/run/podman.sock" > "$W/run/podman-service.log" 2>&1 &
    CTR_SERVICE_PID=$!
    echo "$CTR_SERVICE_PID" > "$BENCH_PIDS/podman-service"
    local i
    for i in $(seq 1 100); do [ -S "$W/run/podman.sock" ] && return 0; sleep 0.1; done
    log "podman's API service did not start:"; cat "$W/run/podman-service.log" >&2; return 1
}

ctr_cleanup() {
    # Called by ctr_phase (errexit on) and by inner.sh's exit trap (errexit off, its later steps may fail
    # harmlessly): leave errexit as the caller had it.
    local errexit=$-
    set +e
    local side
    for side in img base; do
        [ -d "$W/$side/var/lib/containers/storage" ] && ctr_podman "$side" rm -a -f -t 0 >/dev/null 2>&1
    done
    if [ -n "$CTR_SERVICE_PID" ]; then
        kill -TERM "$CTR_SERVICE_PID" 2>/dev/null
        timeout 10 tail --pid="$CTR_SERVICE_PID" -f /dev/null 2>/dev/null || kill -KILL "$CTR_SERVICE_PID" 2>/dev/null
        CTR_SERVICE_PID=
        rm -f "$BENCH_PIDS/podman-service"
    fi
    rm -f "$W/run/policy.d/ksp-bench.yaml"
    local cg
    for cg in /sys/fs/cgroup/*/"$CTR_CGROUP" /sys/fs/cgroup/"$CTR_CGROUP"; do
        [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    case $errexit in *e*) set -e ;; esac
    return 0
}

# ctr_num WHAT VALUE: VALUE, which must be a number (execloop's output), else the bench stops.
ctr_num() {
    [[ $2 =~ ^[0-9]+$ ]] || { log "containers: $1 gave no figure (${2:-nothing})"; exit 1; }
    echo "$2"
}

# ctr_time SIDE N: mean ns of `podman run --rm IMAGE true`, N times.
ctr_time() {
    local side=$1 n=$2 i t0 t1
    t0=$(date +%s%N)
    for i in $(seq 1 "$n"); do ctr_run "$side" "$CTR_IMAGE" /bin/true >/dev/null; done
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / n ))
}

ctr_phase() {
    log "== containers: podman (runc) on the guarded image and on its unguarded twin"
    if ! ctr_have_tools; then
        log "   skipped: podman, runc, conmon and a static busybox are needed (make test-deps)"
        rec container "n/a" 0 0 "podman not available"
        return 0
    fi
    ctr_prepare
    daemon_start "$W/run/ctr.toml"
    local r side v
    # Warm-up: the exec cache takes the image layer's programs; podman's own caches fill on both sides.
    for side in img base; do
        ctr_run "$side" "$CTR_IMAGE" /bin/execloop spawn /bin/hello 100 >/dev/null
    done
    # What the exec cache holds while a container runs (a container starting or stopping changes the mount
    # table, which flushes the cache: counted in a long-lived container, after its start has settled).
    local cached
    ctr_podman img run -d --name warm --network none --cgroup-parent "/$CTR_CGROUP" $CTR_LABELS "$CTR_IMAGE" \
        /bin/sleep 600 >/dev/null
    sleep 1
    ctr_podman img exec warm /bin/execloop spawn /bin/hello 10 >/dev/null
    sleep 0.5
    cached=$(cat /proc/"$DAEMON_PID"/fdinfo/* 2>/dev/null | grep -c '^fanotify ino:.*ignored_mask:40000' || true)
    ctr_podman img rm -f -t 0 warm >/dev/null
    rec container cached-inodes 0 "$cached" inodes
    log "   exec cache in a running container: $cached inode(s) (the image's execloop and hello expected)"
    # Allowed and denied execs are measured in two long-lived containers, one per side, started once: a
    # container's start or stop changes the mount table, which flushes the exec cache, so a fresh container per
    # run would measure the cache refilling; a running workload sees it full. A fresh container's first denial
    # also waits for the runtime's answer (which policies select it: podman's API, slowest while podman is still
    # starting that container), once per container: measured on its own, as the first denial of a fresh
    # container, instead of being spread over the loop's mean. The twin's container has the responders'
    # tmpfs bound in.
    local binds
    for side in img base; do
        binds=(); [ "$side" = base ] && binds=(-v "$W/resp:/resp" -v "$W/nresp:/nresp")
        ctr_podman "$side" run -d --name "steady-$side" --network none --cgroup-parent "/$CTR_CGROUP" $CTR_LABELS \
            "${binds[@]}" "$CTR_IMAGE" /bin/sleep 3600 >/dev/null
    done
    local k rr order
    for r in $(seq 1 "$CTR_ROUNDS"); do
        log "   round $r/$CTR_ROUNDS"
        # The previous round's containers came and went: let the daemon settle and the cache refill first.
        sleep 1
        for side in img base; do ctr_podman "$side" exec "steady-$side" /bin/execloop spawn /bin/hello 50 >/dev/null; done
        # Allowed: vfork + exec of a program of the image's layer, inside the container; three pairs per round,
        # the order alternating from pair to pair. Every pair is recorded: the ratio is the median over pairs.
        for k in 1 2 3; do
            rr=$(( (r - 1) * 3 + k ))
            for side in $( ((rr % 2)) && echo "base img" || echo "img base"); do
                v=$(ctr_num "allowed exec ($side)" "$(ctr_podman "$side" exec "steady-$side" /bin/execloop spawn /bin/hello "$N_SPAWN")")
                if [ "$side" = img ]; then rec container allowed-noexecd "$rr" "$v" ns; else rec container allowed-none "$rr" "$v" ns; fi
            done
        done
        # A container's whole life: podman run --rm IMAGE true.
        for side in $( ((r % 2)) && echo "base img" || echo "img base"); do
            v=$(ctr_time "$side" "$CTR_STARTS")
            if [ "$side" = img ]; then rec container start-noexecd "$r" "$v" ns; else rec container start-none "$r" "$v" ns; fi
        done
        # Denied inside a container: the image's /tmp/x under the container policy, against the minimal C
        # responder denying /resp/x and the naming one denying /nresp/x (their tmpfs bound into the twin's
        # container), order rotating; then the first denial of a fresh container, on each side.
        order=(img resp nresp)
        for k in 0 1 2; do
            case ${order[$(( (k + r) % 3 ))]} in
                img)
                    v=$(ctr_num "denied exec" "$(ctr_podman img exec steady-img /bin/execloop deny /tmp/x "$N_DENY")")
                    rec container denied-noexecd "$r" "$v" ns ;;
                resp)
                    v=$(ctr_num "denied exec (responder)" "$(ctr_podman base exec steady-base /bin/execloop deny /resp/x "$N_DENY")")
                    rec container denied-responder "$r" "$v" ns ;;
                nresp)
                    v=$(ctr_num "denied exec (naming responder)" "$(ctr_podman base exec steady-base /bin/execloop deny /nresp/x "$N_DENY")")
                    rec container denied-named "$r" "$v" ns ;;
            esac
        done
        for side in $( ((r % 2)) && echo "base img" || echo "img base"); do
            if [ "$side" = img ]; then
                v=$(ctr_num "first denial" "$(ctr_run img "$CTR_IMAGE" /bin/execloop deny /tmp/x 1)")
                rec container first-denial-noexecd "$r" "$v" ns
            else
                v=$(ctr_num "first denial (responder)" "$(ctr_run base -v "$W/resp:/resp" "$CTR_IMAGE" /bin/execloop deny /resp/x 1)")
                rec container first-denial-responder "$r" "$v" ns
            fi
        done
    done
    for side in img base; do ctr_podman "$side" rm -f -t 0 "steady-$side" >/dev/null; done
    # The daemon's memory per running container: N idle containers it knows (its list is refreshed every
    # 500 ms), VmRSS before and after.
    sleep 1
    local rss0 rss1 i
    rss0=$(proc_rss "$DAEMON_PID")
    for i in $(seq 1 "$CTR_IDLE"); do
        ctr_podman img run -d --network none --cgroup-parent "/$CTR_CGROUP" $CTR_LABELS "$CTR_IMAGE" \
            /bin/sleep 3600 >/dev/null
    done
    sleep 3
    rss1=$(proc_rss "$DAEMON_PID")
    rec container rss-before 0 "$rss0" KiB
    rec container rss-after 0 "$rss1" KiB
    rec container rss-per-container 0 $(( (rss1 - rss0) / CTR_IDLE )) "KiB per container"
    rec container idle-containers 0 "$CTR_IDLE" containers
    log "   daemon RSS $rss0 KiB, $rss1 KiB with $CTR_IDLE idle containers"
    ctr_podman img rm -a -f -t 0 >/dev/null
    daemon_stop
    ctr_cleanup
}
