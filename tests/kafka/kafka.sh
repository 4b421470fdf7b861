#!/usr/bin/env bash
# A real Apache Kafka broker for the tests (KRaft, on free 127.0.0.1 ports, from jars that
# Maven resolves from Maven Central and caches), or a cluster of N such nodes:
#
#   kafka.sh start|stop|kill|status <dir>     one broker (or node <dir>/nodeK of a cluster)
#   kafka.sh fetch | classpath                warm the jar cache | print the classpath
#   kafka.sh cluster-start <dir> [N]          N (default 3) nodes in <dir>/node1..N
#   kafka.sh cluster-stop|cluster-kill|cluster-status <dir>
#
# The commands are the test harness's (tests/lib/walship_testlib/kafkactl.py, which
# documents them and their environment); run kafka.sh without arguments for the details.
set -euo pipefail
lib="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib"
PYTHONPATH="$lib${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" -m walship_testlib kafka "$@"
