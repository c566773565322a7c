#!/usr/bin/env bash
# The whole test suite: installs mosquitto and docker-compose when they are
# missing (the tests start their own brokers on free loopback ports), then
# checks formatting, vets and runs every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"

# What the tests need from Debian: a real broker (with mosquitto_passwd)
# and docker-compose, which validates the compose file without an engine.
missing=""
command -v mosquitto >/dev/null 2>&1 || missing="$missing mosquitto"
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
if [ -n "$missing" ]; then
	echo "test.sh: installing$missing (Debian packages)"
	sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	$sudo apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "test.sh: gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -race -count=1 -timeout 10m ./...
# The demo's embedded broker (mochi) has a known data race of its own
# (mochi-mqtt/server#200); its tests are built without -race.
go test -count=1 -timeout 5m -run 'TestDemo' .
