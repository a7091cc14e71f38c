"""Building, describing and filtering a gallery of samples (generated or read from disk)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import state
from pymatgen.core import Structure

from cdvae_core import explore
from cdvae_core.io import load_named_structures, write_cif_zip
from components.cards import describe, spacegroup_text, validity_text

MAX_SAMPLES = 2000  # a gallery is browsed by eye; larger runs belong to `cdvae evaluate`


def build(structures: list[Structure], names: list[str], ctx: state.Context,
          z=None, extra: pd.DataFrame | None = None) -> dict:
    """Gallery record: structures, their latent vectors (if generated) and a table with
    validity, formula, space group, density and the nearest test material."""
    names = _unique(names)
    table = describe(structures)
    table.insert(0, "name", names)
    table["validity"] = [validity_text(r) for _, r in table.iterrows()]
    table["spacegroup"] = [spacegroup_text(r) for _, r in table.iterrows()]
    test = ctx.whole_test  # not among a preview's first crystals only
    if test is not None:
        comp = explore.composition_vectors([s.atomic_numbers for s in structures])
        vpa = np.array([s.volume / len(s) for s in structures])
        idx, dist = explore.nearest_reference(comp, test.comp, vpa,
                                              test.table["volume_per_atom"].to_numpy())
        ref = test.table
        table["nearest_test"] = [f"{ref['formula'][i]} ({ref['material_id'][i]})" for i in idx]
        table["composition_distance"] = dist
    if extra is not None and len(extra) == len(table):
        for col in extra.columns:
            if col not in table.columns:
                table[col] = extra[col].to_numpy()
    # a fresh id per gallery: widget keys (selection ticks, pages) never leak into the next one
    return {"id": uuid.uuid4().hex[:8], "structures": structures, "z": z, "table": table}


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, -1) + 1
        out.append(n if seen[n] == 0 else f"{n}_{seen[n]}")
    return out


def read_run(path: Path) -> tuple[list[Structure], list[str], pd.DataFrame | None]:
    """Structures of an evaluation run (a folder or zip of CIFs, or an extxyz file), with its
    ``per_sample.csv`` (beside or inside the folder) when present. Raises ValueError."""
    named = load_named_structures(path)
    if len(named) > MAX_SAMPLES:
        raise ValueError(f"{path}: {len(named)} structures; the gallery shows at most "
                         f"{MAX_SAMPLES} (evaluate larger runs with `cdvae evaluate`)")
    folder = path if path.is_dir() else path.parent
    csv = folder / "per_sample.csv"
    extra = pd.read_csv(csv) if csv.is_file() else None
    return [s for _, s in named], [n for n, _ in named], extra


def read_upload(name: str, data: bytes):
    """:func:`read_run` of an uploaded zip / extxyz / cif file (written to a temporary file:
    the readers take paths)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        return read_run(path)


def filtered(table: pd.DataFrame, validity: str, text: str, sort: str, descending: bool):
    view = table
    if validity != "all":
        view = view[view["valid"] == (validity == "valid")]
    if text:
        view = view[view["formula"].fillna("").str.contains(text, case=False, regex=False)
                    | view["name"].str.contains(text, case=False, regex=False)]
    return view.sort_values(sort, ascending=not descending, kind="stable", na_position="last")


def cif_zip(structures: list[Structure], names: list[str]) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return write_cif_zip(structures, Path(tmp) / "samples.zip", names).read_bytes()
