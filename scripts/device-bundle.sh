#!/usr/bin/env bash
# Packs what scripts/device-bench.sh needs on a GPU machine that cannot reach the network
# into .device-bundle/ (git-ignored): the node binary, the runtime node_modules (Dawn's
# linux-x64 build only), the built dist/, and Debian's libvulkan1. Compressed with xz so it
# travels in well under 64 MiB (node alone is ~100 MB raw).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.device-bundle
rm -rf "$dest" && mkdir -p "$dest"
grep -qx '/.device-bundle/' .git/info/exclude 2>/dev/null || echo '/.device-bundle/' >>.git/info/exclude

npm run build >/dev/null
xz -T0 -6 -c "$(command -v node)" >"$dest/node.xz"
# Runtime dependencies only (what `npm ls --omit=dev` lists), without Dawn's other platforms.
deps=$(npm ls --omit=dev --parseable --all 2>/dev/null | sed "s|^$PWD/||" | grep '^node_modules/' | sort -u)
# shellcheck disable=SC2086
tar -cJf "$dest/node_modules.tar.xz" --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' \
  --exclude='node_modules/webgpu/dist/linux-arm64' $deps
tar -cJf "$dest/dist.tar.xz" dist
(cd "$dest" && apt-get download libvulkan1 >/dev/null 2>&1) || echo "device-bundle: apt-get download libvulkan1 failed; the GPU machine must have the Vulkan loader" >&2
du -sh "$dest"/* >&2
