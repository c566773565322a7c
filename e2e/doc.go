// Package e2e holds the end-to-end tests: the bridge against a real mosquitto and the simulator, the subcommands as a person runs them.
package e2e
