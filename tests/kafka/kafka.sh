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
# A cluster, for fault tests (kill the leader of a partition, lose the quorum, ...):
#
#   kafka.sh cluster-start <dir> [N]
#                           N (default 3) KRaft nodes in <dir>/node1..N, each a broker
#                           and a controller (a static quorum of N voters), on free
#                           127.0.0.1 ports; replication factor min(N,3) for new and
#                           internal topics, min.insync.replicas min(N,2), no unclean
#                           leader election. Starts every node that does not run, all at
#                           once, waits until each serves metadata and the metadata lists
#                           N brokers, then prints the bootstrap list 127.0.0.1:P1,...
#                           on stdout and writes it to <dir>/bootstrap. If <dir> holds a
#                           stopped (or partly stopped) cluster, its nodes start again on
#                           their ports and data.
#   kafka.sh cluster-stop <dir>    stop every node (SIGTERM to all at once, so the quorum
#                           lasts until the brokers are down; SIGKILL after 30 s)
#   kafka.sh cluster-kill <dir>    SIGKILL every node
#   kafka.sh cluster-status <dir>  a line per node: nodeK running|stopped PID|- ADDRESS;
#                           exit 0 if every node runs, 1 if not
#
# A node is a broker directory: kafka.sh start|stop|kill|status <dir>/nodeK work on it
# (start: again on its ports and data; ready when that node serves metadata, whether or
# not the others run, but a node gets there only while a majority of the voters runs).
#
# Environment:
#   WALSHIP_CACHE                 cache root (default ~/.cache/walship); jars go to
#                                 $WALSHIP_CACHE/kafka-<version>/
#   WALSHIP_KAFKA_HEAP            heap options (default "-Xmx512m -Xms128m"; a cluster
#                                 node's default is "-Xmx384m -Xms128m", the value when
#                                 the cluster was set up is kept in <dir>/nodeK/heap)
#   WALSHIP_KAFKA_JVM_OPTS        extra JVM options
#   WALSHIP_KAFKA_START_TIMEOUT   seconds to wait for the broker (default 90)
#   WALSHIP_KAFKA_PORT            fixed broker port instead of a free one (not clusters)
#   WALSHIP_KAFKA_CONFIG          extra server.properties lines (newline separated),
#                                 applied when <dir> is first set up (a cluster: every
#                                 node); later lines win
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
DEFAULT_HEAP="-Xmx512m -Xms128m"   # launch takes a cluster node's <dir>/heap instead
CLUSTER_HEAP="-Xmx384m -Xms128m"   # three JVMs on a small machine

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
    local heap=(${WALSHIP_KAFKA_HEAP:-$DEFAULT_HEAP}) extra=(${WALSHIP_KAFKA_JVM_OPTS:-})
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
    if [[ -f "$dir/cluster.id" ]]; then
        # a cluster node whose data is gone (a lost disk, for tests): format it again
        # into its cluster, keeping its config and ports
        log "$dir: no data; formatting it again as node of cluster $(cat "$dir/cluster.id")"
        format_cluster_node "$dir"
        return 0
    fi
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
    if [[ -f "$dir/heap" ]]; then DEFAULT_HEAP="$(cat "$dir/heap")"; fi
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

# --- cluster -------------------------------------------------------------------------
# The node directories of cluster <dir>, node1 first.
cluster_nodes() {
    local dir="$1" k=1
    while [[ -f "$dir/node$k/server.properties" ]]; do
        echo "$dir/node$k"
        k=$((k + 1))
    done
}

# <n> distinct free 127.0.0.1 ports (all bound at once, so no two are the same)
free_ports() {
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*[s.getsockname()[1] for s in socks])
for s in socks:
    s.close()
EOF
}

# format_cluster_node <node dir>: KRaft storage of a static-quorum node (the voters are
# in its config, so no --standalone / --initial-controllers), with its cluster's id.
format_cluster_node() {
    local dir="$1"
    DEFAULT_HEAP="$(cat "$dir/heap")"
    JVM=()
    jvm_cmd
    if ! "${JVM[@]}" kafka.tools.StorageTool format --cluster-id "$(cat "$dir/cluster.id")" \
            --config "$dir/server.properties" >"$dir/format.log" 2>&1; then
        cat "$dir/format.log" >&2
        die "kafka-storage format failed in $dir"
    fi
}

