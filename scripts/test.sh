#!/usr/bin/env bash
# herd's tests on a fresh machine: installs what they need when it is missing, then runs them.
#
#     bash scripts/test.sh            # extra arguments go to `cargo test`, e.g. a test's name
#
# What the tests need beyond a Rust toolchain:
# - python3, sh and sleep: the supervisor tests run real worker programs;
# - Debian's chromium and chromium-driver: the dashboard test drives a real headless browser;
# - iproute2 (ip, bridge): the multi-host tests make network namespaces (as root).
# Packages are installed with apt-get (as root, or through sudo when it is there); a missing one
# that cannot be installed stops the script naming it, before any test runs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo is not installed; herd needs a Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi

need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
command -v ip >/dev/null 2>&1 || need+=(iproute2)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "scripts/test.sh: the tests need ${need[*]}; install them as root (apt-get install ${need[*]})" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: the tests need ${need[*]} and this machine has no apt-get; install them and run again" >&2
    exit 1
  fi
  echo "scripts/test.sh: installing ${need[*]}" >&2
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

exec cargo test --locked "$@"
