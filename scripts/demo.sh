#!/usr/bin/env bash
# Sets up and runs basefs: installs the build dependencies, builds bin/basefs
# and starts `basefs demo` — a local 3-node cluster on 127.0.0.1-3 that
# writes sample configuration and shows it arriving on the other nodes. It
# prints commands to try while it runs; stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/deps.sh
go build -o bin/basefs ./cmd/basefs
exec ./bin/basefs demo "$@"
