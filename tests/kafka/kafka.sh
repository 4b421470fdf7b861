#!/usr/bin/env bash
# A real Apache Kafka broker for the tests: KRaft, one node that is both broker and
# controller, on free 127.0.0.1 ports, run by the machine's Java 17 from jars that
# Maven resolves from Maven Central (tests/kafka/pom.xml) and caches.
#
#   kafka.sh start <dir>    start a broker with its config, data and log in <dir>; prints
#                           the bootstrap address (127.0.0.1:PORT) on stdout and writes it
#                           to <dir>/bootstrap, the pid to <dir>/kafka.pid, the log to
#                           <dir>/kafka.log. If <dir> already holds a broker that was
#                           stopped, it is started again on the same ports with its data.
#   kafka.sh stop <dir>     SIGTERM, wait (30 s), then SIGKILL
#   kafka.sh kill <dir>     SIGKILL at once (a crash, for tests)
#   kafka.sh status <dir>   exit 0 and print the bootstrap address if it runs
#   kafka.sh fetch          only warm the cache (CI runs this first): resolve the jars, and
#                           train a class-data-sharing archive of the broker's classes
#                           that halves its start time
#   kafka.sh classpath      print the broker's classpath (resolving it first)
#
# Environment:
#   WALSHIP_CACHE                 cache root (default ~/.cache/walship); jars go to
#                                 $WALSHIP_CACHE/kafka-<version>/
#   WALSHIP_KAFKA_HEAP            heap options (default "-Xmx512m -Xms128m")
#   WALSHIP_KAFKA_JVM_OPTS        extra JVM options
#   WALSHIP_KAFKA_START_TIMEOUT   seconds to wait for the broker (default 90)
#   WALSHIP_KAFKA_PORT            fixed broker port instead of a free one
#   WALSHIP_KAFKA_CONFIG          extra server.properties lines (newline separated),
#                                 applied when <dir> is first set up; later lines win
#   WALSHIP_KAFKA_CDS             0: no class-data-sharing archive (default 1)
#   JAVA_HOME / JAVA              the Java to run (default: java on PATH)
set -euo pipefail
set +m  # no job control: `setsid java &` must exec java itself, so that $! is its pid

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"
LOG4J_CONF="$HERE/log4j2.properties"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
CACHE_ROOT="${WALSHIP_CACHE:-${HOME:-/root}/.cache/walship}"
JARS="$CACHE_ROOT/kafka-$KAFKA_VERSION"
JAVA="${JAVA:-${JAVA_HOME:+$JAVA_HOME/bin/}java}"
PYTHON="${PYTHON:-python3}"
START_TIMEOUT="${WALSHIP_KAFKA_START_TIMEOUT:-90}"

