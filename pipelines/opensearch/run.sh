#!/usr/bin/env bash
# PostgreSQL → walship → Kafka → OpenSearch, in one command, on a fresh Debian 12 machine:
# installs what it needs (scripts/install-deps.sh: Java 17, Maven, the Python clients, and
# OpenSearch's jars from Maven Central, cached), builds and installs walship into the
# PostgreSQL that pg_config names ($PG_CONFIG, else the one on PATH), and runs
# pipelines/opensearch/run.py: a throwaway PostgreSQL, the test Kafka broker, one OpenSearch
# node, a stream with its snapshot, the sink, two workload rounds, and the indexes next to
# PostgreSQL's tables, compared row by row and column by column.
#
#   pipelines/opensearch/run.sh [--format json|protobuf|both] [--rounds N]
#                               [--order kafka|adversarial|both] [--events N] [--quiet]
#
# WALSHIP_SKIP_DEPS=1 skips the installation steps, WALSHIP_SKIP_BUILD=1 the build
# (walship is then already installed), WALSHIP_BUILD_DIR picks the build directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
pipelines/common/prepare.sh opensearch
[[ ${WALSHIP_SKIP_DEPS:-0} == 1 ]] || python3 pipelines/opensearch/walship_opensearch.py fetch
exec python3 pipelines/opensearch/run.py "$@"
