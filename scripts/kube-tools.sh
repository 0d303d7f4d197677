#!/usr/bin/env bash
# Builds the real Kubernetes control plane the integration tests run against: kube-apiserver,
# kube-controller-manager and kubectl from the k8s.io/kubernetes module of one release, and etcd
# from go.etcd.io/etcd/server/v3. Binaries are cached in a version-keyed folder outside the repo
# and the build is skipped when they are present, so only the first run on a machine pays for it.
#
#   WEFT_TEST_TOOLS   cache root (default /var/cache/weft-test-tools)
#   KUBE_VERSION      Kubernetes release (default below); its staging modules are v0.<minor>.<patch>
#   ETCD_VERSION      etcd server release (default below)
#
# Prints the folder holding the binaries on its last line.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
ROOT="${WEFT_TEST_TOOLS:-/var/cache/weft-test-tools}"
KUBE_DIR="$ROOT/kube-$KUBE_VERSION"
ETCD_DIR="$ROOT/etcd-$ETCD_VERSION"

log() { echo "kube-tools: $*" >&2; }

mkdir -p "$ROOT"
# One build at a time per machine: a second run (another checkout's setup, a parallel `npm test`)
# waits for the first and then finds the binaries in place.
exec 9>"$ROOT/.lock"
if ! flock -n 9; then
  log "another kube-tools build holds $ROOT/.lock; waiting for it"
  flock 9
fi

command -v go >/dev/null || { log "go is not installed; the Kubernetes tools are built from source with it"; exit 1; }

# Kubernetes' go.mod replaces every k8s.io/<staging module> with ./staging/src/...; a module
# that requires k8s.io/kubernetes must replace them with the published v0.<minor>.<patch> tags.
build_kube() {
  # Present, and stamped with its release (a build without the -X flags says v0.0.0-master).
  if [ -x "$KUBE_DIR/kube-apiserver" ] && [ -x "$KUBE_DIR/kube-controller-manager" ] && [ -x "$KUBE_DIR/kubectl" ] \
    && [ "$("$KUBE_DIR/kube-apiserver" --version 2>/dev/null)" = "Kubernetes $KUBE_VERSION" ]; then
    log "kubernetes $KUBE_VERSION present in $KUBE_DIR"
    return
  fi
  local staging="v0.${KUBE_VERSION#v1.}"
  local work="$ROOT/src/kube-$KUBE_VERSION"
  mkdir -p "$work" "$KUBE_DIR"
  log "kubernetes $KUBE_VERSION: fetching the module (staging modules at $staging)"
  local gomod
  gomod="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
  [ -f "$gomod" ] || { log "could not download k8s.io/kubernetes@$KUBE_VERSION from the Go module proxy"; exit 1; }
  local goversion
  goversion="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
  {
    echo "module weft.dev/kube-tools"
    echo
    echo "go $goversion"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
    echo ")"
  } >"$work/go.mod"
  # The tool imports pin the commands' packages so `go mod tidy` keeps their dependencies.
  cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
  log "kubernetes $KUBE_VERSION: resolving dependencies (go mod tidy)"
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy)
  log "kubernetes $KUBE_VERSION: compiling kube-apiserver, kube-controller-manager, kubectl (one go build, shared packages; cold takes many minutes)"
  local start=$SECONDS
  local tmpbin
  tmpbin="$(mktemp -d "$KUBE_DIR.partial.XXXXXX")"
  # The version stamp Kubernetes' own build (hack/lib/version.sh) puts in: /version, `kubectl version`.
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  (cd "$work" && nice -n 10 go build -trimpath -ldflags="$ldflags" -o "$tmpbin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
  mv "$tmpbin"/* "$KUBE_DIR/" && rmdir "$tmpbin"
  log "kubernetes $KUBE_VERSION: built in $((SECONDS - start)) s"
}

build_etcd() {
  if [ -x "$ETCD_DIR/etcd" ]; then
    log "etcd $ETCD_VERSION present in $ETCD_DIR"
    return
  fi
  local work="$ROOT/src/etcd-$ETCD_VERSION"
  mkdir -p "$work" "$ETCD_DIR"
  cat >"$work/go.mod" <<EOF
module weft.dev/etcd-tools

go 1.24
EOF
  cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
  log "etcd $ETCD_VERSION: resolving dependencies"
  (cd "$work" && GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && GOFLAGS=-mod=mod go mod tidy)
  log "etcd $ETCD_VERSION: compiling"
  local start=$SECONDS
  (cd "$work" && nice -n 10 go build -trimpath -ldflags='-s -w' -o "$ETCD_DIR/etcd.partial.$$" go.etcd.io/etcd/server/v3)
  mv "$ETCD_DIR/etcd.partial.$$" "$ETCD_DIR/etcd"
  log "etcd $ETCD_VERSION: built in $((SECONDS - start)) s"
}

build_etcd
build_kube
# One folder with all four, for the tests (WEFT_KUBE_BIN may point elsewhere).
mkdir -p "$ROOT/bin"
for b in kube-apiserver kube-controller-manager kubectl; do ln -sfn "$KUBE_DIR/$b" "$ROOT/bin/$b"; done
ln -sfn "$ETCD_DIR/etcd" "$ROOT/bin/etcd"
echo "$KUBE_VERSION $ETCD_VERSION" >"$ROOT/bin/VERSIONS"
log "tools ready in $ROOT/bin ($(cat "$ROOT/bin/VERSIONS"))"
echo "$ROOT/bin"
