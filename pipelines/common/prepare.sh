#!/usr/bin/env bash
# What every pipeline's run.sh does before its run.py, on a fresh Debian 12 machine:
# installs what walship and the pipeline need (scripts/install-deps.sh, then the
# pipeline's requirements.txt from PyPI), and builds and installs walship into the
# PostgreSQL that pg_config names ($PG_CONFIG, else the one on PATH).
#
#   pipelines/common/prepare.sh <pipeline>     # e.g. clickhouse: pipelines/clickhouse/requirements.txt
#
# WALSHIP_SKIP_DEPS=1 skips the installation steps, WALSHIP_SKIP_BUILD=1 the build
# (walship is then already installed), WALSHIP_BUILD_DIR picks the build directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
pipeline=${1:?usage: pipelines/common/prepare.sh <pipeline>}
requirements=pipelines/$pipeline/requirements.txt
[[ -f $requirements ]] || { echo "prepare.sh: no $requirements" >&2; exit 2; }

if [[ ${WALSHIP_SKIP_DEPS:-0} != 1 ]]; then
    scripts/install-deps.sh
    pip_install() { python3 -m pip install -q --disable-pip-version-check "$@"; }
    pip_install -r "$requirements" || pip_install --break-system-packages -r "$requirements"
fi
if [[ ${WALSHIP_SKIP_BUILD:-0} != 1 ]]; then
    BUILD=${WALSHIP_BUILD_DIR:-build}
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWALSHIP_TESTS=OFF \
        ${PG_CONFIG:+-DPG_CONFIG="$PG_CONFIG"} >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" >/dev/null
    SUDO=; [[ $(id -u) -eq 0 || -w $("${PG_CONFIG:-pg_config}" --pkglibdir) ]] || SUDO=sudo
    $SUDO cmake --install "$BUILD" >/dev/null
fi
