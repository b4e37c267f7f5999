#!/usr/bin/env bash
# Installs what the build, the tests and the packages need, when it is missing.
#
#   scripts/install-deps.sh [build] [test] [package]     (no argument: all three)
#
#   build    what `cargo build` needs besides Rust (`make build` runs this when it is missing):
#            protobuf-compiler (protoc: the containerd-client crate generates containerd's gRPC API at build
#            time; the tests' k8s-cri crate the Kubernetes CRI's). `test` and `package` include it.
#   test     what `make test` needs (`make test-deps`): rustfmt and clippy (rustup components); the tools the
#            privileged integration tests run (util-linux: unshare, nsenter, setpriv; mount: mount, umount,
#            losetup; e2fsprogs: mkfs.ext4; btrfs-progs: mkfs.btrfs, btrfs, and xfsprogs: mkfs.xfs, for the
#            root filesystem layouts of tests/it/layouts.rs; coreutils; bash, dash; dbus-daemon for the
#            desktop-notice test);
#            gcc and libc6-dev (the exec-load helper of the soak and load tests is linked statically); and
#            what the open guard's route tests run: file, python3, perl, ruby, php-cli, nodejs, jq, and
#            busybox-static (applets judged by name, tests/it/routes/interpreters.rs); what the
#            container discovery tests run (tests/it/containers.rs): podman, runc (podman's default crun refuses
#            a hybrid cgroup layout), containerd (with ctr, and its CRI plugin for the pods of tests/it/cri.rs),
#            busybox-static (their images); as root podman needs
#            no uidmap; tini (pid 1 of `make test-in-container`'s container); kubernetes-validate 1.37.0 (PyPI, with its bundled schemas; `make k8s-check`), by pip
#            into the venv target/k8s-venv when no kubernetes-validate of that version is on PATH (python3-venv).
#            Debian's docker.io (dockerd) too, but only with CI=true or NOEXECD_TEST_DOCKER=1: it
#            enables a boot-time daemon that changes the firewall, which a developer's machine may not want;
#            without it the docker test skips.
#   package  what `make deb rpm package-checks test-system` needs (`make package-deps`): lintian, rpm,
#            debootstrap, systemd-container (systemd-nspawn), systemd (systemd-analyze), dpkg-dev,
#            e2fsprogs, util-linux, file, gzip, debian-archive-keyring; cargo-deb 3.8.0 and
#            cargo-generate-rpm 0.21.1 (cargo install --locked); the x86_64-unknown-linux-musl Rust target.
#
# Idempotent, and silent when nothing is missing; otherwise one line per thing it installs. Debian and Ubuntu
# (apt-get): `apt-get update` runs only when a package must be installed, and installing packages needs root
# (anything else it installs goes into the caller's Rust toolchain). Every step is bounded by a timeout.
# Packages are installed without starting their services (containerd, docker): where the machine has no
# /usr/sbin/policy-rc.d, one that refuses every start is in place for the duration of the install.
# CI runs it on a fresh Debian 12 machine, as root.
set -euo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

# `make k8s-check`: kubernetes-validate, pinned, in a venv of its own when it is not on PATH.
K8S_VALIDATE_VERSION=1.37.0
K8S_VENV=$(cd "$(dirname "$0")/.." && pwd)/target/k8s-venv
k8s_validate_ok() {
    local v
    for v in "$K8S_VENV/bin/kubernetes-validate" kubernetes-validate; do
        [[ $("$v" --version 2>/dev/null) == *"$K8S_VALIDATE_VERSION"* ]] && return 0
    done
    return 1
}

say() { echo "install-deps: $*"; }
die() { echo "install-deps: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

want_build=0 want_test=0 want_package=0
(($#)) || set -- build test package
for arg in "$@"; do
    case $arg in
        build) want_build=1 ;;
        test) want_build=1 want_test=1 ;;
        package) want_build=1 want_package=1 ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "usage: $0 [build] [test] [package]   (no argument: all three)" >&2; exit 2 ;;
    esac
done

# --- What is missing ------------------------------------------------------------------------------------------
apt_missing=()
need_pkg() { # need_pkg DEBIAN_PACKAGE: add it to the list once
    [[ " ${apt_missing[*]} " == *" $1 "* ]] || apt_missing+=("$1")
}
need_cmd() { # need_cmd COMMAND DEBIAN_PACKAGE
    have "$1" || need_pkg "$2"
}

if ((want_build)); then
    need_cmd protoc protobuf-compiler
fi

