#!/usr/bin/env bash
# The README's demo command: installs what is missing, builds, then runs `weftctl demo`
# (`weftctl up` a 2-node local mesh with the tea shop, enrol it live, load + `weftctl stat`,
# mTLS on the wire with SPIFFE identities, an AuthorizationPolicy, `weftctl down`).
# Extra arguments go to `weftctl demo`, e.g. --capture iptables, --keep, --nodes 3.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "weft demo: run as root (it creates network namespaces): sudo bash scripts/demo.sh" >&2
  exit 1
fi
bash scripts/deps.sh
bash scripts/build.sh weftctl weftd ztunnel weft-agent weft-teashop
exec ./build/cli/weftctl demo "$@"
