#!/usr/bin/env bash
# Installs what `make test` needs when it is missing: rustfmt and clippy (rustup components) and the system
# tools the privileged integration tests run (util-linux: unshare, nsenter, setpriv; mount: mount, losetup;
# e2fsprogs: mkfs.ext4; gcc and libc6-dev: the exec-load helper of the soak and load tests, linked statically),
# and what tests/it/routes.rs runs (gcc, file, python3, perl, ruby, php-cli, nodejs).
# Idempotent, and silent when everything is already there. Needs root only when something has to be installed.
set -euo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

# --- Rust components ---------------------------------------------------------------------------------------
missing_components=()
cargo fmt --version >/dev/null 2>&1 || missing_components+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || missing_components+=(clippy)
if ((${#missing_components[@]})); then
    if ! command -v rustup >/dev/null 2>&1; then
        echo "install-test-deps: ${missing_components[*]} missing and rustup not found; install them with your toolchain" >&2
        exit 1
    fi
    echo "install-test-deps: rustup component add ${missing_components[*]}"
    rustup component add "${missing_components[@]}"
fi

# --- System tools: command -> Debian package -----------------------------------------------------------------
declare -A package_of=(
    [unshare]=util-linux
    [nsenter]=util-linux
    [setpriv]=util-linux
    [mount]=mount
    [umount]=mount
    [losetup]=mount
    [mkfs.ext4]=e2fsprogs
    [truncate]=coreutils
    [timeout]=coreutils
    [env]=coreutils
    [seq]=coreutils
    [bash]=bash
    [dash]=dash
    [dbus-daemon]=dbus-daemon
    # tests/it/routes.rs: the open guard's routes (compiler for the test's shared object, interpreters, readers).
    [cc]=gcc
    [file]=file
    [python3]=python3
    [perl]=perl-base
    [ruby]=ruby
    [php]=php-cli
    [node]=nodejs
)
missing_packages=()
for cmd in "${!package_of[@]}"; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        pkg=${package_of[$cmd]}
        [[ " ${missing_packages[*]} " == *" $pkg "* ]] || missing_packages+=("$pkg")
    fi
done
# The tests link a tiny program statically: glibc's static archive (gcc only recommends libc6-dev).
if ! compgen -G '/usr/lib/*/libc.a' >/dev/null && ! compgen -G '/usr/lib/libc.a' >/dev/null; then
    missing_packages+=(libc6-dev)
fi
if ((${#missing_packages[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "install-test-deps: missing packages ${missing_packages[*]}; run as root (or: sudo apt-get install ${missing_packages[*]})" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-test-deps: missing packages ${missing_packages[*]} and no apt-get; install them by hand" >&2
        exit 1
    fi
    echo "install-test-deps: apt-get install ${missing_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing_packages[@]}" >/dev/null
fi

# --- Kernel facilities the privileged tests use (reported, not installable) ----------------------------------
if [[ $(id -u) == 0 && ! -e /dev/loop-control ]]; then
    echo "install-test-deps: warning: /dev/loop-control is missing: the loop-mounted ext4 tests will fail (modprobe loop)" >&2
fi
exit 0
