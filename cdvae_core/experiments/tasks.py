"""The paper's three tasks as reproducible runs: reconstruction, generation, property
optimisation.

Each run writes into its folder: ``structures.zip`` (one CIF per material), ``structures.extxyz``,
``settings.json`` (checkpoint hash, seed, sampler settings, library versions), ``summary.json``
and ``per_sample.csv`` (from :mod:`cdvae_core.metrics`). Files are written atomically and only
once the run has finished, so a failed run leaves the results of an earlier one intact.

The generation run can also relax its first valid samples with the CHGNet potential
(``relax=N``, off by default: it needs ``pip install 'cdvae-core[relax]'`` and takes seconds per
structure on a CPU), see :mod:`cdvae_core.relax`.
"""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Structure

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.registry import get_dataset_info
from cdvae_core.diffusion.langevin import LangevinConfig
from cdvae_core.io import load_named_structures, write_cif_zip, write_extxyz
from cdvae_core.metrics.evaluate import (
    evaluate_generation,
    evaluate_reconstruction,
    save_results,
    spacegroup_number,
)
from cdvae_core.metrics.optimization import reference_decode_iterations, score_optimization
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.decode import (
    DecodeConfig,
    decode_dropping_failures,
    encode_dataset,
    generate,
    reconstruct,
)
from cdvae_core.model.optimize import optimize_latent
from cdvae_core.relax import (
    RelaxResult,
    load_chgnet,
    relax_structures,
    relaxation_summary,
    require_chgnet,
)
from cdvae_core.utils import atomic_write, file_sha256

__all__ = ["RELAX_COLUMNS", "run_settings", "run_reconstruction", "run_generation",
           "read_generation_settings", "rescore_generation", "rescore_generation_property",
           "run_optimization",
           "rescore_optimization",
           "write_structures"]

