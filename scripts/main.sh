#!/usr/bin/env bash
# The main job: set up if needed, then run `geopeft demo` (offline, CPU, minutes).
# Extra arguments go to `geopeft demo`, e.g. --data-root /path/to/UCMerced/Images.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec "$root/.venv/bin/geopeft" demo "$@"
