#!/usr/bin/env bash
# The test suite: set up if needed, lint, then run pytest (slow tests deselected;
# pass -m slow to run them). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
"$root/.venv/bin/ruff" check geopeft tests
"$root/.venv/bin/ruff" format --check geopeft tests
exec "$root/.venv/bin/python" -m pytest -q "$@"