#: per-sample columns of a generation run with ``relax > 0`` (empty for samples not relaxed)
RELAX_COLUMNS = ("relaxed_energy_per_atom_eV", "relax_initial_energy_per_atom_eV",
                 "relax_rms_displacement_A", "relax_volume_change", "relax_converged",
                 "relax_steps", "relaxed_spacegroup", "relax_error")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("cdvae-core", "torch", "pymatgen", "smact", "matminer", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def run_settings(task: str, checkpoint: str | Path | None, seed: int,
                 sampler: DecodeConfig | LangevinConfig | None, **extra: Any) -> dict[str, Any]:
    """What is needed to rerun and to trust a run (``sampler``: the flat dict of
    :meth:`DecodeConfig.to_dict`, the same keys as runs made before the split of the sampler
    settings)."""
    return {
        "task": task,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None,
        "seed": seed,
        "sampler": DecodeConfig.of(sampler).to_dict() if sampler is not None else None,
        "versions": _versions(),
        "device": str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        **extra,
    }


def write_structures(structures: list[Structure | None], out_dir: Path,
                     names: list[str] | None = None) -> None:
    """``structures.zip`` and ``structures.extxyz`` (failed decodes are left out, named in
    ``missing.txt``)."""
    names = names or [f"{i:05d}" for i in range(len(structures))]
    keep = [i for i, s in enumerate(structures) if s is not None]
    write_cif_zip([structures[i] for i in keep], out_dir / "structures.zip",
                  [names[i] for i in keep])
    write_extxyz([structures[i] for i in keep], out_dir / "structures.extxyz",
                 [{"name": names[i]} for i in keep])
    missing = [names[i] for i in range(len(structures)) if structures[i] is None]
    if missing:
        with atomic_write(out_dir / "missing.txt") as fh:
            fh.write("\n".join(missing) + "\n")


def _finish(out_dir: Path, settings: dict, summary: dict, table, structures, names=None):
    out_dir.mkdir(parents=True, exist_ok=True)
    write_structures(structures, out_dir, names)
    save_results(summary, table, out_dir)
    with atomic_write(out_dir / "settings.json") as fh:
        json.dump(settings, fh, indent=2, default=str)
        fh.write("\n")


def run_reconstruction(
    model: CDVAE,
    test: CrystalDataset,
    out_dir: str | Path,
    sampler: DecodeConfig | LangevinConfig = DecodeConfig(),
    seed: int = 0,
    batch_size: int = 256,
    limit: int | None = None,
    force_num_atoms: bool = False,
    force_atom_types: bool = False,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Encode every test crystal, decode it once, match against the truth (paper Table 2)."""
    t0 = time.time()
    idx = list(range(len(test) if limit is None else min(limit, len(test))))
    preds = reconstruct(model, test, sampler, seed, batch_size, force_num_atoms,
                        force_atom_types, idx, progress)
    decode_s = time.time() - t0
    truth = test.structures(idx)
    ids = [test.material_ids[i] for i in idx]
    summary, table = evaluate_reconstruction(preds, truth, ids, progress=progress)
    summary.update(num_structures=len(idx), n_failed_decodes=sum(p is None for p in preds),
                   decode_seconds=decode_s,
                   total_seconds=time.time() - t0)
    settings = run_settings("reconstruction", checkpoint, seed, sampler, test_file=test.source,
                            force_num_atoms=force_num_atoms, force_atom_types=force_atom_types)
    _finish(Path(out_dir), settings, summary, table, preds, [f"recon_{m}" for m in ids])
    return summary


def run_generation(
    model: CDVAE,
    test: CrystalDataset,
    out_dir: str | Path,
    num_samples: int = 10000,
    sampler: DecodeConfig | LangevinConfig = DecodeConfig(),
    seed: int = 0,
    batch_size: int = 256,
    property_fn=None,
    n_diversity: int = 1000,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    relax: int = 0,
    relax_steps: int = 200,
    relax_fmax: float = 0.1,
    instrument: str | None = None,
) -> dict[str, Any]:
    """``num_samples`` crystals from the prior, scored against the test set (paper Table 3).
    ``instrument`` names ``property_fn`` in the summary (``property_instrument``).

    With ``relax = N > 0`` the first ``N`` valid samples (in sample order) are also relaxed
    with CHGNet (FIRE, cell included, at most ``relax_steps`` steps, forces below
    ``relax_fmax`` eV/Å): ``summary["relaxation"]`` holds
    :func:`~cdvae_core.relax.relaxation_summary` (mean energy per atom, median RMS
    displacement, fraction that barely moves, fraction converged) and ``per_sample.csv`` the
    :data:`RELAX_COLUMNS`, empty for the samples not relaxed. CHGNet is loaded before
    sampling, so a missing package (:class:`~cdvae_core.relax.RelaxationUnavailable`) costs
    no sampling time and leaves an earlier run's files as they were.
    """
    if relax < 0:
        raise ValueError(f"relax is a number of structures, >= 0 (got {relax})")
    potential = None
    if relax:
        if relax_steps < 1 or relax_fmax <= 0:
            raise ValueError(f"need relax_steps >= 1 and relax_fmax > 0 (got {relax_steps}, "
                             f"{relax_fmax})")
        potential = load_chgnet()
    t0 = time.time()
    samples = generate(model, num_samples, sampler, seed, batch_size, progress)
    decode_s = time.time() - t0
    summary, table = evaluate_generation(
        samples, test.structures(), test.info, n_diversity=n_diversity, seed=seed,
        property_fn=property_fn, reference_ids=test.material_ids, progress=progress,
    )
    _record_instrument(summary, instrument if property_fn is not None else None)
    extra: dict[str, Any] = {}
    if relax:
        t1 = time.time()
        device = "cuda" if next(model.parameters()).is_cuda else "cpu"
        summary["relaxation"] = _relax_samples(samples, table, relax, potential, relax_steps,
                                               relax_fmax, device, progress)
        summary["timings_s"]["relaxation"] = time.time() - t1
        extra["relaxation"] = {"structures": relax, "steps": relax_steps, "fmax": relax_fmax,
                               "potential": summary["relaxation"]["potential"]}
    summary.update(num_samples=num_samples, decode_seconds=decode_s,
                   total_seconds=time.time() - t0)
    settings = run_settings("generation", checkpoint, seed, sampler, test_file=test.source,
                            num_samples=num_samples, **extra)
    _finish(Path(out_dir), settings, summary, table, samples)
    return summary


#: how runs scored before the instrument was recorded name theirs
LEGACY_INSTRUMENT = "our independent GNN predictor (checkpoints/<dataset>/predictor.pt)"


def _property_figures(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k.startswith("wdist_property")}


def _record_instrument(summary: dict, instrument: str | None) -> None:
    """Name the instrument behind ``wdist_property`` and file its figures under it."""
    summary["property_instrument"] = instrument
    if instrument is not None and "wdist_property" in summary:
        summary.setdefault("by_instrument", {})[instrument] = _property_figures(summary)


def read_generation_settings(out_dir: str | Path) -> dict[str, Any]:
    """``settings.json`` of the generation run in ``out_dir``; ``ValueError`` for another task."""
    settings = json.loads((Path(out_dir) / "settings.json").read_text())
    if settings.get("task") != "generation":
        raise ValueError(f"{out_dir} is not a generation run (settings.json task "
                         f"{settings.get('task')!r})")
    return settings


def _saved_samples(out_dir: Path, n: int) -> list[Structure | None]:
    """The ``n`` samples a generation run saved, by their names (sample numbers); None for a
    failed decode, which was not saved."""
    samples: list[Structure | None] = [None] * n
    for name, structure in load_named_structures(out_dir / "structures.extxyz"):
        index = int(name)
        if not 0 <= index < n:
            raise ValueError(f"{out_dir / 'structures.extxyz'}: sample {name!r} outside the "
                             f"run's {n} samples")
        samples[index] = structure
    return samples


def rescore_generation(
    out_dir: str | Path,
    test: CrystalDataset,
    property_fn=None,
    n_diversity: int = 1000,
    progress: bool = True,
    instrument: str | None = None,
) -> dict[str, Any]:
    """Score a finished generation run again with this version's metrics, from the structures
    it saved (no sampling): for metrics added or corrected after the run.

    ``summary.json`` and ``per_sample.csv`` are rewritten (atomically, once scoring has
    finished); the structures and ``settings.json`` stay as they are. The new summary keeps the
    run's sampling figures (``num_samples``, ``decode_seconds``, ``total_seconds``) and a
    CHGNet ``relaxation`` block with its per-sample columns, and records the rescoring under
    ``rescored`` (library versions, seconds). Failed decodes (``missing.txt``) stay failed.
    The property figures of every instrument that scored the run are kept under
    ``by_instrument`` (the top-level ``wdist_property`` is that of ``instrument``); a run scored
    before instruments were named is taken to have used our own predictor.
    """
    out_dir = Path(out_dir)
    settings = read_generation_settings(out_dir)
    old = json.loads((out_dir / "summary.json").read_text())
    n = int(old.get("num_samples") or settings["num_samples"])
    samples = _saved_samples(out_dir, n)
    t0 = time.time()
    summary, table = evaluate_generation(
        samples, test.structures(), test.info, n_diversity=n_diversity,
        seed=settings.get("seed", 0), property_fn=property_fn,
        reference_ids=test.material_ids, progress=progress,
    )
    old_table = pd.read_csv(out_dir / "per_sample.csv", index_col="sample")
    for column in RELAX_COLUMNS:
        if column in old_table:
            table[column] = old_table[column].to_numpy()
    if "relaxation" in old:
        summary["relaxation"] = old["relaxation"]
    summary["by_instrument"] = dict(old.get("by_instrument") or {})
    if "wdist_property" in old and "by_instrument" not in old:
        summary["by_instrument"][old.get("property_instrument") or LEGACY_INSTRUMENT] = \
            _property_figures(old)
    _record_instrument(summary, instrument if property_fn is not None else None)
    summary.update({k: old[k] for k in ("num_samples", "decode_seconds", "total_seconds")
                    if k in old})
    summary["rescored"] = {"versions": _versions(), "seconds": time.time() - t0,
                           "test_file": str(test.source)}
    save_results(summary, table, out_dir)
    return summary


def rescore_generation_property(out_dir: str | Path, test: CrystalDataset, property_fn,
                                instrument: str) -> dict[str, Any]:
    """Score the property of a finished generation run with another instrument, and nothing
    else: the valid samples, the seeded draws and every other figure are read from the run
    (its ``per_sample.csv`` and ``summary.json``), so this takes seconds where
    :func:`rescore_generation` recomputes fingerprints and coverage. The instrument's figures are
    filed under ``by_instrument`` and become the top-level ``wdist_property`` figures;
    ``per_sample.csv`` gets its predictions."""
    from cdvae_core.metrics.evaluate import generation_property_statistics

    out_dir = Path(out_dir)
    settings = read_generation_settings(out_dir)
    old = json.loads((out_dir / "summary.json").read_text())
    table = pd.read_csv(out_dir / "per_sample.csv", index_col="sample")
    missing = {"valid", "has_fingerprint", "in_stats_sample"} - set(table.columns)
    if missing:
        raise ValueError(f"{out_dir / 'per_sample.csv'} lacks {sorted(missing)}: rescore the "
                         "whole run instead (without --property-only)")
    samples = _saved_samples(out_dir, len(table))
    t0 = time.time()
    figures, predicted = generation_property_statistics(
        samples, table, test.structures(), property_fn, int(old.get("n_draws", 10)),
        int(settings.get("seed", 0)))
    summary = {k: v for k, v in old.items() if not k.startswith("wdist_property")} | figures
    summary["by_instrument"] = dict(old.get("by_instrument") or {})
    _record_instrument(summary, instrument)
    summary["rescored_property"] = {"versions": _versions(), "seconds": time.time() - t0,
                                    "instrument": instrument}
    table["predicted_property"] = predicted
    save_results(summary, table, out_dir)
    return summary


def _relax_samples(samples: list[Structure | None], table: pd.DataFrame, n: int, potential,
                   steps: int, fmax: float, device: str, progress: bool) -> dict[str, Any]:
    """Relax the first ``n`` valid samples; add :data:`RELAX_COLUMNS` to ``table`` (in place)
    and return the summary."""
    from tqdm.auto import tqdm

    chosen = np.flatnonzero(table["valid"].to_numpy())[:n]
    bar = tqdm(total=len(chosen), desc="CHGNet relaxation", disable=not progress)
    results: list[RelaxResult] = relax_structures(
        [samples[i] for i in chosen], fmax=fmax, steps=steps, keep_every=steps, device=device,
        model=potential, callback=lambda i, r: bar.update(1))
    bar.close()
    rows = len(table)
    columns: dict[str, pd.Series] = {
        "relaxed_energy_per_atom_eV": pd.Series(np.nan, index=table.index),
        "relax_initial_energy_per_atom_eV": pd.Series(np.nan, index=table.index),
        "relax_rms_displacement_A": pd.Series(np.nan, index=table.index),
        "relax_volume_change": pd.Series(np.nan, index=table.index),
        "relax_converged": pd.Series([None] * rows, index=table.index, dtype="boolean"),
        "relax_steps": pd.Series([None] * rows, index=table.index, dtype="Int64"),
        "relaxed_spacegroup": pd.Series([None] * rows, index=table.index, dtype="Int64"),
        "relax_error": pd.Series([None] * rows, index=table.index, dtype="object"),
    }
    for i, res in zip(chosen, results, strict=True):
        row = table.index[i]
        if res.error is not None:
            columns["relax_error"][row] = res.error
            continue
        columns["relaxed_energy_per_atom_eV"][row] = res.energy_per_atom_eV
        columns["relax_initial_energy_per_atom_eV"][row] = res.initial_energy_per_atom_eV
        columns["relax_rms_displacement_A"][row] = res.rms_displacement_A
        columns["relax_volume_change"][row] = res.volume_change
        columns["relax_converged"][row] = res.converged
        columns["relax_steps"][row] = res.steps
        columns["relaxed_spacegroup"][row] = spacegroup_number(res.structure)
    for name in RELAX_COLUMNS:
        table[name] = columns[name]
    summary: dict[str, Any] = {
        "requested": n,
        "selection": "first valid samples in sample order",
        "potential": f"CHGNet {require_chgnet()}",
        "fmax_eV_per_A": fmax,
        "max_steps": steps,
        "relax_cell": True,
        **relaxation_summary(results),
    }
    if len(chosen) < n:
        summary["note"] = f"only {len(chosen)} valid samples, fewer than the {n} requested"
    return summary


def run_optimization(
    model: CDVAE,
    test: CrystalDataset,
    out_dir: str | Path,
    property_fn,
    num_materials: int = 100,
    steps: int = 5000,
    lr: float = 1e-3,
    decode_every: int | None = None,
    sampler: DecodeConfig | LangevinConfig = DecodeConfig(),
    seed: int = 0,
    direction: str = "minimize",
    checkpoint: str | Path | None = None,
    progress: bool = True,
    instrument: str | None = None,
    sr_thresholds: tuple[tuple[float, ...], str] | None = None,
) -> dict[str, Any]:
    """The paper's protocol as the reference code runs it: z = the encoder means of the first
    ``num_materials`` crystals of the test split (file order); Adam (lr 1e-3) on z against the
    mean of the latent property head for ``steps`` steps; after the optimiser step of iteration
    i, decode all materials when i % 555 == 0 or i == 4999
    (:func:`~cdvae_core.metrics.optimization.reference_decode_iterations`; ``decode_every``
    replaces that schedule by every k steps); every decode is kept, and scored by the
    instrument ``property_fn`` (valid decodes only, invalid ones count as +infinity; best over
    each material's decodes; SR5/10/15, :func:`~cdvae_core.metrics.optimization.score_optimization`).

    The run folder holds every decode (``structures.extxyz``, named
    ``opt_<material_id>_i<iteration>``), so :func:`rescore_optimization` can score it with
    another instrument. ``sr_thresholds``: ``(values, source)`` of
    :func:`cdvae_core.data.splits.sr_thresholds` (default: the registry's, the reference's)."""
    t0 = time.time()
    info = get_dataset_info(model.cfg.dataset)
    thresholds, threshold_source = sr_thresholds or (info.sr_percentiles,
                                                     "the reference's thresholds")
    gen = torch.Generator().manual_seed(seed)
    n = min(num_materials, len(test))
    idx = list(range(n))  # the first n of the (unshuffled) test split, as the reference
    device = next(model.parameters()).device
    z0 = encode_dataset(model, test.subset(idx)).to(device)
    if decode_every is None:
        iterations = reference_decode_iterations(steps)
    else:
        iterations = [k - 1 for k in range(decode_every, steps + 1, decode_every)]
    traj = optimize_latent(model.predict_property, z0, steps, lr, direction=direction,
                           save_at=[i + 1 for i in iterations])
    decodes: list[list[Structure]] = []
    for k in range(1, len(traj.saved_steps)):  # saved_steps[0] is the start
        decodes.append(decode_dropping_failures(
            model, traj.z_saved[k], sampler, gen,
            [f"material {test.material_ids[i]} at iteration {iterations[k - 1]}" for i in idx]))
    ids = [test.material_ids[i] for i in idx]
    summary, table = _score_optimization_run(decodes, iterations, ids, property_fn,
                                             thresholds, direction)
    start_prop = property_fn(test.structures(idx)) if property_fn is not None else None
    summary.update({
        "task": "optimization", "steps": steps, "lr": lr, "direction": direction,
        "n_failed_decodes": sum(s is None for d in decodes for s in d),
        "property": info.property_column, "decode_iterations": iterations,
        "starting_materials": f"the first {n} of {test.source}",
        "property_instrument": instrument,
        "by_instrument": {instrument: _sr_figures(summary)} if instrument else {},
        "sr_thresholds": list(thresholds), "sr_thresholds_source": threshold_source,
        "mean_start_property": float(np.nanmean(start_prop)) if start_prop is not None
        else None,
        "mean_start_property_latent": float(traj.prop[0].mean()),
        "mean_end_property_latent": float(traj.prop[-1].mean()),
        "total_seconds": time.time() - t0,
    })
    settings = run_settings("optimization", checkpoint, seed, sampler, lr=lr, steps=steps,
                            decode_iterations=iterations, num_materials=n,
                            material_ids=ids, test_file=test.source)
    names = [f"opt_{mid}_i{it}" for it in iterations for mid in ids]
    _finish(Path(out_dir), settings, summary, table, [s for d in decodes for s in d], names)
    return summary


def _score_optimization_run(decodes, iterations, ids, property_fn, thresholds, direction):
    if direction != "minimize":  # the success rates are defined for minimisation only
        table = pd.DataFrame([{"material_id": mid, "decode": it}
                              for it in iterations for mid in ids])
        return {"num_materials": len(ids), "success_rates": {}}, table
    if property_fn is None:
        raise ValueError("scoring the optimised materials needs a property instrument")
    return score_optimization(decodes, property_fn, thresholds, ids, iterations)


def _sr_figures(summary: dict) -> dict:
    return {k: summary[k] for k in ("success_rates", "mean_best_property", "valid_decodes",
                                    "materials_with_a_valid_decode") if k in summary}


def rescore_optimization(out_dir: str | Path, dataset: str, property_fn,
                         instrument: str | None = None) -> dict[str, Any]:
    """Score a finished optimisation run again from its saved decodes with another property
    instrument (no decoding); rewrites ``summary.json`` and ``per_sample.csv``."""
    out_dir = Path(out_dir)
    settings = json.loads((out_dir / "settings.json").read_text())
    if settings.get("task") != "optimization" or "material_ids" not in settings:
        raise ValueError(f"{out_dir} is not an optimisation run that kept every decode "
                         "(runs made before the reference protocol kept only the best one; "
                         "run `cdvae evaluate --tasks optimization` again)")
    iterations = [int(i) for i in settings["decode_iterations"]]
    old = json.loads((out_dir / "summary.json").read_text())
    found: dict[tuple[str, int], Structure] = {}
    for name, structure in load_named_structures(out_dir / "structures.extxyz"):
        mid, _, it = name[len("opt_"):].rpartition("_i")
        found[(mid, int(it))] = structure
    ids = [str(m) for m in settings["material_ids"]]
    decodes = [[found.get((mid, it)) for mid in ids] for it in iterations]
    t0 = time.time()
    info = get_dataset_info(dataset)
    thresholds = old.get("sr_thresholds") or info.sr_percentiles
    summary, table = _score_optimization_run(decodes, iterations, ids, property_fn, thresholds,
                                             old.get("direction", "minimize"))
    keep = {k: v for k, v in old.items() if k not in summary and k not in
            ("property_instrument", "mean_start_property", "by_instrument")}
    by_instrument = dict(old.get("by_instrument") or {})
    if old.get("property_instrument") and "success_rates" in old:
        by_instrument.setdefault(old["property_instrument"], _sr_figures(old))
    summary = keep | summary | {"property_instrument": instrument}
    if instrument:
        by_instrument[instrument] = _sr_figures(summary)
    summary["by_instrument"] = by_instrument
    summary["rescored"] = {"versions": _versions(), "seconds": time.time() - t0}
    save_results(summary, table, out_dir)
    return summary
