"""Structure and composition fingerprints of the coverage and diversity metrics (paper App. G).

* Structure fingerprint ``[61]``: matminer ``CrystalNNFingerprint.from_preset("ops")`` of every
  site, averaged over sites.
* Composition fingerprint ``[132]``: matminer ``ElementProperty.from_preset("magpie")``
  (matminer's default ``impute_nan=True``), standardised with the mean / std shipped in
  ``cdvae_core/resources/magpie_comp_scaler.json`` (the reference evaluation's scaler).

CrystalNN costs tens of milliseconds per site, so fingerprints are computed in a process pool
over the cores this process may use, and the fingerprints of a fixed reference set (a test
split) are cached on disk under a content hash of its structures and of these settings.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import matminer
import numpy as np
from pymatgen.core import Structure
from tqdm.auto import tqdm

from cdvae_core.parallel import process_map
from cdvae_core.utils import atomic_write, available_workers, default_cache_dir

__all__ = [
    "STRUCT_FP_DIM",
    "COMP_FP_DIM",
    "Fingerprints",
    "structure_fingerprint",
    "composition_fingerprint",
    "compute_fingerprints",
    "cached_fingerprints",
    "structures_digest",
    "fingerprint_settings",
    "parallel_map",
]

STRUCT_FP_DIM = 61
COMP_FP_DIM = 132
_SCALER_RESOURCE = "resources/magpie_comp_scaler.json"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Fingerprints:
    """Fingerprints of ``N`` structures; a row of NaN marks a fingerprint that failed.

    Attributes:
        struct: ``[N, 61]`` site-averaged CrystalNN fingerprints.
        comp: ``[N, 132]`` standardised Magpie composition fingerprints.
    """

    struct: np.ndarray
    comp: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        """``[N]`` bool: both fingerprints of the structure are finite."""
        return np.isfinite(self.struct).all(axis=1) & np.isfinite(self.comp).all(axis=1)

    def __len__(self) -> int:
        return len(self.struct)


@functools.cache
def _comp_scaler() -> tuple[np.ndarray, np.ndarray, str]:
    """``(mean [132], std [132], sha256 of the file)`` of the shipped Magpie scaler."""
    raw = importlib.resources.files("cdvae_core").joinpath(_SCALER_RESOURCE).read_bytes()
    data = json.loads(raw)
    mean = np.asarray(data["means"], dtype=np.float64)
    std = np.asarray(data["stds"], dtype=np.float64)
    if mean.shape != (COMP_FP_DIM,) or std.shape != (COMP_FP_DIM,):
        raise ValueError(f"{_SCALER_RESOURCE}: expected {COMP_FP_DIM} means and stds")
    return mean, std, hashlib.sha256(raw).hexdigest()


@functools.cache
def _crystalnn_featurizer():
    from matminer.featurizers.site import CrystalNNFingerprint

    return CrystalNNFingerprint.from_preset("ops")


@functools.cache
def _magpie_featurizer():
    from matminer.featurizers.composition import ElementProperty

    return ElementProperty.from_preset("magpie")


def fingerprint_settings() -> str:
    """A string naming everything the fingerprint values depend on; part of the cache key."""
    return (
        f"crystalnn-ops-sitemean|magpie-impute|scaler-{_comp_scaler()[2][:16]}"
        f"|matminer-{matminer.__version__}|v1"
    )


def structure_fingerprint(structure: Structure) -> np.ndarray:
    """``[61]`` mean over sites of the CrystalNN "ops" site fingerprint; raises on failure."""
    featurizer = _crystalnn_featurizer()
    with warnings.catch_warnings():
        # CrystalNN warns on every site of a structure without oxidation states.
        warnings.simplefilter("ignore")
        sites = [featurizer.featurize(structure, i) for i in range(len(structure))]
    return np.asarray(sites, dtype=np.float64).mean(axis=0)


def composition_fingerprint(structure_or_composition) -> np.ndarray:
    """``[132]`` Magpie fingerprint standardised with the shipped scaler; raises on failure.

    Args:
        structure_or_composition: a :class:`Structure` or a pymatgen ``Composition``.
    """
    composition = getattr(structure_or_composition, "composition", structure_or_composition)
    mean, std, _ = _comp_scaler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = np.asarray(
            _magpie_featurizer().featurize(composition.element_composition), dtype=np.float64
        )
    return (raw - mean) / std


def _fingerprint_one(structure: Structure | None) -> tuple[np.ndarray, np.ndarray]:
    """Both fingerprints of one structure, NaN rows for what failed (runs in a worker)."""
    struct = np.full(STRUCT_FP_DIM, np.nan)
    comp = np.full(COMP_FP_DIM, np.nan)
    if structure is None or len(structure) == 0:
        return struct, comp
    try:
        struct = structure_fingerprint(structure)
        comp = composition_fingerprint(structure)
    except Exception:
        # CrystalNN fails on some strange generated cells (no Voronoi neighbours, isolated
        # atoms); such a sample drops out of the distance matrices. Both rows stay NaN: as in
        # the reference evaluation, a sample without a structure fingerprint has none at all.
        return np.full(STRUCT_FP_DIM, np.nan), np.full(COMP_FP_DIM, np.nan)
    return struct, comp


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    n_workers: int | None = None,
    desc: str = "",
    progress: bool = True,
    min_parallel: int = 16,
    what: str = "structures",
) -> list[R]:
    """``[fn(x) for x in items]`` over a process pool, in order, with a progress bar.

    Args:
        fn: a module-level (picklable) function.
        items: inputs; they are pickled to the workers in chunks.
        n_workers: processes; default all cores this process may use
            (``len(os.sched_getaffinity(0))``). 1 runs in this process.
        desc: progress-bar label (and the subject of a worker error).
        progress: show a tqdm bar.
        min_parallel: fewer items than this run in this process (a pool costs more).
        what: what an item is, for the message of a dead worker.

    Raises:
        cdvae_core.parallel.WorkerError: a worker died or stalled (never a hang).
    """
    workers = min(n_workers or available_workers(), len(items))
    if workers <= 1 or len(items) < min_parallel:
        bar = dict(total=len(items), desc=desc, disable=not progress, mininterval=1.0)
        return [fn(x) for x in tqdm(items, **bar)]
    # Chunks small enough for an even spread and a moving bar, large enough to amortise pickling;
    # cdvae_core.parallel's forkserver workers import this module only (matminer, pymatgen).
    chunksize = max(1, min(32, len(items) // (workers * 8)))
    return process_map(fn, items, workers, desc=desc, progress=progress, chunksize=chunksize,
                       what=what)


def compute_fingerprints(
    structures: Sequence[Structure | None],
    n_workers: int | None = None,
    progress: bool = True,
) -> Fingerprints:
    """Fingerprints of ``structures`` (``None`` entries give NaN rows), computed in parallel.

    Args:
        structures: ``N`` structures.
        n_workers: worker processes (default: all available cores).
        progress: show a progress bar.

    Returns:
        :class:`Fingerprints` with ``struct [N, 61]`` and ``comp [N, 132]``.
    """
    rows = parallel_map(
        _fingerprint_one, list(structures), n_workers, desc="fingerprints", progress=progress
    )
    struct = np.stack([r[0] for r in rows]) if rows else np.zeros((0, STRUCT_FP_DIM))
    comp = np.stack([r[1] for r in rows]) if rows else np.zeros((0, COMP_FP_DIM))
    return Fingerprints(struct=struct, comp=comp)


def structures_digest(structures: Sequence[Structure | None]) -> str:
    """sha256 over lattices, atomic numbers and fractional coordinates of ``structures``.

    Values are rounded to 1e-6 (and -0.0 folded into 0.0) so that the same crystals read from
    two CIF copies hash alike; the fingerprint settings are included, so a change of matminer
    version or scaler gives a new key.
    """
    h = hashlib.sha256(fingerprint_settings().encode())
    for structure in structures:
        if structure is None:
            h.update(b"|none")
            continue
        h.update(b"|s")
        h.update(np.round(structure.lattice.matrix, 6).astype(np.float64).tobytes())
        h.update(np.asarray(structure.atomic_numbers, dtype=np.int64).tobytes())
        h.update((np.round(structure.frac_coords, 6) + 0.0).astype(np.float64).tobytes())
    return h.hexdigest()


def cached_fingerprints(
    structures: Sequence[Structure | None],
    cache_dir: str | Path | None = None,
    n_workers: int | None = None,
    progress: bool = True,
) -> Fingerprints:
    """:func:`compute_fingerprints`, stored in ``cache_dir`` as ``.npz`` for the next call.

    Meant for a reference set (a test split) evaluated against many generated sets. The file is
    keyed by :func:`structures_digest`; a missing, unreadable or mismatched file is recomputed
    and rewritten atomically (temporary file, then :func:`os.replace`).

    Args:
        structures: ``N`` structures.
        cache_dir: folder of the cache; default ``$CDVAE_CACHE_DIR`` or ``~/.cache/cdvae_core``.
        n_workers: worker processes for a cache miss.
        progress: show a progress bar on a cache miss.
    """
    digest = structures_digest(structures)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / "fingerprints" / f"fp-{digest[:32]}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["digest"]) == digest and len(data["struct"]) == len(structures):
                    return Fingerprints(struct=data["struct"], comp=data["comp"])
        except Exception:
            pass  # a damaged cache file is recomputed below
    fps = compute_fingerprints(structures, n_workers=n_workers, progress=progress)
    with atomic_write(path, "wb") as fh:
        np.savez(fh, struct=fps.struct, comp=fps.comp, digest=np.array(digest))
    return fps
