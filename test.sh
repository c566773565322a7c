#!/usr/bin/env bash
# The whole test suite: installs mosquitto when it is missing (the tests
# start their own brokers on free loopback ports), then checks formatting,
# vets and runs every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"

if ! command -v mosquitto >/dev/null 2>&1; then
	echo "test.sh: installing mosquitto (Debian package)"
	sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mosquitto >/dev/null
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
