#!/usr/bin/env bash
# The long soak of issue 13 (tests/soak, weft-soak): a `weftctl up` mesh under steady load and
# churn for DURATION (default 20m), then the checks (unexplained errors, RSS/fd slopes after
# warm-up, flows drained, nothing left after down). Root. Builds what it needs into ./build,
# writes the figures to build/soak-<date>.json (or SOAK_JSON) and exits with weft-soak's status.
# Extra arguments go to weft-soak (e.g. --capture iptables, --rate 40; see weft-soak --help).
# Usage: sudo bash scripts/soak.sh [DURATION] [weft-soak flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20m}
shift || true
bash scripts/build.sh weft-soak weftctl weftd ztunnel weft-agent weft-teashop >/dev/null
json=${SOAK_JSON:-build/soak-$(date -u +%Y%m%dT%H%M%SZ).json}
echo "weft-soak --duration $duration --json $json $*"
exec ./build/tests/soak/weft-soak --duration "$duration" --json "$json" "$@"
