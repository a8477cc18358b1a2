#!/bin/sh
# Cross-builds prebuilds/linux-arm64/@buildcache+sys.glibc.node on an x64 Debian machine
# (apt-get install gcc-aarch64-linux-gnu), against the installed Node headers, in a scratch dir.
set -eu
cd "$(dirname "$0")/.."
pkg=$(pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r binding.gyp csrc scripts package.json "$scratch/"
cd "$scratch"
CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-gcc \
  npm_config_nodedir="${npm_config_nodedir:-/usr}" node-gyp rebuild --arch=arm64
aarch64-linux-gnu-strip --strip-all build/Release/sys.node
mkdir -p "$pkg/prebuilds/linux-arm64"
cp build/Release/sys.node "$pkg/prebuilds/linux-arm64/@buildcache+sys.glibc.node"
