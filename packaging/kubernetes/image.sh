#!/bin/bash
# `make image`: the OCI image localhost/noexecd:<version> from the static binary packaging/build.sh built
# (run `packaging/build.sh bin` first; `make image` does), with podman, offline (FROM scratch), then
#   - checks it: `noexecd --version` inside the image prints the version and this commit;
#   - writes target/packaging/noexecd-image-<version>.tar (oci-archive), for `ctr -n k8s.io images import`
#     or `podman load` on nodes without a registry.
# IMAGE=name:tag overrides the name; PODMAN_ARGS adds podman options (--root DIR --runroot DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=target/packaging
t=$(cat "$OUT/triple" 2>/dev/null) || { echo "image.sh: run 'packaging/build.sh bin' first" >&2; exit 1; }
bin="target/$t/release/noexecd"
if file -L "$bin" | grep -q 'dynamically linked'; then
    echo "image.sh: $bin is dynamically linked; a FROM scratch image needs the static (musl) binary" >&2
    exit 1
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
commit=${NOEXECD_COMMIT:-$(git rev-parse --short=12 HEAD)}
image=${IMAGE:-localhost/noexecd:$version}
# shellcheck disable=SC2206
podman=(podman ${PODMAN_ARGS:-})
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
install -m 755 "$bin" "$ctx/noexecd"
cp packaging/kubernetes/Containerfile "$ctx/"
timeout 300 "${podman[@]}" build --quiet --pull=never --network none -f "$ctx/Containerfile" \
    --build-arg "VERSION=$version" --build-arg "COMMIT=$commit" -t "$image" "$ctx" >/dev/null
# crun refuses hybrid cgroup layouts; runc runs everywhere podman does.
got=$(timeout 120 "${podman[@]}" run --rm --runtime runc --network none --ulimit nofile=10000:10000 \
    --ulimit nproc=4096:4096 "$image" --version)
want="noexecd $version (commit $commit)"
[ "$got" = "$want" ] || { echo "image.sh: $image --version said '$got', expected '$want'" >&2; exit 1; }
rm -f "$OUT"/noexecd-image-*.tar
timeout 300 "${podman[@]}" save --quiet --format oci-archive -o "$OUT/noexecd-image-$version.tar" "$image"
echo "image.sh: $image ($got), $(du -h "$OUT/noexecd-image-$version.tar" | cut -f1) in $OUT/noexecd-image-$version.tar"
