#!/usr/bin/env bash
# Installs every Debian package twoOStwo needs and builds the guest images.
# Idempotent: a second run installs nothing new and rebuilds no image whose
# inputs did not change. Needs root (re-runs itself through sudo if present).
#
#   scripts/setup.sh [--no-images]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_images=1
for arg in "$@"; do
  case "$arg" in
    --no-images) build_images=0 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

if [[ $EUID -ne 0 ]]; then
  if command -v sudo >/dev/null; then exec sudo -- "$0" "$@"; fi
  echo "setup.sh: needs root to install Debian packages (run it as root, or install sudo)" >&2
  exit 1
fi

# Host packages: toolchain, libraries (DESIGN.md "Conventions"), guest-image
# tools, and the reference tools the tests and benchmarks compare against.
packages=(
  build-essential cmake ninja-build pkg-config binutils gcc-multilib
  libzydis-dev libxbyak-dev libcli11-dev nlohmann-json3-dev libyaml-cpp-dev libfmt-dev libspdlog-dev
  libboost-dev libpcap-dev libgtest-dev libgmock-dev libbenchmark-dev liblzma-dev
  cpio xz-utils python3 python3-jsonschema python3-yaml
  qemu-system-x86 tshark tcpdump vde2 libvdeplug-dev iproute2 iputils-ping
)

echo "setup: enabling the i386 architecture (32-bit guest packages)"
if ! dpkg --print-foreign-architectures | grep -qx i386; then
  dpkg --add-architecture i386
  need_update=1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
have_i386_lists=0
apt-cache policy busybox-static:i386 2>/dev/null | grep -q 'Candidate: [0-9]' && have_i386_lists=1
if [[ ${need_update:-0} == 1 || ${#missing[@]} -gt 0 || $have_i386_lists == 0 ]]; then
  echo "setup: apt-get update"
  # A mirror caught mid-sync makes one index fail; the others are still usable.
  apt-get update -q || echo "setup: warning: apt-get update reported errors; continuing with the lists it got" >&2
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#packages[@]} host packages already installed"
fi

if [[ $build_images == 1 ]]; then
  echo "setup: building guest images into build/guest"
  bash "$here/guest/build-images.sh" "$here/build/guest" all
fi
echo "setup: done"
