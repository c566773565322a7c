#!/usr/bin/env bash
# Measures the demo with its default printers: start to every printer state
# retained, resident memory after one minute, publishes per minute at steady
# state, and SIGTERM to exit. Takes about three minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
out=$(mktemp -d)
go build -o "$out/ultimaker2mqtt" .
go run ./bench/demofigures -bin "$out/ultimaker2mqtt" "$@"
