#!/usr/bin/env bash
# walship decode benchmark: walship (protobuf, json) vs pgoutput, test_decoding, wal2json,
# decoderbufs on one throwaway PostgreSQL cluster.
#
#   bench/decode/run.sh [N] [extra options for decode_bench.py]
#
# N = number of changes (default 1000000). Extra options: --rounds 3, --tx-size 1000,
# --only walship,pgoutput, --no-results, --results-dir DIR,
# --profile bench_walship_pb [--perf-args "-g"] (perf record on the peeking backend).
# Writes bench/results/decode-<date>.md. Exits non-zero if any plugin FAILED.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PG_BINDIR="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"

n=1000000
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then n="$1"; shift; fi

workdir="$(mktemp -d /tmp/walship-decode-bench.XXXXXX)"
cleanup() {
  # the python driver stops the server itself; this is the safety net (kill -9 of python, etc.)
  local data
  for data in "$workdir"/walship-pg-*/data; do
    [[ -f "$data/postmaster.pid" ]] || continue
    if [[ $EUID -eq 0 ]]; then
      runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    else
      "$PG_BINDIR/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$workdir"
}
trap cleanup EXIT
child=
on_signal() {
  # forward to the driver so it stops the server itself, then clean up
  [[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null && wait "$child" 2>/dev/null
  exit 130
}
trap on_signal INT TERM HUP

# peers from Debian packages; install them when missing (as root), else say so
pkglibdir="$("$PG_BINDIR/pg_config" --pkglibdir)"
missing=()
[[ -f "$pkglibdir/wal2json.so" ]] || missing+=(postgresql-15-wal2json)
[[ -f "$pkglibdir/decoderbufs.so" ]] || missing+=(postgresql-15-decoderbufs)
if [[ " $* " == *" --profile "* ]] && ! command -v perf >/dev/null; then missing+=(linux-perf); fi
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $EUID -eq 0 ]]; then
    echo "installing ${missing[*]}" >&2
    apt-get install -y "${missing[@]}" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
  else
    echo "missing ${missing[*]} (apt-get install -y ${missing[*]}); those plugins will be FAILED" >&2
  fi
fi

cmd="bench/decode/run.sh $n${*:+ $*}"
python3 "$here/decode_bench.py" "$n" --bindir "$PG_BINDIR" --workdir "$workdir" --command "$cmd" "$@" &
child=$!
rc=0
wait "$child" || rc=$?
child=
exit "$rc"
