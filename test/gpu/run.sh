#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU and its driver, nothing else (no Node.js, no network).
# Needs test/gpu/kit/ (test/gpu/prepare.sh; carried with the working tree). Unpacks Node.js, the
# Vulkan loader and Dawn into a temporary folder, checks that the adapter is the real GPU (and says
# why not: no NVIDIA Vulkan ICD manifest, no driver library, only lavapipe), runs the parity check
# (the CPU reference as oracle) and the kernel benchmark (weighted sum and LiNeS on device-resident
# bf16 data, GB/s), and writes one file, $OUT/gpu-results.json. Bounded to about 3.5 minutes.
# WGIT_GPU_ALLOW_SOFTWARE=1 lets it run on lavapipe (to test the script itself).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$here/out}
mkdir -p "$OUT"
res=$OUT/gpu-results.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { printf '{"ok":false,"reason":"%s"}\n' "$1" > "$res"; echo "gpu check: $1" >&2; exit 1; }

kit=$here/kit
for f in node.xz libvulkan.so.1.xz check.mjs node_modules/webgpu/dist/linux-x64/dawn.node.xz; do
  [ -f "$kit/$f" ] || fail "test/gpu/kit/$f is missing: run test/gpu/prepare.sh on the build machine and carry test/gpu/kit"
done
command -v xz >/dev/null || fail "xz is not installed"
xz -dc "$kit/node.xz" > "$tmp/node" && chmod +x "$tmp/node" || fail "cannot unpack node.xz"
mkdir -p "$tmp/lib" "$tmp/xdg" && chmod 700 "$tmp/xdg"
xz -dc "$kit/libvulkan.so.1.xz" > "$tmp/lib/libvulkan.so.1" || fail "cannot unpack libvulkan.so.1.xz"
cp -r "$kit/node_modules" "$kit/check.mjs" "$tmp/"
xz -d "$tmp/node_modules/webgpu/dist/linux-x64/dawn.node.xz" || fail "cannot unpack dawn.node.xz"

# The NVIDIA Vulkan ICD: a manifest naming the driver's library. Container runtimes often mount the
# library (libGLX_nvidia.so.0) without the manifest; then write one for it.
note=""
dirs="/usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d"
nv=$(grep -lis nvidia $(for d in $dirs; do ls "$d"/*.json 2>/dev/null; done) /dev/null | head -1)
if [ -z "$nv" ] && [ "${WGIT_GPU_ALLOW_SOFTWARE:-}" != 1 ]; then
  lib=$( (ldconfig -p 2>/dev/null | grep -o '/[^ ]*libGLX_nvidia\.so\.0' ; ls /usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.0 /usr/lib64/libGLX_nvidia.so.0 2>/dev/null) | head -1)
  [ -n "$lib" ] || fail "no NVIDIA Vulkan ICD json found under /usr/share/vulkan/icd.d or /etc/vulkan/icd.d, and no libGLX_nvidia.so.0 (the driver's Vulkan part) to write one for: the container needs the graphics driver capability"
  printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$lib" > "$tmp/nvidia_icd.json"
  export VK_ICD_FILENAMES=$tmp/nvidia_icd.json
  note="no NVIDIA Vulkan ICD json under $dirs; wrote one naming $lib"
fi

smi=$(nvidia-smi -L 2>/dev/null | head -4 | tr '\n' ';' | tr -d '"' || true)
cd "$tmp"
LD_LIBRARY_PATH=$tmp/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} XDG_RUNTIME_DIR=$tmp/xdg \
  timeout 200 ./node check.mjs > check.json 2> check.err
rc=$?
NOTE=$note SMI=$smi RC=$rc ./node -e '
const fs = require("node:fs");
let check;
try { check = JSON.parse(fs.readFileSync("check.json", "utf8")); } catch { check = { error: "no result (rc " + process.env.RC + ")" }; }
const err = fs.readFileSync("check.err", "utf8").split("\n").filter((l) => l && !/artificially reduced/.test(l)).slice(-20);
const a = check.adapter;
const software = !!a && /software|llvmpipe|lavapipe|swiftshader/i.test(`${a.architecture} ${a.device} ${a.description}`);
const out = { ok: process.env.RC === "0" && !!check.parity?.ok, nvidiaSmi: process.env.SMI, icdNote: process.env.NOTE || undefined,
  software, ...check, stderr: err };
if (!a && !out.reason) out.reason = "no adapter: " + (check.error ?? "").split("\n")[0];
fs.writeFileSync(process.argv[1], JSON.stringify(out, null, 2) + "\n");
console.log(JSON.stringify({ ok: out.ok, adapter: a?.description, parity: check.parity?.checks, bench: check.bench }));
' "$res"
exit $rc
