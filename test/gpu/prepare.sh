#!/usr/bin/env bash
# Builds the offline GPU kit, test/gpu/kit/ (gitignored), for test/gpu/run.sh on a machine that has a
# GPU driver and nothing else (no Node.js, no network). Run here after `pnpm install`:
#   node.xz            this machine's Node.js binary          (xz -T2 -9 < "$(command -v node)")
#   libvulkan.so.1.xz  the Vulkan loader from Debian's libvulkan1
#   check.mjs          test/gpu/check.ts bundled with @wgit/core (esbuild), `webgpu` left external
#   node_modules/webgpu/{index.js,package.json,dist/linux-x64/dawn.node.xz}
# About 35 MB in all; carry the folder with the working tree.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
kit=$root/test/gpu/kit
rm -rf "$kit"
mkdir -p "$kit/node_modules/webgpu/dist/linux-x64"
xz -T2 -9 < "$(command -v node)" > "$kit/node.xz"
loader=$(readlink -f /usr/lib/x86_64-linux-gnu/libvulkan.so.1 2>/dev/null || true)
[ -f "$loader" ] || { echo "libvulkan.so.1 not found: apt-get install libvulkan1" >&2; exit 1; }
xz -T2 -9 < "$loader" > "$kit/libvulkan.so.1.xz"
w=$root/packages/core/node_modules/webgpu
cp "$w/index.js" "$w/package.json" "$kit/node_modules/webgpu/"
xz -T2 -6 < "$w/dist/linux-x64/dawn.node" > "$kit/node_modules/webgpu/dist/linux-x64/dawn.node.xz"
esbuild=$(ls "$root"/node_modules/.pnpm/esbuild@*/node_modules/esbuild/bin/esbuild | head -1)
"$esbuild" "$root/test/gpu/check.ts" --bundle --platform=node --format=esm --target=node20 \
  --conditions=wgit-source --external:webgpu --log-level=warning --outfile="$kit/check.mjs" \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
du -sh "$kit"
