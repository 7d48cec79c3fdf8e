#!/usr/bin/env bash
# Start/stop a real single-node Apache Kafka broker (KRaft) on 127.0.0.1 for
# the integration tests. See `kafka.sh --help`.
set -euo pipefail

LOG_TAG=kafka
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

# Keep in step with <kafka.version> in kafka/pom.xml.
KAFKA_VERSION=4.1.1
POM="$HERE/kafka/pom.xml"

KAFKA_PORT="${STIP_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${STIP_KAFKA_CONTROLLER_PORT:-19093}"
HEAP="${STIP_KAFKA_HEAP:-512m}"
START_TIMEOUT="${STIP_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT=30

DIST="$STIP_CACHE/kafka-$KAFKA_VERSION"
LIBS="$DIST/libs"
MARKER="$DIST/.libs-complete"          # holds the sha256 of the pom it came from
STATE="$STIP_STATE/kafka"
DATA="$STATE/data"
PIDFILE="$STATE/kafka.pid"
LOGFILE="$STATE/kafka.log"
PROPS="$STATE/server.properties"
LOG4J="$STATE/log4j2.properties"
TOOLS_LOG4J="$STATE/log4j2-tools.properties"
CLUSTER_ID_FILE="$STATE/cluster.id"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

usage() {
  cat <<EOF
Usage: deploy/local/kafka.sh COMMAND

Runs a real Apache Kafka $KAFKA_VERSION broker (single node, KRaft: broker and
controller in one JVM) on 127.0.0.1 only, for integration tests.

Commands:
  start                       fetch jars if needed, format storage if new, start
                              the broker and wait until it answers (no-op if it
                              already runs)
  stop                        stop the broker this script started (SIGTERM, then
                              SIGKILL after ${STOP_TIMEOUT} s); success if not running
  status                      exit 0 and say so if it runs and answers, 3 if not
  version                     print the Kafka version of the jars (and of the
                              running broker)
  topics-create NAME PARTS    create topic NAME with PARTS partitions if it does
                              not exist (idempotent; grows a smaller one)
  fetch                       only fetch the jars (Maven Central, via mvn)
  reset                       stop, then wipe the broker's data (not the jars)
  -h, --help                  this text

Environment:
  STIP_CACHE_DIR              cache root (default \$HOME/.cache/stip-compliance)
                              jars go to \$STIP_CACHE_DIR/kafka-$KAFKA_VERSION/libs
  STIP_STATE_DIR              state root (default \$STIP_CACHE_DIR/state); data,
                              config, pid and log files go to \$STIP_STATE_DIR/kafka
  STIP_KAFKA_PORT             client (PLAINTEXT) port, default 19092
  STIP_KAFKA_CONTROLLER_PORT  KRaft controller port, default 19093
  STIP_KAFKA_HEAP             JVM max heap, default 512m
  STIP_KAFKA_START_TIMEOUT    seconds to wait for readiness, default 90

Bootstrap servers for clients: 127.0.0.1:\$STIP_KAFKA_PORT
Broker log: \$STIP_STATE_DIR/kafka/kafka.log
EOF
}

# --- jars ---------------------------------------------------------------------

pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }

