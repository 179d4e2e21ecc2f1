#!/usr/bin/env bash
# Installs the Debian packages modrwkv needs to build and test (as root, or through sudo when run by a user).
# python3-torch is for the tests that check interop with PyTorch (torch.load of exported .pth files) and
# for tests/reference/*.py and bench/torch_rwkv7_cpu.py; python3-h5py for the h5py interop tests; slurm-wlm
# (slurmctld, slurmd, the client and the PMIx plugin) and munge for tests/slurm/slurm_cluster_check.sh, which
# starts a real Slurm cluster on localhost (the packages' own services are not needed).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS="build-essential cmake pkg-config libopenblas-openmp-dev libzip-dev libyaml-dev libjansson-dev zlib1g-dev
      libhdf5-dev libarchive-dev libsndfile1-dev libsamplerate0-dev libpng-dev libturbojpeg0-dev libespeak-ng-dev
      espeak-ng-data libssl-dev libfftw3-dev openmpi-bin libopenmpi-dev clang libclang-rt-14-dev libomp-dev
      python3 python3-numpy python3-h5py python3-torch bsdutils gnuplot-nox chromium
      slurm-wlm slurm-wlm-basic-plugins slurm-client munge libpmix2"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $PKGS
