#!/usr/bin/env bash
# Apache Flink SQL in a local mini-cluster, for tests/compat/test_flink_changelog.py.
#
#   flink.sh fetch          resolve Flink's jars (Maven Central, once) and compile the program
#                           into the cache; quiet when cached (scripts/install-deps.sh runs it)
#   flink.sh build          the same, then print the cache directory (classes/, classpath.txt)
#   flink.sh run ARGS...    run io.walship.compat.FlinkChangelog ARGS... (builds first if needed)
#
# The cache is $WALSHIP_CACHE (default ~/.cache/walship)/flink-<hash of pom.xml and src/>, so
# a changed program builds again and an unchanged one never runs Maven: later runs start the
# JVM at once. Maven runs offline first (everything in ~/.m2 after one online run).
# Environment: JAVA (default java: Java 17 or later), WALSHIP_FLINK_HEAP (default 768m),
# WALSHIP_FLINK_TMP (the JVM's temporary directory, which the caller then removes;
# default: one of run's own, removed when the JVM exits),
# WALSHIP_FLINK_JVM_OPTS (default -XX:+UseSerialGC -XX:TieredStopAtLevel=1: short jobs on
# 2 cores; measured 32 s against 40 s with C2 and 46 s with ParallelGC for the same 8 jobs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${WALSHIP_CACHE:-${HOME:-/root}/.cache/walship}"

stamp() {
    (cd "$here" && find pom.xml src -type f -print0 | sort -z | xargs -0 sha256sum) |
        sha256sum | cut -c1-12
}

build() {
    local dir="$cache_root/flink-$(stamp)"
    if [[ -s $dir/classpath.txt && -d $dir/classes ]]; then
        echo "$dir"
        return
    fi
    command -v mvn >/dev/null || { echo "flink.sh: mvn not found (scripts/install-deps.sh installs Maven)" >&2; exit 1; }
    mkdir -p "$cache_root"
    # one builder at a time (parallel test runs share the cache)
    exec 9>"$cache_root/flink.lock"
    flock 9
    if [[ ! -s $dir/classpath.txt ]]; then
        local tmp log
        tmp=$(mktemp -d "$cache_root/flink-build.XXXXXX")
        log="$tmp/mvn.log"
        local args=(-B -q -f "$here/pom.xml" "-Dwalship.flink.out=$tmp/target"
                    compile dependency:build-classpath "-Dmdep.outputFile=$tmp/classpath.txt")
        echo "flink.sh: compiling the Flink program and resolving Flink's jars (cached afterwards)" >&2
        if ! mvn -o "${args[@]}" >"$log" 2>&1; then
            if ! mvn "${args[@]}" >"$log" 2>&1; then
                cat "$log" >&2
                rm -rf "$tmp"
                echo "flink.sh: the Maven build failed" >&2
                exit 1
            fi
        fi
        mv "$tmp/target/classes" "$tmp/classes"
        rm -rf "$tmp/target" "$log"
        rm -rf "$dir"
        mv "$tmp" "$dir"
    fi
    flock -u 9
    echo "$dir"
}

# What Flink's own distribution passes to every JVM on Java 17 (env.java.default-opts.all).
jvm_opens=(
    --add-exports=java.base/sun.net.util=ALL-UNNAMED
    --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED
    --add-opens=java.base/java.lang=ALL-UNNAMED
    --add-opens=java.base/java.net=ALL-UNNAMED
    --add-opens=java.base/java.io=ALL-UNNAMED
    --add-opens=java.base/java.nio=ALL-UNNAMED
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens=java.base/java.text=ALL-UNNAMED
    --add-opens=java.base/java.time=ALL-UNNAMED
    --add-opens=java.base/java.util=ALL-UNNAMED
    --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
    --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
    --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED
)

case "${1:-}" in
    fetch) build >/dev/null ;;
    build) build ;;
    run)
        shift
        dir=$(build)
        java_cmd=("${JAVA:-java}" "-Xmx${WALSHIP_FLINK_HEAP:-768m}")
        # shellcheck disable=SC2206 # options, split on purpose
        java_cmd+=(${WALSHIP_FLINK_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1})
        java_cmd+=("${jvm_opens[@]}" -cp "$dir/classes:$(cat "$dir/classpath.txt")"
                   io.walship.compat.FlinkChangelog "$@")
        # Flink leaves files in java.io.tmpdir (its RPC system's 21 MB jar, the
        # mini-cluster's directories): give it a directory that goes away afterwards.
        if [[ -n ${WALSHIP_FLINK_TMP:-} ]]; then  # the caller's, removed by the caller
            mkdir -p "$WALSHIP_FLINK_TMP"
            exec "${java_cmd[0]}" "-Djava.io.tmpdir=$WALSHIP_FLINK_TMP" "${java_cmd[@]:1}"
        fi
        tmp=$(mktemp -d "${TMPDIR:-/tmp}/walship-flink.XXXXXX")
        (exec "${java_cmd[0]}" "-Djava.io.tmpdir=$tmp" "${java_cmd[@]:1}") &
        pid=$!
        trap 'kill -TERM "$pid" 2>/dev/null' TERM INT HUP
        rc=0
        while :; do
            wait "$pid" && rc=0 || rc=$?
            kill -0 "$pid" 2>/dev/null || break  # returned for a signal: wait for the JVM
        done
        rm -rf "$tmp"
        exit "$rc"
        ;;
    *)
        sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
