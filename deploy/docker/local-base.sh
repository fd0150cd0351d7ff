#!/usr/bin/env bash
# A Debian bookworm base image made on this machine, for where no registry is reachable:
# debootstrap (minbase) into a temporary directory, imported as local/debian:bookworm.
# Needs root, debootstrap and a running Docker daemon. Idempotent: an existing image is kept.
set -euo pipefail
name="${1:-local/debian:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if docker image inspect "$name" >/dev/null 2>&1; then
  echo "$name exists"
  exit 0
fi
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
tar -C "$root" -c . | docker import - "$name" >/dev/null
echo "$name made"
