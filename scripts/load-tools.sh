#!/usr/bin/env bash
# Builds the fixed-rate load generator the benchmarks run (vegeta, github.com/tsenart/vegeta/v12):
# closed-loop wrk waits for each answer before the next request, so a stall delays the requests
# behind it instead of showing in their latency (coordinated omission); vegeta sends at a fixed
# rate whatever the answers do. Built from the Go module proxy once per machine into a
# version-keyed folder outside the repo; skipped when present.
#
#   WEFT_TEST_TOOLS   cache root (default /var/cache/weft-test-tools)
#   VEGETA_VERSION    vegeta release (default below)
#
# Prints the path of the vegeta binary on its last line.
set -euo pipefail

VEGETA_VERSION="${VEGETA_VERSION:-v12.13.0}"
ROOT="${WEFT_TEST_TOOLS:-/var/cache/weft-test-tools}"
DIR="$ROOT/vegeta-$VEGETA_VERSION"

log() { echo "load-tools: $*" >&2; }

mkdir -p "$ROOT"
# Its own lock: a Kubernetes build (minutes) must not hold up this one.
exec 9>"$ROOT/.load-tools.lock"
if ! flock -n 9; then
  log "another load-tools build holds $ROOT/.load-tools.lock; waiting for it"
  flock 9
fi

if [ -x "$DIR/vegeta" ] && "$DIR/vegeta" -version 2>/dev/null | grep -q "${VEGETA_VERSION}"; then
  log "vegeta $VEGETA_VERSION present in $DIR"
  echo "$DIR/vegeta"
  exit 0
fi

command -v go >/dev/null || { log "go is not installed; vegeta is built from source with it"; exit 1; }

work="$ROOT/src/vegeta-$VEGETA_VERSION"
mkdir -p "$work" "$DIR"
log "vegeta $VEGETA_VERSION: fetching and compiling (cold takes about a minute)"
start=$SECONDS
# `go install module@version` builds exactly the released module with its own go.sum.
# The -X flags stamp `vegeta -version` as the release's own build does (its Makefile).
GOBIN="$work/bin" nice -n 10 go install -trimpath \
  -ldflags="-s -w -X main.Version=$VEGETA_VERSION" \
  "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
mv "$work/bin/vegeta" "$DIR/vegeta.partial.$$"
mv "$DIR/vegeta.partial.$$" "$DIR/vegeta"
log "vegeta $VEGETA_VERSION: built in $((SECONDS - start)) s"
echo "$DIR/vegeta"
