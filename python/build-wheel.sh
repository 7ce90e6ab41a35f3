#!/usr/bin/env bash
# Builds the oect wheel into dist/: the `oect` executable (HDF5 and zlib linked
# statically, feature `static-hdf5`), the built-in plugin libraries in
# <prefix>/lib/oect/plugins, and the Python package `oect` (python/oect).
#
# Needs a Rust toolchain, a C compiler and python3 with venv; the build tools (maturin,
# auditwheel, and cmake >= 3.26 for HDF5 2.x, newer than Debian 12's) are installed from
# PyPI into target/wheel-tools on first use. Cargo builds into target/dist (profile
# `dist`), so the system-HDF5 build in target/release is left alone.
#
# OECT_WHEEL_PROFILE=dev builds the same wheel from the debug build that `cargo test
# --workspace` leaves in target/debug (only HDF5, zlib and the host are compiled again):
# CI uses it to test the packaging in minutes; releases use the default `dist`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
start=$SECONDS
profile="${OECT_WHEEL_PROFILE:-dist}"
case "$profile" in
    dist) out=target/dist strip=() ;;
    # Line tables are all the debug build carries; they stay out of the wheel.
    dev) out=target/debug strip=(--strip) ;;
    *) echo "OECT_WHEEL_PROFILE must be dist or dev, not '$profile'" >&2; exit 2 ;;
esac

tools="$root/target/wheel-tools"
if [[ ! -x "$tools/bin/maturin" || ! -x "$tools/bin/auditwheel" || ! -x "$tools/bin/cmake" ]]; then
    rm -rf "$tools"
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet --disable-pip-version-check \
        "maturin>=1.9,<2" "auditwheel>=6" "cmake>=3.26"
fi
export PATH="$tools/bin:$PATH"

# The built-in plugins, staged where maturin takes the wheel's data files from; they
# install to <prefix>/lib/oect/plugins, on <prefix>/bin/oect's plugin search path. Built
# on their own: maturin builds the host alone, and a build of both together would unify
# features differently and compile the host's crates twice.
cargo build --locked --profile "$profile" -p oect-transfer -p oect-transient
stage=python/oect.data/data/lib/oect/plugins
rm -rf python/oect.data
mkdir -p "$stage"
cp "$out/liboect_transfer.so" "$out/liboect_transient.so" "$stage/"
if [[ $profile == dev ]]; then strip --strip-debug "$stage"/*.so; fi

rm -f dist/oect-*.whl
(cd python && maturin build --locked --profile "$profile" "${strip[@]}" --out "$root/dist")
wheel=$(ls dist/oect-*.whl)

# Every ELF file in the wheel (executable and plugins) against the manylinux policies.
auditwheel show "$wheel"
echo "built $wheel: $(du -k "$wheel" | cut -f1) KiB in $((SECONDS - start)) s"
