#!/usr/bin/env bash
# Builds the bridge and the generator into /tmp and runs the scenarios of
# docs/benchmarks.md ("How we measure"): each system under test pinned to CPU 0, the
# generator to CPU 1, three rounds, medians and ratios.
#
#   bench/run.sh                      # P1 and R1, tables on stdout
#   bench/run.sh -scenario R1         # extra flags go to `mqttbench run`
#   bench/run.sh -scenario ws         # F1 (fan-out) and M1 (idle memory)
#   bench/run.sh -scenario S1         # stream store vs redis-benchmark XADD
#   BRIDGE_REF=HEAD bench/run.sh      # measure a commit, not the work tree
#
# BRIDGE_BIN and MQTTBENCH_BIN move the two binaries (default
# /tmp/mqttbridge and /tmp/mqttbench), so that runs of several people on one
# machine do not replace each other's binaries halfway.
#
# With BRIDGE_REF the bridge is built from `git archive $BRIDGE_REF` in a
# temporary directory, so uncommitted work in the tree neither breaks nor
# skews the run, and the figures name a commit.
#
# Centrifugo (a peer in P1, F1 and M1) is used when /tmp/mqttbench-gobin/centrifugo
# exists; install it with
#   GOBIN=/tmp/mqttbench-gobin go install github.com/centrifugal/centrifugo/v6@v6.9.1
# Mosquitto (F1, M1) is Debian's /usr/sbin/mosquitto (apt-get install mosquitto).
# M1 holds 10,000 connections open: the open-files limit is raised to the
# hard limit here (the servers inherit it; Mosquitto's is set with prlimit).
# Everything started is stopped on exit; nothing listens beyond loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"
bridge_bin=${BRIDGE_BIN:-/tmp/mqttbridge}
bench_bin=${MQTTBENCH_BIN:-/tmp/mqttbench}
if [ -n "${BRIDGE_REF:-}" ]; then
  src=$(mktemp -d /tmp/mqttbench-src.XXXXXX)
  trap 'rm -rf "$src"' EXIT
  git archive "$BRIDGE_REF" | tar -x -C "$src"
  echo "bridge: $(git rev-parse --short "$BRIDGE_REF") ($BRIDGE_REF)" >&2
  (cd "$src" && go build -o "$bridge_bin" ./cmd/mqttbridge)
else
  echo "bridge: work tree on top of $(git rev-parse --short HEAD)" >&2
  go build -o "$bridge_bin" ./cmd/mqttbridge
fi
(cd bench && go build -o "$bench_bin" .)
"$bench_bin" run -bridge "$bridge_bin" "$@"
