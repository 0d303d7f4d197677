#!/usr/bin/env bash
# Installs everything Weft needs on a fresh Debian machine, then builds it. Idempotent and
# non-interactive: what is present is left alone, so repeated runs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(clang llvm libbpf-dev libelf-dev bpftool iproute2 curl tcpdump tshark stunnel4 haproxy wrk nghttp2-client prometheus chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# BPF filesystem for pinned maps and links (the agent mounts it too if missing).
if ! grep -qs ' /sys/fs/bpf bpf ' /proc/mounts; then
  mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
node scripts/build.mjs

# The real Kubernetes control plane the integration tests start (etcd, kube-apiserver,
# kube-controller-manager, kubectl), built from source once per machine and cached outside the repo.
bash scripts/kube-tools.sh >/dev/null

# The fixed-rate load generator the benchmarks run (vegeta), built once per machine, cached outside the repo.
bash scripts/load-tools.sh >/dev/null
