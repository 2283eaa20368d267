#!/usr/bin/env bash
# Checks the docs/protocol.md §9 test vectors from Python: creates .venv/vectors at the
# workspace root (gitignored), installs tests/vectors/requirements.txt quietly, runs
# check.py.
# Extra arguments go to check.py (e.g. --self-test).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv/vectors"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
exec "$venv/bin/python" "$here/check.py" "$@"
