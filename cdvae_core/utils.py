"""Small shared pieces: atomic file writes, safe checkpoint loading, cores and cache folder.

Nothing here imports the rest of the package, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "CheckpointError",
    "atomic_write",
    "atomic_torch_save",
    "safe_torch_load",
    "file_sha256",
    "available_workers",
    "default_cache_dir",
    "cpu_model",
    "cpu_info",
    "machine_record",
    "write_json_result",
]


class CheckpointError(RuntimeError):
    """A file that is not a usable checkpoint (corrupt, foreign, or from an unknown version)."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on a clean exit rename it onto ``path``.

    Args:
        path: final destination; its parent folder is created.
        mode: ``"w"`` (text, UTF-8) or ``"wb"`` (bytes).

    Yields:
        The open file object. If the body raises, the temporary file is removed and ``path`` is
        left untouched: a crash mid-write never leaves half a file, and the previous file stays.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target so that os.replace is a rename within one file system.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
        # mkstemp creates the file readable by its owner only; give it a regular file's mode.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    import torch  # here, not at the top: pool workers import this module without torch

    with atomic_write(path, "wb") as fh:
        torch.save(obj, fh)


def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with a clear :class:`CheckpointError` on failure."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(
            f"{path}: cannot be read as a safe checkpoint ({type(exc).__name__}: {first}). "
            "The file is corrupt, truncated, or not a cdvae_core checkpoint (arbitrary pickles "
            "are refused for safety)."
        ) from None


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def configure_cpu(num_threads: int | None = None) -> bool:
    """Set this process up for CPU compute: subnormal floats flushed to zero, then
    ``num_threads`` intra-op threads (``None``: leave torch's choice). Returns whether the CPU
    can flush subnormals.

    Why: gradients and radial-basis values of the networks pass through subnormal floats
    (below 1.2e-38 in float32) on their way to zero; Intel CPUs compute with those in microcode,
    up to 27 times slower per matrix product, which made a Perov-5 training step 4.6 times
    slower on one thread of a Xeon (``benchmarks/results/profile_fast_compile_perov_5_b128_1thread*.json``)
    and 2.3-2.7 times on two (``benchmarks/results/subnormals.json``). Flushing
    changes no result by more than 1e-38 (they count as zero).

    Call it first, before any parallel torch operation: the CPU flag is per thread, and torch's
    worker threads copy it from the main thread only when they are created (POSIX threads
    inherit the floating-point environment). The command-line tools, the app and ``train()``
    call it on start; it also changes numpy's arithmetic in this process the same way, which is
    why importing the library does not.
    """
    import torch

    ok = bool(torch.set_flush_denormal(True))
    if num_threads:
        torch.set_num_threads(num_threads)
    return ok


def available_workers() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_cache_dir() -> Path:
    """``$CDVAE_CACHE_DIR``, else ``~/.cache/cdvae_core`` (the data directory may be read-only)."""
    env = os.environ.get("CDVAE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "cdvae_core"


#: instruction-set flags that decide which CPU kernels torch can use (bf16 and int8 matmuls)
CPU_FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile",
                         "amx_bf16", "amx_int8")


def cpu_info() -> dict:
    """What a benchmark result must name: the processor, its cores and the instruction-set
    flags of :data:`CPU_FLAGS_OF_INTEREST` it has (read from ``/proc/cpuinfo`` on Linux)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {"cpu": cpu_model(), "logical_cores": os.cpu_count(),
            "flags": [f for f in CPU_FLAGS_OF_INTEREST if f in flags]}


def cpu_model() -> str:
    """The processor's name (for benchmark records)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_record(**extra: Any) -> dict:
    """Where a benchmark ran, as every result file records it: the platform, Python, torch (read
    from its installed metadata, so torch is not imported here), the processor
    (:func:`cpu_info`) and the 1-minute load average (above 0 means the cores were shared, which
    slows every timing); ``extra`` adds fields such as a note."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch_version, **cpu_info(),
            "load_average_1min": None if load is None else round(load, 2), **extra}


def write_json_result(path: str | os.PathLike, result: Any, show: Any = "result") -> None:
    """Print ``show`` as JSON (by default ``result`` itself; None prints nothing) and write
    ``result`` to ``path`` atomically (an interrupted benchmark leaves the previous file whole)."""
    if show is not None:
        print(json.dumps(result if show == "result" else show, indent=2), flush=True)
    with atomic_write(path) as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
