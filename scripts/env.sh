# Sourced by the other scripts: puts Go on PATH if it is installed in the usual
# place but not on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null 2>&1 || { echo "basefs: Go is not installed (https://go.dev/doc/install)" >&2; exit 1; }
