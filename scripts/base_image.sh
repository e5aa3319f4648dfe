#!/usr/bin/env bash
# The base image of docker/*.Dockerfile when no registry answers: Debian bookworm (minbase) with
# python3.11, python3-venv and ca-certificates, made with debootstrap from the Debian mirror and
# imported into podman. Cached: nothing is done when the image exists.
#
#   scripts/base_image.sh [IMAGE]        (default localhost/checkout-recs/python-base:3.11-bookworm)
#
# Needs root, debootstrap and podman. DEBIAN_MIRROR overrides the mirror (default deb.debian.org);
# the bookworm-updates and bookworm-security fixes are applied on top of the release.
set -euo pipefail
IMAGE=${1:-${LOCAL_BASE_IMAGE:-localhost/checkout-recs/python-base:3.11-bookworm}}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm

if podman image exists "$IMAGE"; then
  echo "[base-image] $IMAGE exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "[base-image] needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "[base-image] debootstrap needs root" >&2; exit 1; }

t0=$(date +%s)
root=$(mktemp -d /var/tmp/base-image.XXXXXX)
cleanup() { umount "$root/proc" 2>/dev/null || true; rm -rf "$root" "$root.log"; }
trap cleanup EXIT

echo "[base-image] debootstrap $SUITE (minbase) from $MIRROR"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$root" "$MIRROR" \
  >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"

cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
chroot "$root" /bin/sh -c 'export DEBIAN_FRONTEND=noninteractive;
  apt-get -q update && apt-get -q -y upgrade && apt-get clean' >"$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
umount "$root/proc"

# What a container never needs: package lists and caches, docs, man pages, message catalogues
# (33 MB; locale.alias stays), the host's resolv.conf.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*/ \
       "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
: >"$root/etc/resolv.conf"

python_version=$(chroot "$root" python3 -c 'import platform; print(platform.python_version())')
tar -C "$root" --numeric-owner -c . | podman import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --message "debian $SUITE minbase + python3 $python_version (scripts/base_image.sh)" - "$IMAGE" >/dev/null
echo "[base-image] $IMAGE: python $python_version, $(( $(date +%s) - t0 )) s"
