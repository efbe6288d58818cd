#!/usr/bin/env bash
# sluice on a real GPU, in one JSON document on stdout: the adapter, `bench kernels` for
# both kernel families (gpu, what a real adapter loads, and software, for the comparison),
# and `bench generate --synthetic` for llama-3.2-1b (f16 on both families, and q4) and
# qwen3-0.6b.
#
# For a bare Linux x86-64 machine with an NVIDIA GPU and its driver. It sets up what the
# CLI needs, from the network when there is one, else from a bundle made on a machine
# that has one (scripts/device-bundle.sh; SLUICE_DEVICE_BUNDLE, default .device-bundle):
#   node ≥ 20               PATH, else the bundle's node
#   node_modules, dist      npm ci + npm run build, else the bundle's
#   the Vulkan loader       libvulkan.so.1 (Dawn's backend on Linux): apt-get, else the bundle's .deb
#   the NVIDIA ICD          the driver ships it; where it sits outside the loader's search
#                           path (containers mount it under /usr/local/nvidia), VK_DRIVER_FILES
# Progress goes to stderr; stdout is the JSON alone. SLUICE_DEVICE_QUICK=1: fewer tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${SLUICE_DEVICE_BUNDLE:-.device-bundle}
log() { echo "device-bench: $*" >&2; }
online() { timeout 5 bash -c 'exec 3<>/dev/tcp/registry.npmjs.org/443' 2>/dev/null; }

# ── node ──
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 20 ]; then
  [ -f "$bundle/node.xz" ] || { log "node ≥ 20 is missing and $bundle/node.xz is not there (scripts/device-bundle.sh makes it)"; exit 1; }
  mkdir -p /tmp/sluice-node && xz -dc "$bundle/node.xz" >/tmp/sluice-node/node && chmod +x /tmp/sluice-node/node
  export PATH="/tmp/sluice-node:$PATH"
fi
log "node $(node --version)"

# ── node_modules and dist ──
if [ ! -d node_modules/webgpu ]; then
  if online; then npm ci --no-audit --no-fund >&2
  elif [ -f "$bundle/node_modules.tar.xz" ]; then tar -xJf "$bundle/node_modules.tar.xz"
  else log "no node_modules, no network and no $bundle/node_modules.tar.xz"; exit 1; fi
fi
if [ ! -f dist/cli/main.js ]; then
  if [ -x node_modules/.bin/tsc ]; then npm run build >&2
  elif [ -f "$bundle/dist.tar.xz" ]; then tar -xJf "$bundle/dist.tar.xz"
  else log "no dist/ and no way to build it"; exit 1; fi
fi

# ── Vulkan loader and NVIDIA ICD ──
if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
  if online && command -v apt-get >/dev/null; then apt-get install -y -q libvulkan1 >&2
  elif compgen -G "$bundle/*.deb" >/dev/null; then for f in "$bundle"/*.deb; do dpkg -x "$f" /; done; ldconfig
  else log "libvulkan.so.1 is missing (apt-get install libvulkan1)"; exit 1; fi
fi
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/icd.d/nvidia_icd.json; do
    [ -f "$icd" ] && export VK_DRIVER_FILES="$icd" && break
  done
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true

# ── the runs ──
out=$(mktemp -d)
tokens=64; [ "${SLUICE_DEVICE_QUICK:-}" = 1 ] && tokens=16
run() { # name, args…: one command's JSON into $out/name.json; a failure is recorded, not fatal
  local name=$1; shift
  log "$name: sluice $*"
  if node bin/sluice.js "$@" --json >"$out/$name.json" 2>"$out/$name.err"; then :; else
    node -e 'const fs=require("fs");fs.writeFileSync(process.argv[1],JSON.stringify({error:fs.readFileSync(process.argv[2],"utf8").trim().split("\n").slice(-5).join("\n")}))' "$out/$name.json" "$out/$name.err"
  fi
}
run adapter gpu
run kernels bench kernels --kernels gpu
run kernels_software bench kernels --kernels software
run llama_f16 bench generate --synthetic llama-3.2-1b --dtype f16 --tokens "$tokens"
run llama_f16_software bench generate --synthetic llama-3.2-1b --dtype f16 --kernels software --tokens "$tokens"
run llama_q4 bench generate --synthetic llama-3.2-1b --dtype f16 --quantize q4 --tokens "$tokens"
run qwen3_f16 bench generate --synthetic qwen3-0.6b --dtype f16 --tokens "$tokens"
node -e '
  const fs = require("fs"), dir = process.argv[1];
  const doc = { date: new Date().toISOString(), host: require("os").hostname() };
  for (const name of ["adapter", "kernels", "kernels_software", "llama_f16", "llama_f16_software", "llama_q4", "qwen3_f16"]) {
    try { doc[name] = JSON.parse(fs.readFileSync(`${dir}/${name}.json`, "utf8")); } catch (e) { doc[name] = { error: String(e.message) }; }
  }
  process.stdout.write(JSON.stringify(doc, null, 2) + "\n");
' "$out"
