#!/usr/bin/env bash
# Installs every Debian 12 package Weft needs to build, test, demo and benchmark.
# Idempotent and quiet when everything is already there.
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config git clang llvm libbpf-dev bpftool libelf-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev libssl-dev
  prometheus-cpp-dev googletest libgtest-dev libgmock-dev libbenchmark-dev libnghttp2-dev libre2-dev
  libcurl4-openssl-dev nlohmann-json3-dev libyaml-cpp-dev libboost-dev
  iproute2 iptables iperf3 wrk nghttp2-client tshark procps psmisc curl ca-certificates prometheus haproxy
  linux-perf
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev gnuplot-nox libcli11-dev
  python3 clang-14 libfuzzer-14-dev chromium containernetworking-plugins)
# weftctl dashboard's page is built with npm (web/dashboard); a node that brings its own npm
# (e.g. from another repository) is kept as it is.
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "weft: installing ${#missing[@]} packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