libs_ready() {
  [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$(pom_sum)" ] \
    && [ -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]
}

fetch_jars() {
  if libs_ready; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || ensure_pkgs maven
  local t0 tmp
  t0="$(now_s)"
  tmp="$DIST/libs.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$DIST"
  log "fetching Apache Kafka $KAFKA_VERSION jars with Maven into $LIBS ..."
  if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >&2; then
    rm -rf "$tmp"
    die "mvn could not fetch the Kafka jars (see Maven's output above)"
  fi
  [ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] \
    || { rm -rf "$tmp"; die "mvn ran but kafka_2.13-$KAFKA_VERSION.jar is missing"; }
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  pom_sum >"$MARKER"
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $(elapsed_since "$t0") s"
}

# --- java -----------------------------------------------------------------------

JAVA=""
find_java() {
  local j v
  for j in "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)"; do
    if [ -z "$j" ] || [ ! -x "$j" ]; then continue; fi
    v="$("$j" -XshowSettings:properties -version 2>&1 \
          | awk -F'= ' '/java.specification.version/ { print $2 }')"
    if [ "${v%%.*}" -ge 17 ] 2>/dev/null; then
      JAVA="$j"
      return 0
    fi
  done
  return 1
}

ensure_java() {
  [ -n "$JAVA" ] && return 0
  if ! find_java; then
    ensure_pkgs openjdk-17-jre-headless
    JAVA=/usr/lib/jvm/java-17-openjdk-amd64/bin/java
    [ -x "$JAVA" ] || find_java || die "no Java 17+ found even after installing openjdk-17-jre-headless"
  fi
}

# Run a Kafka command line tool class from the jars, logging only warnings.
kafka_tool() {
  ensure_java
  "$JAVA" -Xmx192m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.net.preferIPv4Stack=true \
    -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
    -cp "$LIBS/*" "$@"
}

# --- config -----------------------------------------------------------------------

write_config() {
  mkdir -p "$STATE" "$DATA"
  cat >"$PROPS" <<EOF
# Written by deploy/local/kafka.sh on every start: edit the script, not this.
# Single node in KRaft mode: this JVM is both broker and (the only) controller.
process.roles=broker,controller
node.id=1
# Static quorum of one voter; storage is formatted to match (see kafka.sh).
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
# Loopback only.
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT

log.dirs=$DATA
num.partitions=3
default.replication.factor=1
# One broker: internal topics (consumer offsets, transaction state, share
# groups) must make do with one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumer groups rebalance at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
# Decision: auto-creation stays ON (Kafka's default), to be forgiving: a test
# that produces to or fetches metadata for a topic nobody created gets it with
# num.partitions=3 instead of failing. Tests that care about the partition
# count should still create their topics with "kafka.sh topics-create".
auto.create.topics.enable=true
delete.topic.enable=true
# Small footprint: this machine also runs a C++ build.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.segment.bytes=67108864
log.retention.hours=24
EOF

  cat >"$LOG4J" <<'EOF'
# Broker logging: everything to stdout, which kafka.sh sends to kafka.log.
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF

  cat >"$TOOLS_LOG4J" <<'EOF'
# Admin tools started by kafka.sh: warnings and errors only, to stderr.
status = error
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF
}

# Format the storage once (kafka-storage.sh format == kafka.tools.StorageTool).
# With the static controller.quorum.voters above, no --standalone is needed.
format_storage() {
  if [ -f "$DATA/meta.properties" ]; then
    return 0
  fi
  local cid
  if [ -s "$CLUSTER_ID_FILE" ] && [ "$(head -c1 "$CLUSTER_ID_FILE")" != "-" ]; then
    cid="$(cat "$CLUSTER_ID_FILE")"
  else
    # A Kafka cluster id is 16 random bytes, base64url without padding; drawn again when it
    # starts with '-', which StorageTool would read as an option.
    cid="-"
    while [ "${cid:0:1}" = "-" ]; do
      cid="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    printf '%s\n' "$cid" >"$CLUSTER_ID_FILE"
  fi
  log "formatting storage in $DATA (cluster id $cid)"
  kafka_tool kafka.tools.StorageTool format --ignore-formatted \
      -t "$cid" -c "$PROPS" >&2 \
    || die "formatting the storage failed (kafka.tools.StorageTool)"
}

# --- process ----------------------------------------------------------------------

# is_ours PID: PID is a live broker started by this script for this state dir.
is_ours() {
  local pid="$1" cmd
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  case "$cmd" in
    *kafka.Kafka\ "$PROPS"*) return 0 ;;
  esac
  return 1
}

