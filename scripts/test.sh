#!/usr/bin/env bash
# Run the whole test suite (slow and browser tests included) in the project's environment.
# Data: ../shared/data beside the checkout, or the folder named by $CDVAE_DATA_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
export CDVAE_CACHE_DIR="${CDVAE_CACHE_DIR:-$PWD/.cache/cdvae_core}"
exec .venv/bin/python -m pytest -m "slow or browser or not (slow or browser)" --durations=25 "$@"