log() { echo "kafka.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# --- jars ----------------------------------------------------------------------
pom_stamp() { sha256sum "$POM" | cut -d' ' -f1; }

jars_ready() {
    [[ -f "$JARS/.complete" ]] && [[ "$(cat "$JARS/.complete")" == "$(pom_stamp)" ]] \
        && compgen -G "$JARS/kafka_2.13-*.jar" >/dev/null
}

fetch() {
    if jars_ready && { [[ "${WALSHIP_KAFKA_CDS:-1}" != 1 ]] || [[ -f "$(cds_archive)" ]]; }; then
        return 0
    fi
    mkdir -p "$CACHE_ROOT"
    # One warmer at a time (parallel test runs share the cache).
    exec 9>"$JARS.lock"
    if command -v flock >/dev/null; then flock 9; fi
    resolve
    train_cds
    exec 9>&-
}

resolve() {
    jars_ready && return 0
    command -v mvn >/dev/null || die "mvn not found (needed once to resolve Kafka $KAFKA_VERSION into $JARS)"
    local tmp="$JARS.tmp.$$" t0=$SECONDS
    rm -rf "$tmp"
    log "resolving Kafka $KAFKA_VERSION jars with Maven into $JARS (once; cached afterwards)"
    local args=(-q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime
                -DoutputDirectory="$tmp" -Dmdep.useRepositoryLayout=false)
    # Offline first: after one online run everything is in ~/.m2 and no network is needed.
    if ! mvn -o "${args[@]}" >"$tmp.mvn.log" 2>&1; then
        rm -rf "$tmp"
        if ! mvn "${args[@]}" >"$tmp.mvn.log" 2>&1; then
            cat "$tmp.mvn.log" >&2
            rm -rf "$tmp" "$tmp.mvn.log"
            die "Maven could not resolve Kafka $KAFKA_VERSION (see above)"
        fi
    fi
    rm -f "$tmp.mvn.log"
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "Maven ran but no kafka_2.13 jar in $tmp"
    pom_stamp >"$tmp/.complete"
    rm -rf "$JARS"
    mv "$tmp" "$JARS"
    log "resolved $(find "$JARS" -name '*.jar' | wc -l) jars in $((SECONDS - t0)) s"
}

classpath() {
    local cp="" j
    for j in "$JARS"/*.jar; do cp="${cp:+$cp:}$j"; done
    printf '%s' "$cp"
}

# --- process helpers -------------------------------------------------------------
# Is $1 a live broker process of directory $2 (and not a recycled pid)?
is_our_broker() {
    local pid="$1" dir="$2"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "kafka.Kafka $dir/server.properties"
}

# kill -0, but a zombie (an exited child of this very shell) counts as dead
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state="$(sed -n 's/^[^)]*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null || true)"
    [[ "$state" != Z ]]
}

read_pid() { if [[ -f "$1/kafka.pid" ]]; then cat "$1/kafka.pid"; fi; }

# --- start ---------------------------------------------------------------------
write_config() {
    local dir="$1"
    local ports broker_port controller_port
    ports="$("$PYTHON" - "${WALSHIP_KAFKA_PORT:-0}" <<'EOF'
import socket, sys
fixed = int(sys.argv[1])
socks, ports = [], []
for want in (fixed, 0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", want))
    socks.append(s)
    ports.append(s.getsockname()[1])
for s in socks:
    s.close()
print(*ports)
EOF
)" || die "could not pick free ports${WALSHIP_KAFKA_PORT:+ (is port $WALSHIP_KAFKA_PORT free?)}"
    read -r broker_port controller_port <<<"$ports"
    cat >"$dir/server.properties" <<EOF
# written by tests/kafka/kafka.sh for a throwaway test broker
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$broker_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$broker_port,CONTROLLER://127.0.0.1:$controller_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# after a crash (kafka.sh kill) the old registration blocks the new one until its
# session times out: 5 s instead of 9 s
broker.session.timeout.ms=5000
broker.heartbeat.interval.ms=500
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=-1
log.retention.bytes=-1
EOF
    if [[ -n "${WALSHIP_KAFKA_CONFIG:-}" ]]; then
        printf '# WALSHIP_KAFKA_CONFIG\n%s\n' "$WALSHIP_KAFKA_CONFIG" >>"$dir/server.properties"
    fi
}

random_cluster_id() {
    # Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding,
    # never starting with '-'.
    "$PYTHON" -c '
import base64, os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not s.startswith("-"):
        print(s); break'
}

# The class-data-sharing archive belongs to one set of jars and one JVM build.
cds_archive() {
    local java_bin
    java_bin="$(readlink -f "$(command -v "$JAVA")" 2>/dev/null || echo "$JAVA")"
    echo "$JARS/cds-$(printf '%s %s' "$java_bin" "$(stat -c %Y "$java_bin" 2>/dev/null)" | sha256sum | cut -c1-12).jsa"
}

# JVM=(java options -cp classpath); extra options as arguments
jvm_cmd() {
    # shellcheck disable=SC2206
    local heap=(${WALSHIP_KAFKA_HEAP:--Xmx512m -Xms128m}) extra=(${WALSHIP_KAFKA_JVM_OPTS:-})
    local cds=()
    if [[ "${WALSHIP_KAFKA_CDS:-1}" == 1 && -f "$(cds_archive)" ]]; then
        cds=(-XX:SharedArchiveFile="$(cds_archive)" -Xshare:auto)
    fi
    JVM=("$JAVA" "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
         -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -XX:-UsePerfData
         -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J_CONF"
         "${cds[@]}" "$@" "${extra[@]}" -cp "$(classpath)")
}

wait_ready() {
    # exit 0: ready; 1: timed out; 2: the process died
    "$PYTHON" - "$@" <<'EOF'
import os, socket, sys, time
pid, bootstrap, logfile, timeout = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
log_offset = int(sys.argv[5])  # only what this start wrote counts
host, port = bootstrap.rsplit(":", 1)
deadline = time.monotonic() + timeout

def alive():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours is dead too
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True

def started():
    try:
        with open(logfile, "rb") as f:
            f.seek(log_offset)
            return b"Kafka Server started" in f.read()
    except OSError:
        return False

def tcp_ok():
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False

try:
    from confluent_kafka.admin import AdminClient
except ImportError:
    AdminClient = None

def metadata_ok():
    if AdminClient is None:
        return True  # the log line and an open port are all we can check
    client = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000})
    try:
        md = client.list_topics(timeout=3)
        return len(md.brokers) >= 1
    except Exception:
        return False

while time.monotonic() < deadline:
    if not alive():
        sys.exit(2)
    if started() and tcp_ok() and metadata_ok():
        sys.exit(0)
    time.sleep(0.1)
sys.exit(1)
EOF
}

# Sets up <dir> on first use: config on free ports, formatted KRaft storage.
setup_dir() {
    local dir="$1"
    [[ -f "$dir/data/meta.properties" ]] && return 0
    rm -rf "$dir/data"
    write_config "$dir"
    local cluster_id
    cluster_id="$(random_cluster_id)"
    JVM=()
    jvm_cmd
    if ! "${JVM[@]}" kafka.tools.StorageTool format --cluster-id "$cluster_id" \
            --config "$dir/server.properties" --standalone >"$dir/format.log" 2>&1; then
        cat "$dir/format.log" >&2
        die "kafka-storage format failed in $dir"
    fi
}

bootstrap_of() {
    local port
    port="$(sed -n 's/^listeners=PLAINTEXT:\/\/127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$1/server.properties")"
    [[ -n "$port" ]] || die "no PLAINTEXT listener in $1/server.properties"
    echo "127.0.0.1:$port"
}

# launch <dir> [jvm options...]: starts the broker and waits until it serves metadata.
# Sets PID. On failure prints the log tail, kills the process and exits non-zero.
launch() {
    local dir="$1"
    shift
    local bootstrap
    bootstrap="$(bootstrap_of "$dir")"
    JVM=()
    jvm_cmd "$@"
    echo "===== kafka.sh start $(date -u +%FT%TZ) Kafka $KAFKA_VERSION on $bootstrap" >>"$dir/kafka.log"
    local log_offset
    log_offset="$(stat -c %s "$dir/kafka.log")"
    # Own session, stdin from /dev/null, output to the log: the broker outlives this
    # script and holds no pipe of whoever called it.
    setsid "${JVM[@]}" kafka.Kafka "$dir/server.properties" </dev/null >>"$dir/kafka.log" 2>&1 &
    PID=$!
    echo "$PID" >"$dir/kafka.pid"
    local rc=0
    wait_ready "$PID" "$bootstrap" "$dir/kafka.log" "$START_TIMEOUT" "$log_offset" || rc=$?
    if [[ $rc -ne 0 ]]; then
        log "ERROR: Kafka $KAFKA_VERSION did not come up on $bootstrap:" \
            "$([[ $rc -eq 2 ]] && echo "the broker process $PID exited" || echo "not ready after ${START_TIMEOUT}s")"
        log "----- last lines of $dir/kafka.log -----"
        tail -n 60 "$dir/kafka.log" >&2 || true
        log "----- (config: $dir/server.properties)"
        kill -KILL "$PID" 2>/dev/null || true
        rm -f "$dir/kafka.pid"
        exit 1
    fi
    echo "$bootstrap" >"$dir/bootstrap"
}

# Once per set of jars and JVM: run a broker with -XX:ArchiveClassesAtExit so that later
# JVMs map its classes instead of loading them (about 2x faster broker start). Best effort.
train_cds() {
    [[ "${WALSHIP_KAFKA_CDS:-1}" == 1 ]] || return 0
    local jsa
    jsa="$(cds_archive)"
    [[ -f "$jsa" ]] && return 0
    local t0=$SECONDS tmpd
    tmpd="$(mktemp -d "${TMPDIR:-/tmp}/walship-kafka-cds.XXXXXX")"
    log "training a class-data-sharing archive of the broker (once per jars and JVM)"
    (
        unset WALSHIP_KAFKA_PORT WALSHIP_KAFKA_CONFIG
        setup_dir "$tmpd"
        launch "$tmpd" -XX:ArchiveClassesAtExit="$tmpd/kafka.jsa"
        stop "$tmpd" TERM
    ) >/dev/null 2>"$tmpd/train.err" || true
    if [[ -s "$tmpd/kafka.jsa" ]] &&
        "$JAVA" -Xshare:on -XX:SharedArchiveFile="$tmpd/kafka.jsa" -cp "$(classpath)" -version >/dev/null 2>&1; then
        mv "$tmpd/kafka.jsa" "$jsa"
        log "archive $jsa ready in $((SECONDS - t0)) s"
    else
        log "WARNING: no class-data-sharing archive (brokers start slower); details:"
        tail -n 20 "$tmpd/train.err" >&2 || true
    fi
    rm -rf "$tmpd"
}

start() {
    local dir="$1"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd -P)"
    local pid
    pid="$(read_pid "$dir")"
    if is_our_broker "$pid" "$dir"; then
        die "a broker already runs in $dir (pid $pid, $(cat "$dir/bootstrap" 2>/dev/null))"
    fi
    command -v "$JAVA" >/dev/null || die "java not found (set JAVA_HOME or JAVA)"
    fetch
    local t0
    t0="$(date +%s.%N)"
    setup_dir "$dir"
    local t1
    t1="$(date +%s.%N)"
    PID=""
    launch "$dir"
    log "Kafka $KAFKA_VERSION ready on $(cat "$dir/bootstrap") (pid $PID) in" \
        "$(awk -v a="$t0" -v b="$t1" -v c="$(date +%s.%N)" 'BEGIN{printf "%.1f s (format %.1f s, broker %.1f s)", c-a, b-a, c-b}');" \
        "log $dir/kafka.log"
    cat "$dir/bootstrap"
}

# --- stop ----------------------------------------------------------------------
stop() {
    local dir="$1" how="${2:-TERM}"
    [[ -d "$dir" ]] || die "no such directory: $dir"
    dir="$(cd "$dir" && pwd -P)"
    local pid i
    pid="$(read_pid "$dir")"
    if [[ -z "$pid" ]]; then
        log "no broker pid in $dir (not running)"
        return 0
    fi
    if ! is_our_broker "$pid" "$dir"; then
        log "broker $pid of $dir is not running"
        rm -f "$dir/kafka.pid"
        return 0
    fi
    if [[ "$how" == KILL ]]; then
        kill -KILL "$pid" 2>/dev/null || true
    else
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 300; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            log "broker $pid still runs 30 s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    rm -f "$dir/kafka.pid"
}

status() {
    local dir="$1"
    [[ -d "$dir" ]] || exit 1
    dir="$(cd "$dir" && pwd -P)"
    local pid
    pid="$(read_pid "$dir")"
    if is_our_broker "$pid" "$dir"; then
        cat "$dir/bootstrap" 2>/dev/null || true
        exit 0
    fi
    exit 1
}

cmd="${1:-}"
case "$cmd" in
    start)  [[ $# -eq 2 ]] || usage; start "$2" ;;
    stop)   [[ $# -eq 2 ]] || usage; stop "$2" TERM ;;
    kill)   [[ $# -eq 2 ]] || usage; stop "$2" KILL ;;
    status) [[ $# -eq 2 ]] || usage; status "$2" ;;
    fetch)  fetch; log "Kafka $KAFKA_VERSION jars in $JARS" ;;
    classpath) fetch; classpath; echo ;;
    *) usage ;;
esac
