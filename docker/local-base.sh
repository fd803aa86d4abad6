#!/usr/bin/env bash
# Make the local base image that `make image-test` builds FROM, on a machine that can reach Debian's mirror but no
# container registry: Debian bookworm minbase with python3 and python3-venv, debootstrapped and `podman import`ed.
# Installs podman, buildah, runc and debootstrap first when they are missing (needs root, as on CI).
#
#   docker/local-base.sh [IMAGE]        (default localhost/vae-base:bookworm)
#
# Cached between runs on one machine: the image stays in podman's storage, and the root filesystem tarball in
# $BASE_CACHE (default /var/tmp/vae-service), which outlives fresh clones. REFRESH_BASE=1 rebuilds both.
set -euo pipefail

IMAGE=${1:-localhost/vae-base:bookworm}
CACHE=${BASE_CACHE:-/var/tmp/vae-service}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv
TARBALL=$CACHE/bookworm-minbase-${PACKAGES//,/-}.tar
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "$0")" && pwd)/podman/containers.conf}

step() { printf '[local-base %3ds] %s\n' "$SECONDS" "$*"; }

missing=()
for tool in podman buildah runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
    step "installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # netavark/aardvark-dns/iptables: rootful podman's network (-p port publishing); uidmap, slirp4netns and
    # fuse-overlayfs let the same tools run rootless.
    apt-get install -y -qq --no-install-recommends podman buildah runc debootstrap netavark aardvark-dns \
        iptables uidmap slirp4netns fuse-overlayfs \
        >/dev/null
fi

if [[ ${REFRESH_BASE:-0} == 1 ]]; then
    step "REFRESH_BASE=1: dropping $IMAGE and $TARBALL"
    podman rmi --force "$IMAGE" >/dev/null 2>&1 || true
    rm -f "$TARBALL"
fi

if podman image exists "$IMAGE"; then
    step "reusing $IMAGE"
    exit 0
fi

if [[ ! -s $TARBALL ]]; then
    mkdir -p "$CACHE"
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    step "debootstrap --variant=minbase --include=$PACKAGES bookworm from $MIRROR"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap.log"; exit 1; }
    # What a slim image leaves out too: package caches and indexes, documentation, translations.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log
    tar --numeric-owner -C "$rootfs" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    step "cached $TARBALL ($(du -h "$TARBALL" | cut -f1))"
fi

step "podman import $TARBALL as $IMAGE"
podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --quiet "$TARBALL" "$IMAGE" >/dev/null
step "done: $IMAGE"
