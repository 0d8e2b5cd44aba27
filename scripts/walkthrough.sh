#!/usr/bin/env bash
# An offline walk-through of the CLI: installs build dependencies, builds
# bin/basefs and runs the offline commands in a throw-away home (genkey,
# bootstrap, write, grant, log, revert, verify), showing each as it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/deps.sh
go build -o bin/basefs ./cmd/basefs
basefs() { ./bin/basefs "$@"; }
home=$(mktemp -d /tmp/basefs-demo.XXXXXX)
export BASEFS_HOME="$home"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step basefs genkey;                                 basefs genkey
step basefs bootstrap demo --addr 127.0.0.1:7946;   basefs bootstrap demo --addr 127.0.0.1:7946
step 'echo "port=8080" | basefs write demo:/etc/app/app.conf'
echo "port=8080" | basefs write demo:/etc/app/app.conf
step basefs ls -l demo:/etc/app;                     basefs ls -l demo:/etc/app
step basefs genkey --key "$home/alice";              basefs genkey --key "$home/alice"
step basefs grant demo:/home/alice "$home/alice.pub"; basefs grant demo:/home/alice "$home/alice.pub"
step 'echo "hello" | basefs write demo:/home/alice/notes --key '"$home/alice"
echo "hello" | basefs write demo:/home/alice/notes --key "$home/alice"
step 'echo "port=6666" | basefs write demo:/etc/app/app.conf --key '"$home/alice"'   # refused: no authority'
echo "port=6666" | basefs write demo:/etc/app/app.conf --key "$home/alice" || true
step 'echo "port=9090" | basefs write demo:/etc/app/app.conf'
echo "port=9090" | basefs write demo:/etc/app/app.conf
step basefs log demo;                                basefs log demo
first=$(basefs log demo:/etc/app/app.conf --json | grep '"hash"' | tail -1 | cut -d'"' -f4 | cut -c1-12)
step basefs revert demo:/etc/app/app.conf "$first";  basefs revert demo:/etc/app/app.conf "$first"
step basefs cat demo:/etc/app/app.conf;              basefs cat demo:/etc/app/app.conf
step basefs status demo;                             basefs status demo
step basefs verify demo;                             basefs verify demo
printf '\nThe demo home is %s; try more commands with BASEFS_HOME=%s ./bin/basefs help\n' "$home" "$home"
