#!/usr/bin/env bash
# Run every test of ghostcache on this machine, installing what a fresh Debian lacks.
#
#   ./scripts/test.sh            # the whole suite (unit, HTTP, onion end-to-end, browser)
#   ./scripts/test.sh <filter>   # only tests whose name contains <filter>
#
# Needs: a Rust toolchain (cargo), and either root or sudo to install the Debian packages
# tor, chromium, chromium-driver, strace and python3-cryptography when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v tor >/dev/null 2>&1 || need_pkgs+=(tor)
command -v tor-gencert >/dev/null 2>&1 || need_pkgs+=(tor)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
command -v strace >/dev/null 2>&1 || need_pkgs+=(strace)
python3 -c 'import cryptography.fernet' >/dev/null 2>&1 || need_pkgs+=(python3-cryptography)

if [ "${#need_pkgs[@]}" -gt 0 ]; then
    # De-duplicate (tor is needed for two commands).
    mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
    echo "test.sh: installing missing Debian packages: ${need_pkgs[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "test.sh: cannot install ${need_pkgs[*]}: not root and no sudo. Install them with apt-get and run again." >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: cannot install ${need_pkgs[*]}: no apt-get (this script expects Debian or Ubuntu)." >&2
        exit 1
    fi
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo not found: install a Rust toolchain (1.92 or newer, e.g. with rustup) and run again." >&2
    exit 1
fi

# The binary and the library are built once; all integration tests are one test binary.
cargo test --locked --all-targets -- "$@"
