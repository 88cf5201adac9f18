#!/usr/bin/env bash
# Builds the bridge and the generator into /tmp and runs the P1 and R1
# scenarios of /work/shared/BENCHMARKS.md: each system under test pinned to
# CPU 0, the generator to CPU 1, three rounds, medians and ratios.
#
#   cmd/mqttbench/run.sh                      # P1 and R1, tables on stdout
#   cmd/mqttbench/run.sh -scenario R1         # extra flags go to `mqttbench run`
#   BRIDGE_REF=HEAD cmd/mqttbench/run.sh      # measure a commit, not the work tree
#
# With BRIDGE_REF the bridge is built from `git archive $BRIDGE_REF` in a
# temporary directory, so uncommitted work in the tree neither breaks nor
# skews the run, and the figures name a commit.
#
# Centrifugo (the second P1 peer) is used when /tmp/mqttbench-gobin/centrifugo
# exists; install it with
#   GOBIN=/tmp/mqttbench-gobin go install github.com/centrifugal/centrifugo/v6@v6.9.1
# Everything started is stopped on exit; nothing listens beyond loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${BRIDGE_REF:-}" ]; then
  src=$(mktemp -d /tmp/mqttbench-src.XXXXXX)
  trap 'rm -rf "$src"' EXIT
  git archive "$BRIDGE_REF" | tar -x -C "$src"
  echo "bridge: $(git rev-parse --short "$BRIDGE_REF") ($BRIDGE_REF)" >&2
  (cd "$src" && go build -o /tmp/mqttbridge ./cmd/mqttbridge)
else
  echo "bridge: work tree on top of $(git rev-parse --short HEAD)" >&2
  go build -o /tmp/mqttbridge ./cmd/mqttbridge
fi
go build -o /tmp/mqttbench ./cmd/mqttbench
/tmp/mqttbench run "$@"
