#!/usr/bin/env bash
# sluice setup: idempotent, non-interactive, quick when everything is present.
#   1. npm dependencies (installed when missing or older than package-lock.json)
#   2. a WebGPU adapter for Dawn (on Debian/Ubuntu without one: Mesa's lavapipe)
#   3. Chromium for the browser test (Debian's package, when /usr/bin/chromium is missing)
#   4. the compiled CLI in dist/ (rebuilt when a source file is newer than it)
# Every step checks before it acts, so a second run only probes (~1 s).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*" >&2; }

# ── 1. npm dependencies ────────────────────────────────────────────────────────
# npm writes node_modules/.package-lock.json on every install: older than the
# lockfile (or absent) means the tree is stale.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

# ── 2. WebGPU adapter ──────────────────────────────────────────────────────────
probe() { node scripts/probe-adapter.mjs 2>/dev/null; }

# Runs a command as root: directly, or through sudo when it needs no password.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@";
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@";
  else return 126; fi
}

install_lavapipe() {
  local id="" codename=""
  if [ -r /etc/os-release ]; then
    id=$(. /etc/os-release; echo "${ID:-}")
    codename=$(. /etc/os-release; echo "${VERSION_CODENAME:-}")
  fi
  local packages="mesa-vulkan-drivers libvulkan1"
  case "$id" in
    debian|ubuntu) ;;
    *)
      say "no WebGPU adapter, and this is not Debian/Ubuntu ($id): install a Vulkan driver"
      say "(Mesa >= 24 'lavapipe' for a CPU-only machine, e.g. mesa-vulkan-drivers) and the Vulkan loader (libvulkan1)"
      return 1 ;;
  esac
  local backports=""
  # bookworm's Mesa 22 is too old for Dawn; bookworm-backports carries Mesa 25.
  if [ "$id" = debian ] && [ "$codename" = bookworm ]; then
    backports=bookworm-backports
  fi
  local sources=/etc/apt/sources.list.d/sluice-bookworm-backports.sources
  local manual="apt-get install -y ${backports:+-t $backports }$packages"
  if [ -n "$backports" ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    manual="printf 'Types: deb\\nURIs: http://deb.debian.org/debian\\nSuites: bookworm-backports\\nComponents: main\\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\\n' > $sources && apt-get update && $manual"
  else
    manual="apt-get update && $manual"
  fi
  say "no WebGPU adapter found: installing Mesa's software Vulkan driver (lavapipe)${backports:+ from $backports}"
  if ! as_root true; then
    say "cannot install without root. As root, run:"
    say "  $manual"
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [ -n "$backports" ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      | as_root tee "$sources" >/dev/null
  fi
  as_root apt-get update -qq >&2
  # shellcheck disable=SC2086
  as_root apt-get install -y -qq --no-install-recommends ${backports:+-t $backports} $packages >&2
}

if ! probe >/dev/null; then
  if ! install_lavapipe || ! probe >/dev/null; then
    say "WARNING: still no WebGPU adapter; GPU commands and tests will fail with NO_ADAPTER."
    say "Diagnose with: node scripts/probe-adapter.mjs"
  fi
fi

# ── 3. Chromium for the browser end-to-end test ────────────────────────────────
# playwright-core drives the system's Chromium (no browser download: this machine has no
# access to Playwright's CDN). Without it the browser test fails, saying what is missing.
# SLUICE_CHROMIUM names another Chromium binary (the test uses the same variable).
chromium=${SLUICE_CHROMIUM:-/usr/bin/chromium}
install_chromium() {
  local id=""
  [ -r /etc/os-release ] && id=$(. /etc/os-release; echo "${ID:-}")
  case "$id" in
    debian|ubuntu) ;;
    *) say "no $chromium, and this is not Debian/Ubuntu ($id): install Chromium and set SLUICE_CHROMIUM to its path for the browser test"; return 1 ;;
  esac
  say "installing Debian's chromium (for the browser test)"
  if ! as_root true; then
    say "cannot install without root. As root, run: apt-get update && apt-get install -y chromium"
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq >&2
  as_root apt-get install -y -qq --no-install-recommends chromium >&2
}

if [ ! -x "$chromium" ]; then
  if ! install_chromium || [ ! -x "$chromium" ]; then
    say "WARNING: no $chromium; the browser test (test/e2e) will fail until it is installed."
  fi
fi

# ── 4. Compiled CLI ────────────────────────────────────────────────────────────
stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find src tsconfig.json tsconfig.build.json package.json -newer "$stamp" -print -quit)" ]; then
  say "compiling TypeScript into dist/"
  npx --no-install tsc -p tsconfig.build.json
  touch "$stamp"
fi
