#!/bin/bash
# Install what `make deb rpm package-checks test-system` needs, when missing. Idempotent; CI runs it on a
# fresh Debian 12 machine as root. Prints one line per tool it had to install.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have lintian            || need_apt+=(lintian)
have rpm                || need_apt+=(rpm)
have debootstrap        || need_apt+=(debootstrap)
have systemd-nspawn     || need_apt+=(systemd-container)
have systemd-analyze    || need_apt+=(systemd)
have dpkg-shlibdeps     || need_apt+=(dpkg-dev)
have mkfs.ext4          || need_apt+=(e2fsprogs)
have unshare            || need_apt+=(util-linux)
have nsenter            || need_apt+=(util-linux)
have file               || need_apt+=(file)
have gzip               || need_apt+=(gzip)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need_apt+=(debian-archive-keyring)

if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing ${need_apt[*]} and not root: install them (apt-get install ${need_apt[*]})" >&2
        exit 1
    fi
    echo "install-deps: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    timeout 1200 apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

cargo_tool() { # cargo_tool SUBCOMMAND CRATE VERSION
    if ! cargo "$1" --version >/dev/null 2>&1; then
        echo "install-deps: cargo install --locked $2@$3"
        timeout 1500 cargo install --locked --quiet "$2" --version "$3"
    fi
}
cargo_tool deb cargo-deb 3.8.0
cargo_tool generate-rpm cargo-generate-rpm 0.21.1

# The static musl target. A failure here is not fatal: packaging/build-bin.sh falls back to glibc and says so.
musl=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
    echo "install-deps: rustup target add $musl"
    timeout 600 rustup target add "$musl" || echo "install-deps: WARNING: rustup target add $musl failed; packages will use a glibc binary" >&2
fi