if ((want_test)); then
    need_cmd unshare util-linux
    need_cmd nsenter util-linux
    need_cmd setpriv util-linux
    need_cmd mount mount
    need_cmd umount mount
    need_cmd losetup mount
    need_cmd mkfs.ext4 e2fsprogs
    need_cmd mkfs.btrfs btrfs-progs
    need_cmd btrfs btrfs-progs
    need_cmd mkfs.xfs xfsprogs
    need_cmd truncate coreutils
    need_cmd timeout coreutils
    need_cmd env coreutils
    need_cmd seq coreutils
    need_cmd bash bash
    need_cmd dash dash
    need_cmd dbus-daemon dbus-daemon
    # The open guard's route tests: a compiler for their shared object, interpreters, readers.
    need_cmd cc gcc
    need_cmd file file
    need_cmd python3 python3
    need_cmd perl perl-base
    need_cmd ruby ruby
    need_cmd php php-cli
    need_cmd node nodejs
    need_cmd jq jq
    # A tiny program is linked statically: glibc's static archive (gcc only recommends libc6-dev).
    compgen -G '/usr/lib/*/libc.a' >/dev/null || compgen -G '/usr/lib/libc.a' >/dev/null || need_pkg libc6-dev
    # The container runtimes the discovery tests start privately (see tests/it/containers.rs).
    need_cmd podman podman
    need_cmd runc runc
    need_cmd containerd containerd
    need_cmd ctr containerd
    need_cmd containerd-shim-runc-v2 containerd
    # `make test-in-container`: the container's first process, which reaps the tests' orphans.
    need_cmd tini tini
    # The images are a static busybox and its applets (the dynamic `busybox` package cannot run in them).
    dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need_pkg busybox-static
    # `make k8s-check`: a venv for kubernetes-validate (Debian's python refuses pip outside one).
    if ! k8s_validate_ok; then
        python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkg python3-venv
    fi
    if [[ ${CI:-} == true || ${NOEXECD_TEST_DOCKER:-} == 1 ]]; then
        have dockerd || need_pkg docker.io
    fi
fi

if ((want_package)); then
    need_cmd lintian lintian
    need_cmd rpm rpm
    need_cmd debootstrap debootstrap
    need_cmd systemd-nspawn systemd-container
    need_cmd systemd-analyze systemd
    need_cmd dpkg-shlibdeps dpkg-dev
    need_cmd mkfs.ext4 e2fsprogs
    need_cmd unshare util-linux
    need_cmd nsenter util-linux
    need_cmd file file
    need_cmd gzip gzip
    # packaging/test-system debootstraps a Debian 12 rootfs, checked against this keyring.
    [[ -e /usr/share/keyrings/debian-archive-keyring.gpg ]] || need_pkg debian-archive-keyring
fi

# --- System packages --------------------------------------------------------------------------------------------
if ((${#apt_missing[@]})); then
    [[ $(id -u) == 0 ]] || die "missing packages ${apt_missing[*]}; run as root (or: sudo apt-get install ${apt_missing[*]})"
    have apt-get || die "missing packages ${apt_missing[*]} and no apt-get; install them by hand"
    say "apt-get install ${apt_missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# scripts/install-deps.sh: no service starts while packages install\nexit 101\n' \
            >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    timeout 600 apt-get update -qq >/dev/null
    timeout 1200 apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

# --- Python tools -----------------------------------------------------------------------------------------------
if ((want_test)) && ! k8s_validate_ok; then
    say "pip install kubernetes-validate==$K8S_VALIDATE_VERSION into $K8S_VENV"
    timeout 300 python3 -m venv "$K8S_VENV"
    timeout 600 "$K8S_VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$K8S_VALIDATE_VERSION"
fi

# --- The Rust toolchain -----------------------------------------------------------------------------------------
if ((want_test)); then
    components=()
    cargo fmt --version >/dev/null 2>&1 || components+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || components+=(clippy)
    if ((${#components[@]})); then
        have rustup || die "${components[*]} missing and rustup not found; install them with your toolchain"
        say "rustup component add ${components[*]}"
        timeout 600 rustup component add "${components[@]}" >/dev/null
    fi
fi

if ((want_package)); then
    cargo_tool() { # cargo_tool SUBCOMMAND CRATE VERSION
        if ! cargo "$1" --version >/dev/null 2>&1; then
            say "cargo install --locked $2@$3"
            timeout 1500 cargo install --locked --quiet "$2" --version "$3"
        fi
    }
    cargo_tool deb cargo-deb 3.8.0
    cargo_tool generate-rpm cargo-generate-rpm 0.21.1

    # The static musl target. Not fatal when it cannot be added: packaging/build.sh then builds a glibc binary
    # and says so loudly.
    musl=x86_64-unknown-linux-musl
    if ! rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
        say "rustup target add $musl"
        timeout 600 rustup target add "$musl" >/dev/null ||
            echo "install-deps: warning: rustup target add $musl failed; the packages will hold a glibc binary" >&2
    fi
fi

# --- Kernel facilities the privileged tests use (reported, not installable) --------------------------------------
if ((want_test)) && [[ $(id -u) == 0 && ! -e /dev/loop-control ]]; then
    echo "install-deps: warning: /dev/loop-control is missing: the loop-mounted ext4 tests will fail (modprobe loop)" >&2
fi
exit 0
