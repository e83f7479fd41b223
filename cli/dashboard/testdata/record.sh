#!/bin/bash
# Records the metric texts and `weftctl stat` totals api_test.cc reads, from a live tea shop (root:
# weftctl up makes network namespaces). status.json, config_dump.json and agent.log are kept as
# they are (their workloads and Services are the tea shop's, whatever the run).
#
#   bash cli/dashboard/testdata/record.sh build/cli/weftctl
#
# The story: the shop enrolled, load from the unmeshed legacy client, the store's
# DENY-except-frontend policy and one denied call from the cart; then the "before" reading, a
# few seconds of load and a second denied call, the "after" reading and `weftctl stat
# --window 0 --json` with it. Each ztunnel's /metrics keeps the families weftctl stat reads and
# the labels the dashboard reads (the others are dropped to keep the files small).
set -euo pipefail
weftctl=$(readlink -f "${1:?usage: record.sh WEFTCTL}")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
name=dashrec$$
root=$(mktemp -d)
trap '"$weftctl" down --name "$name" --state-root "$root" >/dev/null 2>&1 || true; rm -rf "$root"' EXIT
w() { "$weftctl" "$1" --name "$name" --state-root "$root" "${@:2}"; }

w up --nodes 2 --capture iptables "$repo/examples/teashop/manifests" >/dev/null
w label namespace shop weft.dev/mesh=enabled --wait >/dev/null
load() { w exec legacy/client -- weft-teashop --role load --target http://frontend.shop --duration "$1" >/dev/null; }
denied_call() { w exec shop/cart -- curl -sS -m 3 http://store.shop/healthz >/dev/null 2>&1 || true; }
load 3s
w apply -f "$repo/examples/teashop/policies/store-deny-except-frontend.yaml" --wait >/dev/null
denied_call

# /metrics of every ztunnel of the mesh, filtered, into node<i>-$1.metrics.
scrape() {
  python3 - "$root/$name/state.json" "$here" "$1" <<'EOF'
import json, re, subprocess, sys
state, out_dir, when = sys.argv[1:]
keep_families = re.compile(r'^(istio_tcp_\w+|istio_requests_total|'
                           r'istio_request_duration_milliseconds_bucket|'
                           r'weft_tcp_connection_duration_seconds_\w+)\{')
keep_labels = {'reporter', 'source_workload', 'source_workload_namespace',
               'destination_workload', 'destination_workload_namespace', 'destination_service',
               'destination_service_name', 'destination_service_namespace',
               'connection_security_policy', 'response_flags', 'response_code',
               'grpc_response_status', 'le'}
label = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
for n in json.load(open(state))['nodes']:
    text = subprocess.run(['ip', 'netns', 'exec', n['netns'], 'curl', '-sSf',
                           f"http://{n['metrics']}/metrics"], check=True, capture_output=True,
                          text=True).stdout
    lines = []
    for line in text.splitlines():
        if not keep_families.match(line):
            continue
        family, rest = line.split('{', 1)
        labels, value = rest.rsplit('} ', 1)
        kept = ','.join(f'{k}="{v}"' for k, v in label.findall(labels) if k in keep_labels)
        lines.append(f'{family}{{{kept}}} {value}')
    with open(f"{out_dir}/{n['name']}-{when}.metrics", 'w') as f:
        f.write('\n'.join(lines) + '\n')
EOF
}
scrape before
load 3s
denied_call
scrape after
w stat --window 0 --json | python3 -c 'import json,sys; json.dump(json.load(sys.stdin), sys.stdout, indent=2)' > "$here/stat-totals.json"
echo "recorded into $here"
