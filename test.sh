#!/usr/bin/env bash
# The whole test suite: installs mosquitto, docker-compose, Node.js,
# Node-RED and Chromium when they are missing (the tests start their own
# brokers on free loopback ports, run the example flow in a real Node-RED
# and the farm page in a real headless Chromium), then checks formatting,
# vets and runs every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"

# What the tests need from Debian: a real broker (with mosquitto_passwd),
# docker-compose, which validates the compose file without an engine,
# Node.js for Node-RED, and Chromium for the farm page.
missing=""
command -v mosquitto >/dev/null 2>&1 || missing="$missing mosquitto"
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
if [ -n "$missing" ]; then
	echo "test.sh: installing$missing (Debian packages)"
	sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	$sudo apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi

# What the tests need from npm: Node-RED, to run the example flow as its
# users do (e2e/nodered_test.go finds it here).
NODE_RED_DIR="${NODE_RED_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ultimaker2mqtt/node-red}"
export NODE_RED_DIR
if [ ! -f "$NODE_RED_DIR/node_modules/node-red/red.js" ]; then
	echo "test.sh: installing Node-RED 4.1.8 (npm) into $NODE_RED_DIR"
	npm install --prefix "$NODE_RED_DIR" --no-audit --no-fund --loglevel=error node-red@4.1.8 >/dev/null
fi

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "test.sh: gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
# Every test with the race detector, then the demo's without it (its
# embedded broker, mochi, has a known race: mochi-mqtt/server#200): a line
# per package as it ends and per slow test, what failed in full, and one
# line at the end (internal/testreport).
echo "test.sh: running the tests (the end-to-end ones take a few minutes)"
go run ./internal/testreport
