#!/usr/bin/env bash
# Shared setup: system packages (when root) and a virtual environment in .venv.
#   scripts/setup.sh            runtime only
#   scripts/setup.sh test       runtime + test tools, oracles and cross toolchains
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-runtime}

apt_packages="python3 python3-venv python3-pip"
if [ "$what" = test ]; then
  # The cross compilers and QEMU of the emulated targets (see docs and ../shared/notes/emulation.md).
  apt_packages="$apt_packages gcc libc6-dev gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
    qemu-system-misc gcc-xtensa-lx106 picolibc-xtensa-lx106-elf gcc-riscv64-unknown-elf
    picolibc-riscv64-unknown-elf clang-format"
fi
missing=""
for p in $apt_packages; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null
  else
    echo "setup: not root, so not installing Debian packages:$missing" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "$what" = test ]; then
  .venv/bin/pip install -q -e '.[test]'
else
  .venv/bin/pip install -q -e .
fi
