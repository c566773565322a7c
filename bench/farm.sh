#!/usr/bin/env bash
# Measures the built bridge at farm scale against a stock mosquitto and the
# simulator: CPU, memory, MQTT messages and bytes, API requests, and how
# fast a change in the cloud reaches MQTT. Flags go to the harness, e.g.
#   bench/farm.sh -printers 1000 -duration 60s -interval 10s
#   bench/farm.sh -printers 10000 -duration 30s -interval 30s
#   bench/farm.sh -idle -renames 0     (nothing changes in the cloud: nothing to publish)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Built as the Dockerfile builds it: what ships is what is measured.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/ultimaker2mqtt" .
go run ./bench/farm -bin "$out/ultimaker2mqtt" "$@"
