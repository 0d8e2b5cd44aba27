#!/usr/bin/env bash
# Runs basefs's full test suite, as CI does: installs build dependencies,
# checks formatting and vet, then runs every test with the race detector.
# Pass -short for the fast tier.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/deps.sh

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
# go.mod and go.sum must say exactly what the code imports.
go mod tidy -diff
# The product builds for 32-bit, big-endian MIPS and Windows targets too.
for target in linux/386 linux/arm linux/mips windows/amd64; do
  GOOS=${target%/*} GOARCH=${target#*/} GOARM=7 GOMIPS=softfloat CGO_ENABLED=0 go build -o /dev/null ./cmd/basefs
done
go test -race -timeout 80m "$@" ./...
