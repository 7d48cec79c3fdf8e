#!/usr/bin/env bash
# Builds the Kafka Streams peer when needed, then runs one of its main classes.
#
#   bench/peers/kafka-streams/run.sh [AssessmentStreams flags]        the peer (see --help)
#   bench/peers/kafka-streams/run.sh generate [GenerateFilings flags] the input generator
#   bench/peers/kafka-streams/run.sh compare [CompareDecisions flags] compare two decision topics
#   bench/peers/kafka-streams/run.sh build                            only build
#
# The build goes to $STIP_CACHE_DIR/kafka-streams-peer (default ~/.cache/stip-compliance),
# not into the work tree. Maven runs offline first (-o) and online only if that fails, so
# the second build needs no network. One Maven thread (-T1).
# Environment: STIP_CACHE_DIR, STIP_PEER_JAVA_OPTS (default: -Xms512m -Xmx1g).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${STIP_CACHE_DIR:-$HOME/.cache/stip-compliance}"
BUILD_DIR="$CACHE/kafka-streams-peer"
JAR="$BUILD_DIR/stip-kafka-streams-peer.jar"
PROTO="$HERE/../../../proto"

needs_build() {
  [ -f "$JAR" ] || return 0
  [ -n "$(find "$HERE/pom.xml" "$HERE/src" "$PROTO/stip/v1" -newer "$JAR" -type f | head -1)" ]
}

build() {
  command -v mvn >/dev/null || { echo "run.sh: mvn not found (apt-get install maven)" >&2; exit 1; }
  command -v protoc >/dev/null || { echo "run.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
  local args=(-q -T1 -f "$HERE/pom.xml" -Dpeer.build.dir="$BUILD_DIR" package)
  echo "run.sh: building the Kafka Streams peer into $BUILD_DIR" >&2
  mvn -o "${args[@]}" >&2 2>"$BUILD_DIR.offline.log" || {
    echo "run.sh: offline build failed (see $BUILD_DIR.offline.log); trying online" >&2
    mvn "${args[@]}" >&2
  }
}

mkdir -p "$CACHE"
if needs_build; then build; fi

main=stip.peer.AssessmentStreams
case "${1:-}" in
  build) exit 0 ;;
  generate) main=stip.peer.GenerateFilings; shift ;;
  compare) main=stip.peer.CompareDecisions; shift ;;
esac
# shellcheck disable=SC2086
exec java ${STIP_PEER_JAVA_OPTS:--Xms512m -Xmx1g} -cp "$JAR" "$main" "$@"
