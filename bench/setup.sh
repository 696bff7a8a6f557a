#!/usr/bin/env bash
# Installs what the benchmarks need, idempotently: wrk, nginx and haproxy from
# Debian, perf when the kernel allows it, a Python venv with Flask, gunicorn and
# requests under target/bench-venv, and a release build of switchboard.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in wrk nginx haproxy; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
command -v perf >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf || true

venv=target/bench-venv
if [ ! -x "$venv/bin/gunicorn" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q flask gunicorn requests
fi

cargo build --release -q -p switchboard
