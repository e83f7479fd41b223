#!/usr/bin/env bash
# The README's demo command: installs what is missing, builds, then runs `weftctl demo`
# (a 2-node local mesh in network namespaces: mTLS between nodes, Istio metrics, a policy).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "weft demo: run as root (it creates network namespaces): sudo bash scripts/demo.sh" >&2
  exit 1
fi
bash scripts/deps.sh
bash scripts/build.sh ztunnel weft-agent weftctl
exec ./build/cli/weftctl demo "$@"
