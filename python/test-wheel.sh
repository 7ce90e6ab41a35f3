#!/usr/bin/env bash
# Installs dist/oect-*.whl (from build-wheel.sh) into a fresh virtualenv,
# target/wheel-test, and runs python/tests with its interpreter: the installed files and
# the libraries they link, the command line from the venv, the Python API, and the
# predecessor-compatible entry points including its migration guide's user code.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
start=$SECONDS
wheels=(dist/oect-*.whl)
if [[ ${#wheels[@]} -ne 1 || ! -f ${wheels[0]} ]]; then
    echo "expected one dist/oect-*.whl (run python/build-wheel.sh): ${wheels[*]}" >&2
    exit 1
fi
venv="$root/target/wheel-test"
rm -rf "$venv"
python3 -m venv "$venv"
# polars and tqdm: the optional read_polars and the tqdm progress bar are tested too;
# ruff lints the package and the tests (config in python/pyproject.toml).
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "${wheels[0]}[polars]" pytest tqdm ruff
echo "installed ${wheels[0]} into $venv in $((SECONDS - start)) s"
"$venv/bin/ruff" check python
"$venv/bin/ruff" format --check python
"$venv/bin/python" -m pytest -p no:cacheprovider -q python/tests
echo "wheel tests done in $((SECONDS - start)) s"
