"""Model cards: ``MODEL_CARD.md`` written from what a model file and evaluation runs record, so
that every number in a card comes from the pipeline (nothing typed in by hand)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from cdvae_core.metrics.paper import compare_with_paper
from cdvae_core.model.checkpoint import load_model
from cdvae_core.utils import atomic_write, file_sha256

__all__ = ["write_model_card"]


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def _wall(training: dict) -> str:
    seconds, start = training.get("wall_time_s"), training.get("wall_time_from_epoch") or 0
    if seconds is None:
        return "not recorded"
    text = f"{seconds / 3600:.2f} h ({seconds:.0f} s)"
    if start:
        text += (f", counted from epoch {start} on (the checkpoints of earlier epochs did not "
                 "record it)")
    return text


def _averaging(training: dict) -> str:
    avg = training.get("weight_averaging")
    if not avg:
        return "that epoch's weights (no weight averaging)"
    return (f"exponential moving average of the weights, decay {avg['ema_decay']} per step, "
            f"kept from epoch {avg['from_epoch']} on (`train --ema-decay`)")


def write_model_card(
    model_dir: str | os.PathLike,
    eval_dir: str | os.PathLike | None = None,
    predictor: str | os.PathLike | None = None,
    notes: str = "",
    extra_evals: dict[str, str | os.PathLike] | None = None,
) -> Path:
    """Write ``model_dir/MODEL_CARD.md`` from ``model_dir/model.pt``, the task folders of an
    evaluation run (``eval_dir/{reconstruction,generation,optimization}``) and the independent
    predictor file; ``notes`` (Markdown) says where the model falls short and why.

    ``extra_evals`` ``{column title: evaluation folder}`` adds columns beside ``ours`` (say the
    paper's sampler on a subset), each with its run's sizes and settings listed below the table.
    """
    model_dir = Path(model_dir)
    model_path = model_dir / "model.pt"
    model, info = load_model(model_path, with_info=True)
    cfg, split, training = model.cfg, info.get("split_policy", {}), info.get("training", {})
    lines = [
        f"# CDVAE model card: {cfg.dataset}",
        "",
        f"File: `model.pt` ({model_path.stat().st_size / 1e6:.1f} MB, "
        f"sha256 `{file_sha256(model_path)[:16]}...`).",
        "",
        "## Training",
        "",
        f"- Dataset: {cfg.dataset}; property head: `{cfg.property_column}`.",
        f"- Split policy: {split.get('description', 'not recorded')}.",
        f"- Architecture: `{cfg.architecture}`; parameters {model.num_parameters():,} "
        f"(encoder {model.num_parameters('encoder'):,}, decoder "
        f"{model.num_parameters('decoder'):,}); latent {cfg.latent_dim}.",
        f"- Epochs completed: {_fmt(training.get('epochs_completed'))}; best epoch "
        f"(lowest validation loss): {_fmt(training.get('best_epoch'))}; best validation loss "
        f"{_fmt(training.get('best_val_loss'))}; teacher forcing until epoch "
        f"{cfg.teacher_forcing_max_epoch}.",
        f"- Weights: {_averaging(training)}.",
        f"- Wall time: {_wall(training)}; hardware: "
        f"{json.dumps(training.get('hardware', {}))}.",
        "",
    ]
    if predictor is not None and Path(predictor).is_file():
        from cdvae_core.predictor.gnn import load_predictor

        pinfo = getattr(load_predictor(predictor), "info", {})
        psplit = pinfo.get("split_policy") or {}
        if not psplit or psplit == split:
            trained_on = "trained on the same training split"
        else:
            trained_on = (f"trained on another split than this model ({psplit.get('description')}"
                          f"; this model: {split.get('description', 'not recorded')})")
        lines += [
            "## Independent property predictor",
            "",
            f"`{Path(predictor).name}`: a separate PaiNN-style GNN on a radius graph, "
            f"{trained_on}. Validation MAE "
            f"{_fmt(pinfo.get('val_mae'))}, test MAE {_fmt(pinfo.get('test_mae'))} "
            f"({cfg.property_column}; test.csv scored once after training, never used to select).",
            "",
        ]
    runs = {}
    if eval_dir is not None:
        runs["ours"] = Path(eval_dir)
    for title, folder in (extra_evals or {}).items():
        runs[title] = Path(folder)
    columns, details = [], []
    for title, folder in runs.items():
        summaries, settings = {}, {}
        for task in ("reconstruction", "generation", "optimization"):
            s = _read_json(folder / task / "summary.json")
            if s is not None:
                summaries[task] = s
                settings[task] = _read_json(folder / task / "settings.json") or {}
        if not summaries:
            continue
        table = compare_with_paper(summaries, cfg.dataset).rename(columns={"ours": title})
        columns.append(table)
        prefix = f"{title}: " if len(runs) > 1 else ""  # name the run when there are several
        for task, st in settings.items():
            sampler = st.get("sampler") or {}
            size = summaries[task].get("num_samples") or summaries[task].get(
                "num_structures") or summaries[task].get("num_materials")
            details.append(
                f"- {prefix}{task}: "
                f"{_fmt(size)} materials, sampler {json.dumps(sampler)}, seed "
                f"{st.get('seed')}, checkpoint sha256 "
                f"`{str(st.get('checkpoint_sha256'))[:16]}...`, "
                f"{_fmt(summaries[task].get('total_seconds'))} s."
            )
    if columns:
        merged = columns[0]
        for extra in columns[1:]:
            # rows in the order of the first table; tasks only the extra run has come last
            keys = set(zip(merged["task"], merged["metric"], strict=True))
            only = extra[[(t, m) not in keys for t, m in zip(extra["task"], extra["metric"],
                                                               strict=True)]]
            merged = merged.merge(extra.drop(columns="paper"), on=["task", "metric"], how="left")
            merged = pd.concat([merged, only], ignore_index=True)
        merged = merged[[c for c in merged.columns if c != "paper"] + ["paper"]]
        lines += ["## Measured metrics (test.csv) beside the paper", "",
                  merged.astype(object).where(merged.notna(), None)
                  .to_markdown(index=False, missingval="-"), "", *details, ""]
    if notes:
        lines += ["## Where this model falls short, and why", "", notes.strip(), ""]
    path = model_dir / "MODEL_CARD.md"
    with atomic_write(path) as fh:
        fh.write("\n".join(lines))
    return path
