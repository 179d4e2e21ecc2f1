#!/usr/bin/env bash
# Installs the Debian packages modrwkv needs to build and test (as root, or through sudo when run by a user).
# --with-torch also installs python3-torch (used by tests that check interop with PyTorch and by
# tests/reference/*.py, which regenerate the committed reference vectors).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS="build-essential cmake pkg-config libopenblas-openmp-dev libzip-dev libyaml-dev libjansson-dev zlib1g-dev
      libhdf5-dev libarchive-dev libsndfile1-dev libsamplerate0-dev libpng-dev libturbojpeg0-dev libespeak-ng-dev
      espeak-ng-data libssl-dev openmpi-bin libopenmpi-dev clang libclang-rt-14-dev libomp-dev
      python3 python3-numpy python3-h5py bsdutils"
if [ "${1:-}" = "--with-torch" ]; then PKGS="$PKGS python3-torch"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $PKGS
