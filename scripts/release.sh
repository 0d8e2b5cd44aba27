#!/usr/bin/env bash
# Builds basefs for every platform operators run, and a Debian package.
#
#   scripts/release.sh [VERSION]        # default: git describe
#   DEB_ONLY=1 scripts/release.sh       # only linux/amd64 and the .deb
#
# dist/basefs-VERSION-OS-ARCH/basefs for each target (without cgo: no mount
# except on linux/amd64, which is built with cgo and FUSE), their sizes in
# dist/SIZES, and dist/basefs_VERSION_amd64.deb with the binary, the
# basefs@.service template unit, man pages and shell completions.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/deps.sh

version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
ldflags="-s -w -X github.com/basefs/basefs/version.version=$version -X github.com/basefs/basefs/version.commit=$commit"
rm -rf dist && mkdir -p dist
: > dist/SIZES

build() { # os arch [GOARM|GOMIPS value] [cgo]
  local os=$1 arch=$2 variant=${3:-} cgo=${4:-0} suffix=""
  local env=(GOOS="$os" GOARCH="$arch" CGO_ENABLED="$cgo")
  case "$arch" in
    arm) env+=(GOARM="$variant"); suffix="v$variant" ;;
    mips|mipsle) env+=(GOMIPS="$variant"); suffix="-$variant" ;;
  esac
  local exe=basefs
  [ "$os" = windows ] && exe=basefs.exe
  local dir="dist/basefs-$version-$os-$arch$suffix"
  mkdir -p "$dir"
  env "${env[@]}" go build -trimpath -ldflags "$ldflags" -o "$dir/$exe" ./cmd/basefs
  printf '%-28s %9d bytes\n' "$os/$arch$suffix" "$(stat -c %s "$dir/$exe")" | tee -a dist/SIZES
}

build linux amd64 "" 1
[ "${DEB_ONLY:-}" = 1 ] || for t in linux/arm64 linux/386 linux/riscv64 darwin/amd64 darwin/arm64 freebsd/amd64 windows/amd64; do
  build "${t%/*}" "${t#*/}"
done
if [ "${DEB_ONLY:-}" != 1 ]; then
  build linux arm 7
  build linux arm 6
  build linux mips softfloat
  build linux mipsle softfloat
fi

# The Debian package (amd64, with the mount).
bin="dist/basefs-$version-linux-amd64/basefs"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$bin" "$root/usr/bin/basefs"
install -D -m 0644 packaging/basefs@.service "$root/lib/systemd/system/basefs@.service"
install -d -m 0755 "$root/etc/basefs" "$root/var/lib/basefs"
install -d "$root/usr/share/man/man1"
"$bin" man "$root/usr/share/man/man1"
gzip -9n "$root"/usr/share/man/man1/*.1
install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
"$bin" completion bash > "$root/usr/share/bash-completion/completions/basefs"
"$bin" completion zsh > "$root/usr/share/zsh/vendor-completions/_basefs"
"$bin" completion fish > "$root/usr/share/fish/vendor_completions.d/basefs.fish"
debversion=${version#v}
case "$debversion" in [0-9]*) ;; *) debversion="0.0.0~$debversion" ;; esac
install -d "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: basefs
Version: $debversion
Architecture: amd64
Maintainer: basefs developers <basefs@localhost>
Depends: fuse | fuse3
Section: net
Priority: optional
Homepage: https://github.com/basefs/basefs
Description: peer-to-peer, eventually consistent configuration filesystem
 Nodes share one tree of configuration files with no central server;
 writes are signed, spread by gossip and checked by every node; scripts
 run when files change. One systemd instance per filesystem: basefs@NAME.
CONTROL
deb="dist/basefs_${debversion}_amd64.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
printf '%-28s %9d bytes\n' "deb" "$(stat -c %s "$deb")" | tee -a dist/SIZES
echo "wrote $deb"
