"""Execute a stored notebook with parameters into a run directory (papermill).

The notebooks under ``notebooks/`` are stored without outputs; an executed copy, with its
figures, goes into a run directory::

    python -m cdvae_core.experiments.notebook_runner notebooks/evaluate.ipynb runs/eval_1 \\
        -p num_samples 200 -p tasks "['generation']"

``-p`` values are read as Python literals (``3``, ``1e-3``, ``True``, ``None``,
``['a', 'b']``, ``{'hidden': 32}``) and otherwise kept as strings. A notebook that declares an
``out_dir`` parameter writes its files into the run directory unless ``out_dir`` is given.
Relative paths in parameters are resolved from the working directory of the kernel, by default
the directory the runner is started from (run it from the repository root).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["run_notebook", "parse_value", "notebook_path", "main"]

_CHECKOUT = Path(__file__).resolve().parents[2]


def notebook_path(path: str | os.PathLike | None) -> str | None:
    """A path parameter of a notebook, read as the runner reads it: from the working directory
    where it exists there, else from the checkout's root when it exists there (JupyterLab
    starts a notebook's kernel in ``notebooks/``, the runner in the repository root, and the
    parameters' defaults, ``checkpoints/...`` and ``../shared/data``, are written for the
    latter); otherwise unchanged. ``None`` and absolute paths are returned as they are."""
    if path is None or Path(path).is_absolute() or Path(path).exists():
        return None if path is None else str(path)
    in_checkout = _CHECKOUT / path
    return str(in_checkout) if in_checkout.exists() else str(path)


def parse_value(text: str) -> Any:
    """A ``-p`` value: a Python literal if it is one (``true``/``false``/``none``/``null`` in
    any case too), else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run_notebook(
    notebook: str | os.PathLike,
    out_dir: str | os.PathLike,
    parameters: Mapping[str, Any] | None = None,
    kernel_name: str = "python3",
    cwd: str | os.PathLike | None = None,
    timeout_s: float | None = None,
    log_output: bool = False,
) -> Path:
    """Execute ``notebook`` with ``parameters`` and write the executed copy into ``out_dir``.

    Args:
        notebook: the stored notebook (its one cell tagged ``parameters`` holds the defaults).
        out_dir: run directory (created); receives ``<name>.ipynb`` and ``parameters.json``.
        parameters: overrides of the notebook's parameters; ``out_dir`` defaults to the run
            directory when the notebook declares it.
        kernel_name: Jupyter kernel to run it with.
        cwd: working directory of the kernel (default: the current one).
        timeout_s: limit per cell in seconds (None: no limit).
        log_output: stream the cells' output to this process's stdout.

    Returns:
        Path of the executed notebook.

    Raises:
        papermill.PapermillExecutionError: a cell raised; the executed copy, up to and with the
            failing cell, is still written to ``out_dir``.
    """
    import papermill

    src = Path(notebook)
    if not src.is_file():
        raise FileNotFoundError(f"notebook {src} not found")
    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    params = dict(parameters or {})
    declared = papermill.inspect_notebook(str(src))
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(f"{src.name} has no parameter(s) {unknown}; it declares "
                         f"{sorted(declared)}")
    if "out_dir" in declared and "out_dir" not in params:
        params["out_dir"] = str(run_dir.resolve())
    out_nb = run_dir / src.name
    record = {"notebook": str(src), "parameters": params, "kernel": kernel_name,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (run_dir / "parameters.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    papermill.execute_notebook(
        str(src), str(out_nb), parameters=params, kernel_name=kernel_name,
        cwd=str(cwd) if cwd is not None else None, execution_timeout=timeout_s,
        log_output=log_output, progress_bar=False,
    )
    return out_nb


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cdvae_core.experiments.notebook_runner",
        description="Execute a notebook with parameters into a run directory (papermill).",
    )
    p.add_argument("notebook", help="stored notebook, e.g. notebooks/tutorial_diffusion_on_crystals.ipynb")
    p.add_argument("out_dir", help="run directory for the executed copy (and the notebook's files)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="set a parameter (value read as a literal)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    p.add_argument("--cwd", default=None, help="working directory of the kernel")
    p.add_argument("--timeout", type=float, default=None, help="limit per cell in seconds")
    p.add_argument("--log-output", action="store_true", help="stream cell output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = {name: parse_value(value) for name, value in args.parameter}
    try:
        out = run_notebook(args.notebook, args.out_dir, params, args.kernel, args.cwd,
                           args.timeout, args.log_output)
    except Exception as exc:  # papermill's error names the failing cell; keep it short here
        print(f"notebook failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
