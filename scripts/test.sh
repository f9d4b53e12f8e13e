#!/usr/bin/env bash
# Run every test of ghostcache on this machine, installing what a fresh Debian lacks.
#
#   ./scripts/test.sh            # the whole suite (unit, HTTP, onion end-to-end, browsers)
#   ./scripts/test.sh <filter>   # only tests whose name contains <filter>
#
# Needs: a Rust toolchain (cargo), and either root or sudo to install the Debian packages
# tor, chromium, chromium-driver, firefox-esr, npm, strace and python3-cryptography when
# they are missing. Then, once, and cached for later runs (nothing is downloaded while the
# tests run):
# - geckodriver, Firefox's WebDriver server, built from crates.io with cargo into cargo's
#   bin directory (4 minutes measured on 2 cores busy with other builds);
# - axe-core, the accessibility checker, from npm into ~/.cache/ghostcache-test (it has no
#   install scripts, and none are run).
#
# Firefox: Debian's firefox-esr as the distribution ships it (bookworm-security's 153 ESR
# today). Tor Browser is built on Firefox 140 ESR; the browser tests pass the same on
# 140.12 (from the main archive), and an older build pinned here would vanish from the
# mirrors at the next point release. GC_FIREFOX=/path/to/firefox runs them on another.
set -euo pipefail
cd "$(dirname "$0")/.."

GECKODRIVER_VERSION=0.37.1
AXE_VERSION=4.14.1

need_pkgs=()
command -v tor >/dev/null 2>&1 || need_pkgs+=(tor)
command -v tor-gencert >/dev/null 2>&1 || need_pkgs+=(tor)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
command -v firefox-esr >/dev/null 2>&1 || need_pkgs+=(firefox-esr)
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
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

# geckodriver: built once from crates.io, then found in cargo's bin directory.
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
geckodriver="$cargo_bin/geckodriver"
if ! "$geckodriver" --version 2>/dev/null | grep -q "^geckodriver $GECKODRIVER_VERSION\b"; then
    echo "test.sh: building geckodriver $GECKODRIVER_VERSION with cargo (once)" >&2
    nice cargo install --quiet --locked --version "$GECKODRIVER_VERSION" geckodriver
fi
export GC_GECKODRIVER="$geckodriver"

# axe-core: installed once with npm, without running any install script.
axe_dir="${XDG_CACHE_HOME:-$HOME/.cache}/ghostcache-test/axe-core-$AXE_VERSION"
if [ ! -f "$axe_dir/node_modules/axe-core/axe.min.js" ]; then
    echo "test.sh: installing axe-core $AXE_VERSION with npm (once)" >&2
    mkdir -p "$axe_dir"
    npm install --prefix "$axe_dir" --ignore-scripts --no-audit --no-fund --no-save --silent \
        "axe-core@$AXE_VERSION"
fi
export GC_AXE_JS="$axe_dir/node_modules/axe-core/axe.min.js"

# The binary and the library are built once; all integration tests are one test binary.
cargo test --locked --all-targets -- "$@"
