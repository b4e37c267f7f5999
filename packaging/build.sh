#!/bin/bash
# Build the packaged binary and the .deb / .rpm.   Usage: packaging/build.sh bin|deb|rpm|next
#   bin: static binary (x86_64-unknown-linux-musl; glibc fallback, said loudly) + man pages and completions
#        generated from it into target/packaging/.
#   deb: target/packaging/noexecd_<ver>-1_amd64.deb (cargo-deb, metadata in Cargo.toml)
#   rpm: target/packaging/noexecd-<ver>-1.x86_64.rpm (cargo-generate-rpm, metadata in Cargo.toml)
#   next: target/packaging/next/: a second version of the same build for the upgrade test (test-system):
#        the binary with "+systest" written into its version slot (src/daemon/version.rs), packaged as
#        <ver>+systest-1 (.deb and .rpm). Seconds: nothing is compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/packaging
MUSL=x86_64-unknown-linux-musl
GNU=x86_64-unknown-linux-gnu
mkdir -p "$OUT"

triple() { cat "$OUT/triple" 2>/dev/null || { echo "build.sh: run 'packaging/build.sh bin' first" >&2; exit 1; }; }

build_bin() {
    local t=${NOEXECD_PKG_TARGET:-$MUSL}   # NOEXECD_PKG_TARGET=x86_64-unknown-linux-gnu forces the fallback
    if [ "$t" = "$MUSL" ] && ! rustup target list --installed 2>/dev/null | grep -qx "$MUSL"; then
        echo "build.sh: WARNING: Rust target $MUSL is not installed (rustup target add $MUSL failed);" >&2
        echo "build.sh: WARNING: FALLING BACK TO A GLIBC BINARY: the packages then need glibc >= the build host's." >&2
        t=$GNU
    fi
    local bin="target/$t/release/noexecd"
    if [ -n "${NOEXECD_PKG_PREBUILT:-}" ]; then
        # Development hook: package a binary built elsewhere (same CLI contract) instead of building one.
        echo "build.sh: NOTE: packaging prebuilt $NOEXECD_PKG_PREBUILT instead of building (NOEXECD_PKG_PREBUILT)" >&2
        mkdir -p "target/$t/release"
        install -m 755 "$NOEXECD_PKG_PREBUILT" "$bin"
    else
        # Stripped, in a target dir of its own (target/<triple>/release), so target/release (what `make build`
        # writes and the integration tests run) is untouched.
        CARGO_PROFILE_RELEASE_STRIP=symbols timeout 1800 cargo build --release --locked --target "$t"
    fi
    [ -x "$bin" ] || { echo "build.sh: $bin was not built" >&2; exit 1; }
    if [ "$t" = "$MUSL" ] && file -L "$bin" | grep -q 'dynamically linked'; then
        echo "build.sh: $bin is dynamically linked, expected static" >&2; exit 1
    fi
    echo "$t" > "$OUT/triple"
    rm -rf "$OUT/man" "$OUT/completions" "$OUT/rpm-man"
    mkdir -p "$OUT/man" "$OUT/completions" "$OUT/rpm-man"
    "$bin" generate man --out-dir "$OUT/man"
    "$bin" generate completions --out-dir "$OUT/completions"
    # bash-completion looks the file up by the command's name: ship it as `noexecd`.
    if [ ! -e "$OUT/completions/noexecd" ] && [ -e "$OUT/completions/noexecd.bash" ]; then
        mv "$OUT/completions/noexecd.bash" "$OUT/completions/noexecd"
    fi
    cp packaging/noexecd.toml.5 "$OUT/man/"
    for f in "$OUT"/man/*; do gzip -9n < "$f" > "$OUT/rpm-man/$(basename "$f").gz"; done
    local missing=0
    for f in man/noexecd.8 man/noexecd.toml.5 completions/noexecd completions/_noexecd completions/noexecd.fish; do
        [ -s "$OUT/$f" ] || { echo "build.sh: '$bin generate' did not write $OUT/$f" >&2; missing=1; }
    done
    [ "$missing" = 0 ] || exit 1
    echo "build.sh: built $bin ($t); man pages: $(cd "$OUT/man" && echo *)"
}

need_readme() {
    [ -f README.md ] || { echo "build.sh: README.md is missing: the packages ship it as /usr/share/doc/noexecd/README.md" >&2; exit 1; }
}

case "${1:-}" in
    bin) build_bin ;;
    deb)
        need_readme
        t=$(triple)
        rm -f "$OUT"/noexecd_*.deb
        timeout 600 cargo deb --no-build --locked --target "$t" --output "$OUT/"
        ls -l "$OUT"/noexecd_*.deb ;;
    rpm)
        need_readme
        t=$(triple)
        rm -f "$OUT"/noexecd-*.rpm
        # gzip payload: rpm before 4.14 (RHEL 7) cannot read zstd. A static binary requires nothing.
        autoreq=auto; [ "$t" = "$MUSL" ] && autoreq=no
        timeout 600 cargo generate-rpm --target "$t" --payload-compress gzip --auto-req "$autoreq" --output "$OUT/"
        ls -l "$OUT"/noexecd-*.rpm ;;
    next)
        need_readme
        t=$(triple)
        bin="target/$t/release/noexecd"
        ver=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
        suffix=+systest
        rm -rf "$OUT/next"
        mkdir -p "$OUT/next"
        cp -p "$bin" "$OUT/next/noexecd.built"
        cp -p "$bin" "$OUT/next/noexecd"
        # The slot: the marker, then 24 NUL bytes; it must occur exactly once.
        SUFFIX=$suffix perl -0777 -i -pe '
            my $n = () = /NOEXECD-VERSION-SUFFIX:\0{24}/g;
            die "build.sh: the version slot occurs $n times in the binary, expected once\n" unless $n == 1;
            s/NOEXECD-VERSION-SUFFIX:\0{24}/"NOEXECD-VERSION-SUFFIX:" . $ENV{SUFFIX} . ("\0" x (24 - length $ENV{SUFFIX}))/e' "$OUT/next/noexecd"
        got=$("$OUT/next/noexecd" version)
        case "$got" in "noexecd $ver$suffix "*) ;; *) echo "build.sh: the next binary says '$got', expected noexecd $ver$suffix" >&2; exit 1 ;; esac
        # The packagers take the binary from target/<triple>/release: swapped in for them, then put back.
        trap 'cp -p "$OUT/next/noexecd.built" "$bin"' EXIT
        install -m 755 "$OUT/next/noexecd" "$bin"
        timeout 600 cargo deb --no-build --locked --target "$t" --deb-version "$ver$suffix-1" --output "$OUT/next/"
        autoreq=auto; [ "$t" = "$MUSL" ] && autoreq=no
        timeout 600 cargo generate-rpm --target "$t" --payload-compress gzip --auto-req "$autoreq" \
            -s "version = \"$ver$suffix\"" --output "$OUT/next/"
        cp -p "$OUT/next/noexecd.built" "$bin"
        trap - EXIT
        rm -f "$OUT/next/noexecd.built"
        ls -l "$OUT"/next/*.deb "$OUT"/next/*.rpm ;;
    *) echo "usage: $0 bin|deb|rpm|next" >&2; exit 2 ;;
esac