# cluster_setup <dir> <n>: config, cluster id and formatted storage of node1..n
cluster_setup() {
    local dir="$1" n="$2" ports k voters="" rf isr
    ports=($(free_ports $((2 * n)))) || die "could not pick free ports"
    [[ ${#ports[@]} -eq $((2 * n)) ]] || die "could not pick $((2 * n)) free ports"
    rf=$((n < 3 ? n : 3))
    isr=$((n < 2 ? n : 2))
    for ((k = 1; k <= n; k++)); do
        voters="${voters:+$voters,}$k@127.0.0.1:${ports[2 * k - 1]}"
    done
    local cluster_id node
    cluster_id="$(random_cluster_id)"
    echo "$cluster_id" >"$dir/cluster.id"
    for ((k = 1; k <= n; k++)); do
        node="$dir/node$k"
        rm -rf "$node"
        mkdir -p "$node"
        echo "$cluster_id" >"$node/cluster.id"
        echo "${WALSHIP_KAFKA_HEAP:-$CLUSTER_HEAP}" >"$node/heap"
        cat >"$node/server.properties.tmp" <<EOF
# written by tests/kafka/kafka.sh cluster-start for a throwaway test cluster: node $k of $n
process.roles=broker,controller
node.id=$k
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:${ports[2 * k - 2]},CONTROLLER://127.0.0.1:${ports[2 * k - 1]}
advertised.listeners=PLAINTEXT://127.0.0.1:${ports[2 * k - 2]},CONTROLLER://127.0.0.1:${ports[2 * k - 1]}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$node/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
unclean.leader.election.enable=false
auto.create.topics.enable=true
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
# a crashed or stopped (SIGSTOP) node is fenced, and leaves the ISRs of its partitions,
# once its session times out: 5 s instead of 9 s; a restarted node also waits for that
# before it registers again
broker.session.timeout.ms=5000
broker.heartbeat.interval.ms=500
# leaders stay where the test put them (no preferred-leader election every 5 minutes);
# AdminClient.elect_leaders moves them back
auto.leader.rebalance.enable=false
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
log.retention.hours=-1
log.retention.bytes=-1
EOF
        if [[ -n "${WALSHIP_KAFKA_CONFIG:-}" ]]; then
            printf '# WALSHIP_KAFKA_CONFIG\n%s\n' "$WALSHIP_KAFKA_CONFIG" >>"$node/server.properties.tmp"
        fi
        # last: a node directory counts (cluster_nodes) once its config is complete
        mv "$node/server.properties.tmp" "$node/server.properties"
    done
    local pids=() failed=0 pid
    for ((k = 1; k <= n; k++)); do
        ( format_cluster_node "$dir/node$k" ) &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    if [[ $failed -ne 0 ]]; then
        rm -rf "$dir"/node*/ "$dir/cluster.id"
        die "formatting the cluster in $dir failed"
    fi
}

# wait_brokers <bootstrap> <n> <timeout>: until the metadata lists n brokers
wait_brokers() {
    "$PYTHON" - "$@" <<'EOF'
import sys, time
bootstrap, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    from confluent_kafka.admin import AdminClient
except ImportError:
    sys.exit(0)  # every node said "Kafka Server started": that has to do
client = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "log_level": 2})
deadline = time.monotonic() + timeout
seen = 0
while time.monotonic() < deadline:
    try:
        seen = len(client.list_topics(timeout=3).brokers)
        if seen >= n:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
print(f"the metadata lists {seen} of {n} brokers", file=sys.stderr)
sys.exit(1)
EOF
}

cluster_bootstrap() {
    local node list=""
    for node in "$@"; do list="${list:+$list,}$(bootstrap_of "$node")"; done
    echo "$list"
}

cluster_start() {
    local dir="$1" want="${2:-}"
    [[ -z "$want" || "$want" =~ ^[1-9][0-9]*$ ]] || die "the node count must be a positive number, not '$want'"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd -P)"
    [[ ! -f "$dir/server.properties" ]] || die "$dir is a single-node broker's directory (kafka.sh start)"
    command -v "$JAVA" >/dev/null || die "java not found (set JAVA_HOME or JAVA)"
    fetch  # here, not in the parallel starts
    local t0 nodes=()
    t0="$(date +%s.%N)"
    mapfile -t nodes < <(cluster_nodes "$dir")
    if [[ ${#nodes[@]} -eq 0 ]]; then
        cluster_setup "$dir" "${want:-3}"
        mapfile -t nodes < <(cluster_nodes "$dir")
    elif [[ -n "$want" && "$want" -ne ${#nodes[@]} ]]; then
        die "$dir holds a cluster of ${#nodes[@]} nodes, not $want"
    fi
    local n=${#nodes[@]} node pid jobs=() started=() failed=() i
    # All at once: a node is ready only once a majority of the voters runs.
    for node in "${nodes[@]}"; do
        pid="$(read_pid "$node")"
        is_our_broker "$pid" "$node" && continue
        ( start "$node" ) </dev/null >"$node/start.out" 2>"$node/start.err" &
        jobs+=($!)
        started+=("$node")
    done
    for i in "${!jobs[@]}"; do
        wait "${jobs[$i]}" || failed+=("${started[$i]}")
    done
    for node in "${started[@]}"; do
        sed "s/^kafka.sh: /kafka.sh: ${node##*/}: /" "$node/start.err" >&2
    done
    local bootstrap
    bootstrap="$(cluster_bootstrap "${nodes[@]}")"
    if [[ ${#failed[@]} -eq 0 ]] && ! wait_brokers "$bootstrap" "$n" "$START_TIMEOUT"; then
        failed=("${nodes[@]}")
        for node in "${nodes[@]}"; do
            log "----- last lines of $node/kafka.log -----"
            tail -n 30 "$node/kafka.log" >&2 || true
        done
    fi
    if [[ ${#failed[@]} -ne 0 ]]; then
        log "ERROR: the cluster in $dir did not come up (failed: ${failed[*]##*/});" \
            "killing the nodes this command started: ${started[*]##*/}"
        for node in "${started[@]}"; do ( stop "$node" KILL ) || true; done
        exit 1
    fi
    echo "$bootstrap" >"$dir/bootstrap"
    local pids=""
    for node in "${nodes[@]}"; do pids="${pids:+$pids }$(read_pid "$node")"; done
    log "Kafka $KAFKA_VERSION cluster of $n ready on $bootstrap (pids $pids;" \
        "started ${#started[@]}) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f s", b-a}');" \
        "logs $dir/node*/kafka.log"
    echo "$bootstrap"
}

cluster_stop() {
    local dir="$1" how="$2" nodes=() node jobs=() rc=0 pid
    [[ -d "$dir" ]] || die "no such directory: $dir"
    dir="$(cd "$dir" && pwd -P)"
    mapfile -t nodes < <(cluster_nodes "$dir")
    [[ ${#nodes[@]} -gt 0 ]] || die "no cluster in $dir"
    # All at once: the brokers' controlled shutdowns need the controller quorum, which
    # one by one the last node would not have (it would wait 30 s for SIGKILL).
    for node in "${nodes[@]}"; do
        ( stop "$node" "$how" ) &
        jobs+=($!)
    done
    for pid in "${jobs[@]}"; do wait "$pid" || rc=1; done
    return $rc
}

cluster_status() {
    local dir="$1" nodes=() node pid all=0
    [[ -d "$dir" ]] || exit 1
    dir="$(cd "$dir" && pwd -P)"
    mapfile -t nodes < <(cluster_nodes "$dir")
    [[ ${#nodes[@]} -gt 0 ]] || exit 1
    for node in "${nodes[@]}"; do
        pid="$(read_pid "$node")"
        if is_our_broker "$pid" "$node"; then
            echo "${node##*/} running $pid $(bootstrap_of "$node")"
        else
            echo "${node##*/} stopped - $(bootstrap_of "$node")"
            all=1
        fi
    done
    exit $all
}

cmd="${1:-}"
case "$cmd" in
    start)  [[ $# -eq 2 ]] || usage; start "$2" ;;
    stop)   [[ $# -eq 2 ]] || usage; stop "$2" TERM ;;
    kill)   [[ $# -eq 2 ]] || usage; stop "$2" KILL ;;
    status) [[ $# -eq 2 ]] || usage; status "$2" ;;
    fetch)  fetch; log "Kafka $KAFKA_VERSION jars in $JARS" ;;
    classpath) fetch; classpath; echo ;;
    cluster-start)  [[ $# -eq 2 || $# -eq 3 ]] || usage; cluster_start "$2" "${3:-}" ;;
    cluster-stop)   [[ $# -eq 2 ]] || usage; cluster_stop "$2" TERM ;;
    cluster-kill)   [[ $# -eq 2 ]] || usage; cluster_stop "$2" KILL ;;
    cluster-status) [[ $# -eq 2 ]] || usage; cluster_status "$2" ;;
    *) usage ;;
esac
