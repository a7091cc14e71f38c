"""Benchmark CSV -> checked crystal records with CrystalNN graphs, built in parallel and cached.

A :class:`CrystalDataset` keeps every crystal of a split in a few flat tensors (coordinates,
types, graph edges, with per-crystal counts), so a whole batch is gathered with a handful of
vectorised index operations. For the 5-atom crystals of Perov-5 that is far cheaper than
collating one torch-geometric ``Data`` object per crystal, and it lets the cache be a plain
tensor file that loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Lattice, Structure
from tqdm.auto import tqdm

from cdvae_core.data.batch import CrystalBatch
from cdvae_core.data.parsing import (
    BadRowError,
    CrystalRecord,
    GraphSettings,
    process_row,
    process_structure,
)
from cdvae_core.data.registry import DatasetInfo, get_dataset_info
from cdvae_core.parallel import process_map
from cdvae_core.utils import (
    atomic_torch_save,
    available_workers,
    default_cache_dir,
    file_sha256,
)

__all__ = ["BadRow", "CrystalDataset", "default_cache_dir", "available_workers"]

log = logging.getLogger(__name__)
OnError = Literal["skip", "raise"]
_CACHE_FORMAT = 1


@dataclass(frozen=True)
class BadRow:
    """A CSV row that was rejected, and why."""

    row: int
    material_id: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row} (material_id {self.material_id}): {self.reason}"


def _report_bad_rows(bad: Sequence[BadRow], source: str, on_error: OnError) -> None:
    if not bad:
        return
    lines = "\n".join(f"  {b}" for b in bad[:20])
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    msg = f"{source}: {len(bad)} bad row(s)\n{lines}{more}"
    if on_error == "raise":
        raise BadRowError(msg)
    print(f"{msg}\n{source}: skipped {len(bad)} bad row(s)", file=sys.stderr)


class CrystalDataset(torch.utils.data.Dataset):
    """All crystals of one split as flat tensors, with their encoder graphs.

    ``dataset[i]`` returns ``i``; :meth:`collate` turns a list of indices into a
    :class:`CrystalBatch`, so ``DataLoader(ds, batch_size=..., collate_fn=ds.collate)`` works
    (with samplers, distributed samplers included).
    """

    def __init__(
        self,
        storage: dict,
        info: DatasetInfo,
        source: str = "",
        bad_rows: Sequence[BadRow] = (),
    ):
        self.info = info
        self.source = source
        self.bad_rows = list(bad_rows)
        self.frac_coords: torch.Tensor = storage["frac_coords"]
        self.atom_types: torch.Tensor = storage["atom_types"]
        self.num_atoms: torch.Tensor = storage["num_atoms"]
        self.lengths: torch.Tensor = storage["lengths"]
        self.angles_deg: torch.Tensor = storage["angles_deg"]
        self.edge_index: torch.Tensor = storage["edge_index"]
        self.images: torch.Tensor = storage["images"]
        self.num_edges: torch.Tensor = storage["num_edges"]
        self.prop: torch.Tensor = storage["prop"]
        self.material_ids: list[str] = list(storage["material_ids"])
        self.rows: list[int] = list(storage["rows"])
        self.atom_start = torch.cumsum(self.num_atoms, 0) - self.num_atoms
        self.edge_start = torch.cumsum(self.num_edges, 0) - self.num_edges

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_records(
        cls,
        records: Sequence[CrystalRecord],
        info: DatasetInfo,
        props: Sequence[float] | None = None,
        material_ids: Sequence[str] | None = None,
        rows: Sequence[int] | None = None,
        source: str = "",
        bad_rows: Sequence[BadRow] = (),
    ) -> CrystalDataset:
        n = len(records)
        cat = lambda xs, shape, dt: (  # noqa: E731
            torch.from_numpy(np.concatenate(xs)) if xs else torch.zeros(shape, dtype=dt)
        )
        storage = {
            "frac_coords": cat([r.frac_coords for r in records], (0, 3), torch.float64),
            "atom_types": cat([r.atom_types for r in records], (0,), torch.int64),
            "num_atoms": torch.tensor([len(r.atom_types) for r in records], dtype=torch.int64),
            "lengths": torch.tensor(np.array([r.lengths for r in records]).reshape(n, 3)),
            "angles_deg": torch.tensor(np.array([r.angles_deg for r in records]).reshape(n, 3)),
            "edge_index": (
                torch.from_numpy(np.concatenate([r.edge_index for r in records], axis=1))
                if records
                else torch.zeros((2, 0), dtype=torch.int64)
            ),
            "images": cat([r.images for r in records], (0, 3), torch.int64),
            "num_edges": torch.tensor([r.edge_index.shape[1] for r in records], dtype=torch.int64),
            "prop": torch.tensor(
                list(props) if props is not None else [float("nan")] * n, dtype=torch.float64
            ),
            "material_ids": [str(m) for m in (material_ids or range(n))],
            "rows": [int(r) for r in (rows or range(n))],
        }
        return cls(storage, info, source, bad_rows)

    @classmethod
    def from_structures(
        cls,
        structures: Sequence[Structure],
        dataset: str | DatasetInfo = "perov_5",
        props: Sequence[float] | None = None,
        material_ids: Sequence[str] | None = None,
        settings: GraphSettings = GraphSettings(),
        on_error: OnError = "raise",
        workers: int | None = None,
        progress: bool = False,
    ) -> CrystalDataset:
        """Dataset of in-memory pymatgen structures (a user's CIFs, generated samples); graphs
        of 64 structures or more are built on a process pool (:mod:`cdvae_core.parallel`)."""
        info = dataset if isinstance(dataset, DatasetInfo) else get_dataset_info(dataset)
        ids = [str(m) for m in (material_ids or range(len(structures)))]
        jobs = [(i, s, info.max_atoms, settings) for i, s in enumerate(structures)]
        workers = workers or available_workers()
        if workers > 1 and len(jobs) >= 64:  # CrystalNN dominates; a pool pays off
            done = process_map(process_structure, jobs, workers, desc="structures",
                               progress=progress, chunksize=16, what="structures")
        else:
            done = [process_structure(j) for j in jobs]
        records, keep, bad = [], [], []
        for i, record, reason in done:
            if record is None:
                bad.append(BadRow(i, ids[i], reason))
            else:
                records.append(record)
                keep.append(i)
        _report_bad_rows(bad, "structures", on_error)
        return cls.from_records(
            records,
            info,
            props=[props[i] for i in keep] if props is not None else None,
            material_ids=[ids[i] for i in keep],
            rows=keep,
            source="structures",
            bad_rows=bad,
        )

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike,
        dataset: str | DatasetInfo,
        cache_dir: str | os.PathLike | None = None,
        on_error: OnError = "skip",
        workers: int | None = None,
        settings: GraphSettings = GraphSettings(),
        progress: bool = True,
        use_cache: bool = True,
        on_progress: Callable[[int, int], None] | None = None,
        on_preview: Callable[[CrystalDataset], None] | None = None,
        preview_rows: int = 256,
    ) -> CrystalDataset:
        """Read a benchmark CSV file; graphs are built in parallel and cached on disk.

        ``on_progress(done, total)`` is called as rows are processed (not for a cached load),
        e.g. by the app's progress line; it runs in the calling process. ``on_preview(ds)``,
        when given and the graphs must be built, receives the dataset of the first
        ``preview_rows`` rows as soon as they are done, before the rest are built (the app
        shows their map meanwhile); a cached load calls nothing.

        The cache key is the file's SHA-256 plus the dataset and graph settings, so an edited
        file or other settings never reuse a stale cache. Bad rows are reported with row number
        (0-based data row), material_id and reason, then skipped (``on_error="skip"``) or raised
        (``"raise"``).
        """
        path = Path(path)
        info = dataset if isinstance(dataset, DatasetInfo) else get_dataset_info(dataset)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: put the benchmark CSV files of {info.name} in the data "
                "directory (or download them with `cdvae download`)"
            )
        cache_file = None
        if use_cache:
            key = hashlib.sha256(
                f"{file_sha256(path)}|{info.name}|{info.max_atoms}|{info.property_column}|"
                f"{settings.key()}|{_CACHE_FORMAT}".encode()
            ).hexdigest()[:20]
            cache_file = Path(cache_dir or default_cache_dir()) / f"{info.name}-{path.stem}-{key}.pt"
            if cache_file.is_file():
                try:
                    stored = torch.load(cache_file, weights_only=True)
                    bad = [BadRow(*b) for b in stored.pop("bad_rows")]
                    _report_bad_rows(bad, str(path), on_error)
                    return cls(stored, info, str(path), bad)
                except BadRowError:
                    raise
                except Exception as exc:  # a corrupt cache is rebuilt, never trusted
                    log.warning("ignoring unreadable cache %s (%s)", cache_file, exc)

        df = pd.read_csv(path)
        for col in ("material_id", "cif"):
            if col not in df.columns:
                raise ValueError(f"{path}: column {col!r} missing (columns: {list(df.columns)})")
        jobs = [
            (i, str(mid), cif, info.max_atoms, settings)
            for i, (mid, cif) in enumerate(zip(df["material_id"], df["cif"], strict=True))
        ]
        desc = f"{info.name}/{path.name}"
        if on_preview is not None and on_error != "raise" and len(jobs) > preview_rows > 0:
            # the first rows on their own, then the rest (the pool starts twice: about a
            # second, against minutes of waiting for a first look at a large split). With
            # on_error="raise" a load may still fail at its end: no preview of it then.
            head = _map(jobs[:preview_rows], workers, progress, desc, on_progress=(
                None if on_progress is None else lambda d, _t: on_progress(d, len(jobs))))
            try:
                on_preview(cls._assemble(head, df, info, str(path)))
            except Exception as exc:  # a failed preview never costs the whole load
                log.warning("%s: preview callback failed (%s); loading the rest", path, exc)
            tail = _map(jobs[preview_rows:], workers, progress, desc, on_progress=(
                None if on_progress is None
                else lambda d, _t: on_progress(preview_rows + d, len(jobs))))
            results = head + tail
        else:
            results = _map(jobs, workers, progress, desc, on_progress=on_progress)
        ds = cls._assemble(results, df, info, str(path))
        bad = ds.bad_rows
        if cache_file is not None:
            atomic_torch_save(ds._storage() | {"bad_rows": [
                [b.row, b.material_id, b.reason] for b in bad]}, cache_file)
        _report_bad_rows(bad, str(path), on_error)
        return ds

    @classmethod
    def _assemble(cls, results, df: pd.DataFrame, info: DatasetInfo, source: str) -> CrystalDataset:
        """The dataset of processed rows ``results`` (``(row, material_id, record, reason)``,
        ``record`` None for a bad row) of the CSV table ``df``."""
        records, rows, ids, bad = [], [], [], []
        for row, mid, record, reason in results:
            if record is None:
                bad.append(BadRow(row, mid, reason))
            else:
                records.append(record)
                rows.append(row)
                ids.append(mid)
        props = (
            pd.to_numeric(df[info.property_column], errors="coerce").to_numpy()[rows].tolist()
            if info.property_column in df.columns
            else None
        )
        return cls.from_records(records, info, props, ids, rows, source, bad)

    def _storage(self) -> dict:
        return {
            "frac_coords": self.frac_coords,
            "atom_types": self.atom_types,
            "num_atoms": self.num_atoms,
            "lengths": self.lengths,
            "angles_deg": self.angles_deg,
            "edge_index": self.edge_index,
            "images": self.images,
            "num_edges": self.num_edges,
            "prop": self.prop,
            "material_ids": self.material_ids,
            "rows": self.rows,
        }

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self.num_atoms.shape[0])

    def __getitem__(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return int(i) % len(self)

    def collate(self, indices: Sequence[int] | torch.Tensor) -> CrystalBatch:
        """Gather crystals ``indices`` into one :class:`CrystalBatch` (vectorised)."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        n_at = self.num_atoms[idx]
        n_ed = self.num_edges[idx]
        atom_idx = _ranges(self.atom_start[idx], n_at)
        edge_idx = _ranges(self.edge_start[idx], n_ed)
        new_start = torch.cumsum(n_at, 0) - n_at
        shift = torch.repeat_interleave(new_start, n_ed)
        batch = torch.repeat_interleave(torch.arange(idx.shape[0]), n_at)
        return CrystalBatch(
            frac_coords=self.frac_coords[atom_idx].float(),
            atom_types=self.atom_types[atom_idx],
            num_atoms=n_at,
            batch=batch,
            lengths=self.lengths[idx].float(),
            angles_deg=self.angles_deg[idx].float(),
            edge_index=self.edge_index[:, edge_idx] + shift,
            images=self.images[edge_idx],
            prop=self.prop[idx].float(),
            index=idx,
        )

    def subset(self, indices: Sequence[int] | torch.Tensor, source: str | None = None):
        """A new dataset holding crystals ``indices`` (in that order)."""
        b = self.collate(indices)
        idx = b.index.tolist()
        local_edges = b.edge_index - torch.repeat_interleave(
            torch.cumsum(b.num_atoms, 0) - b.num_atoms, self.num_edges[b.index]
        )
        atom_idx = _ranges(self.atom_start[b.index], b.num_atoms)
        storage = {
            "frac_coords": self.frac_coords[atom_idx],
            "atom_types": b.atom_types,
            "num_atoms": b.num_atoms,
            "lengths": self.lengths[b.index],
            "angles_deg": self.angles_deg[b.index],
            "edge_index": local_edges,
            "images": b.images,
            "num_edges": self.num_edges[b.index],
            "prop": self.prop[b.index],
            "material_ids": [self.material_ids[i] for i in idx],
            "rows": [self.rows[i] for i in idx],
        }
        return CrystalDataset(storage, self.info, source or self.source)

    def structure(self, i: int) -> Structure:
        """Crystal ``i`` as a pymatgen Structure (Niggli-reduced, canonical orientation)."""
        s, n = int(self.atom_start[i]), int(self.num_atoms[i])
        lattice = Lattice.from_parameters(*self.lengths[i].tolist(), *self.angles_deg[i].tolist())
        return Structure(
            lattice, self.atom_types[s : s + n].tolist(), self.frac_coords[s : s + n].numpy()
        )

    def structures(self, indices: Iterable[int] | None = None) -> list[Structure]:
        return [self.structure(i) for i in (range(len(self)) if indices is None else indices)]

    def __repr__(self) -> str:
        return (
            f"CrystalDataset({self.info.name}, {len(self)} crystals, "
            f"{int(self.num_atoms.sum())} atoms, source={self.source!r}, "
            f"bad_rows={len(self.bad_rows)})"
        )


def _ranges(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Concatenation of ``arange(s, s + c)`` for each pair, without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.int64)
    offsets = torch.cumsum(counts, 0) - counts
    return torch.arange(total) - torch.repeat_interleave(offsets - starts, counts)


def _map(jobs, workers: int | None, progress: bool, desc: str, on_progress=None):
    workers = workers or available_workers()
    if workers <= 1 or len(jobs) < 8:
        out = []
        for j in tqdm(jobs, total=len(jobs), desc=desc, disable=not progress, unit="crystal",
                      mininterval=1.0):
            out.append(process_row(j))
            if on_progress is not None:
                on_progress(len(out), len(jobs))
        return out
    # cdvae_core.parallel: forkserver workers that import only cdvae_core.data.parsing, and a
    # dead or stuck worker is an error naming the rows, never a hang
    chunk = max(1, min(64, len(jobs) // (workers * 8)))
    return process_map(process_row, jobs, workers, desc=desc, progress=progress,
                       chunksize=chunk, what="rows", on_progress=on_progress)