# running_pid: print the pid of our broker, if any. Uses the pid file; if that
# is missing or stale, looks for a JVM running kafka.Kafka with exactly our
# server.properties (so a lost pid file does not leave an orphan behind).
running_pid() {
  local pid p
  if [ -f "$PIDFILE" ]; then
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    if is_ours "$pid"; then
      echo "$pid"
      return 0
    fi
  fi
  for p in /proc/[0-9]*; do
    pid="${p#/proc/}"
    if is_ours "$pid"; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

answers() {
  kafka_tool org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1
}

broker_version() {
  local v
  v="$(sed -n 's/.*INFO Kafka version: \([^ ]*\) (org.apache.kafka.common.utils.AppInfoParser).*/\1/p' \
        "$LOGFILE" 2>/dev/null | tail -n1)"
  if [ -z "$v" ]; then
    v="$(jar_version)"
  fi
  echo "${v:-unknown}"
}

jar_version() {
  local j
  j="$(find "$LIBS" -maxdepth 1 -name 'kafka_2.13-*.jar' -print -quit 2>/dev/null)"
  [ -n "$j" ] || return 0
  j="${j##*/kafka_2.13-}"
  echo "${j%.jar}"
}

# wait_ready PID T0: poll until the broker answers an admin request.
wait_ready() {
  local pid="$1" t0="$2" deadline
  deadline=$(( $(date +%s) + START_TIMEOUT ))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "the broker exited during start-up; last lines of $LOGFILE:"
      tail -n 30 "$LOGFILE" >&2 || true
      rm -f "$PIDFILE"
      die "Kafka broker failed to start"
    fi
    if port_open "$KAFKA_PORT" && answers; then
      log "Apache Kafka $(broker_version) broker ready on $BOOTSTRAP (pid $pid, $(elapsed_since "$t0") s)"
      return 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "no answer from $BOOTSTRAP after $START_TIMEOUT s; last lines of $LOGFILE:"
      tail -n 30 "$LOGFILE" >&2 || true
      die "Kafka broker not ready (still running as pid $pid; 'kafka.sh stop' ends it)"
    fi
    sleep 1
  done
}

cmd_start() {
  check_port_number STIP_KAFKA_PORT "$KAFKA_PORT"
  check_port_number STIP_KAFKA_CONTROLLER_PORT "$CONTROLLER_PORT"
  [ "$KAFKA_PORT" != "$CONTROLLER_PORT" ] || die "client and controller ports must differ"
  with_lock "$STATE/.lock"
  local t0 pid
  t0="$(now_s)"
  ensure_java
  if pid="$(running_pid)"; then
    log "already running (pid $pid); checking that it answers"
    echo "$pid" >"$PIDFILE"
    wait_ready "$pid" "$t0"
    return 0
  fi
  rm -f "$PIDFILE"
  local p
  for p in "$KAFKA_PORT" "$CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "port 127.0.0.1:$p is already in use by another process; pick other ports with STIP_KAFKA_PORT / STIP_KAFKA_CONTROLLER_PORT"
    fi
  done
  fetch_jars
  write_config
  format_storage
  [ -f "$LOGFILE" ] && mv -f "$LOGFILE" "$LOGFILE.1"
  log "starting Apache Kafka $(jar_version) (KRaft, heap $HEAP) on $BOOTSTRAP, controller 127.0.0.1:$CONTROLLER_PORT"
  # The inner shell writes its own pid, then execs the JVM: the pid file holds
  # exactly the broker's pid. setsid: own session, so that the caller's
  # terminal or process group going away does not take the broker with it.
  # shellcheck disable=SC2016 # $$, $1 and $@ are the inner shell's
  setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PIDFILE" \
    "$JAVA" -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
    -Dlog4j2.configurationFile="$LOG4J" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" \
    >"$LOGFILE" 2>&1 </dev/null 9>&- &
  local tries=50
  while [ ! -s "$PIDFILE" ] && [ "$tries" -gt 0 ]; do
    sleep 0.1
    tries=$((tries - 1))
  done
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [ -n "$pid" ] || die "could not start the broker (no pid written)"
  wait_ready "$pid" "$t0"
}

cmd_stop() {
  with_lock "$STATE/.lock"
  local pid
  if ! pid="$(running_pid)"; then
    [ -f "$PIDFILE" ] && log "removing stale pid file $PIDFILE"
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  log "stopping broker (pid $pid, SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$(( $(date +%s) + STOP_TIMEOUT ))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "still running after $STOP_TIMEOUT s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      local tries=50
      while is_ours "$pid" && [ "$tries" -gt 0 ]; do
        sleep 0.1
        tries=$((tries - 1))
      done
      break
    fi
    sleep 0.2
  done
  rm -f "$PIDFILE"
  log "stopped"
}

cmd_status() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    return 3
  fi
  if libs_ready && answers; then
    log "running (pid $pid), Apache Kafka $(broker_version) answering on $BOOTSTRAP"
    return 0
  fi
  log "process $pid runs but $BOOTSTRAP does not answer (yet)"
  return 1
}

cmd_version() {
  local v
  v="$(jar_version)"
  if [ -n "$v" ]; then
    echo "Apache Kafka $v (jars in $LIBS)"
  else
    echo "Apache Kafka $KAFKA_VERSION (jars not fetched yet; 'kafka.sh fetch')"
  fi
  local pid
  if pid="$(running_pid)"; then
    echo "running broker: Apache Kafka $(broker_version) on $BOOTSTRAP (pid $pid)"
  fi
}

cmd_topics_create() {
  [ $# -eq 2 ] || die "usage: kafka.sh topics-create NAME PARTITIONS"
  local name="$1" parts="$2"
  case "$parts" in ''|*[!0-9]*|0) die "PARTITIONS must be a positive number, got '$parts'" ;; esac
  running_pid >/dev/null || die "broker not running: 'kafka.sh start' first"
  libs_ready || die "Kafka jars missing: 'kafka.sh fetch' first"
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --create --if-not-exists --topic "$name" \
    --partitions "$parts" --replication-factor 1 >/dev/null \
    || die "could not create topic $name"
  local have
  have="$(kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
            --describe --topic "$name" \
          | sed -n 's/.*PartitionCount: *\([0-9]*\).*/\1/p' | sed -n 1p)"
  [ -n "$have" ] || die "topic $name not found after creating it"
  if [ "$have" -lt "$parts" ]; then
    log "topic $name has $have partitions: growing it to $parts"
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
      --alter --topic "$name" --partitions "$parts" >/dev/null \
      || die "could not add partitions to $name"
    have="$parts"
  elif [ "$have" -gt "$parts" ]; then
    log "warning: topic $name already has $have partitions (> $parts); Kafka cannot shrink it"
  fi
  log "topic $name ready ($have partitions)"
}

cmd_reset() {
  cmd_stop
  log "wiping $STATE"
  rm -rf "$STATE"
}

main() {
  [ $# -ge 1 ] || { usage >&2; exit 2; }
  local cmd="$1"
  shift
  case "$cmd" in
    start)          [ $# -eq 0 ] || die "start takes no arguments"; cmd_start ;;
    stop)           [ $# -eq 0 ] || die "stop takes no arguments"; cmd_stop ;;
    status)         cmd_status ;;
    version)        cmd_version ;;
    topics-create)  cmd_topics_create "$@" ;;
    fetch)          ensure_java; fetch_jars; log "jars ready in $LIBS" ;;
    reset)          cmd_reset ;;
    -h|--help|help) usage ;;
    *)              usage >&2; die "unknown command: $cmd" ;;
  esac
}

main "$@"
