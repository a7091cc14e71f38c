"""Model cards: ``MODEL_CARD.md`` written from what a model file and evaluation runs record, so
that every number in a card comes from the pipeline (nothing typed in by hand)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cdvae_core.metrics.paper import compare_with_paper
from cdvae_core.training.checkpoint import load_model
from cdvae_core.utils import atomic_write, file_sha256

__all__ = ["write_model_card"]


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def write_model_card(
    model_dir: str | os.PathLike,
    eval_dir: str | os.PathLike | None = None,
    predictor: str | os.PathLike | None = None,
    notes: str = "",
) -> Path:
    """Write ``model_dir/MODEL_CARD.md`` from ``model_dir/model.pt``, the task folders of an
    evaluation run (``eval_dir/{reconstruction,generation,optimization}``) and the independent
    predictor file; ``notes`` (Markdown) says where the model falls short and why."""
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
        f"- Wall time: {_fmt(training.get('wall_time_s'))} s; hardware: "
        f"{json.dumps(training.get('hardware', {}))}.",
        "",
    ]
    if predictor is not None and Path(predictor).is_file():
        from cdvae_core.metrics.predictor import load_predictor

        pinfo = getattr(load_predictor(predictor), "info", {})
        lines += [
            "## Independent property predictor",
            "",
            f"`{Path(predictor).name}`: a separate PaiNN-style GNN on a radius graph, trained on "
            "the same training split. Validation MAE "
            f"{_fmt(pinfo.get('val_mae'))}, test MAE {_fmt(pinfo.get('test_mae'))} "
            f"({cfg.property_column}; test.csv scored once after training, never used to select).",
            "",
        ]
    if eval_dir is not None:
        eval_dir = Path(eval_dir)
        summaries, settings = {}, {}
        for task in ("reconstruction", "generation", "optimization"):
            s = _read_json(eval_dir / task / "summary.json")
            if s is not None:
                summaries[task] = s
                settings[task] = _read_json(eval_dir / task / "settings.json") or {}
        if summaries:
            table = compare_with_paper(summaries, cfg.dataset)
            lines += ["## Measured metrics (test.csv) beside the paper", "",
                      table.to_markdown(index=False), ""]
            for task, st in settings.items():
                sampler = st.get("sampler") or {}
                size = summaries[task].get("num_samples") or summaries[task].get(
                    "num_structures") or summaries[task].get("num_materials")
                lines.append(
                    f"- {task}: {_fmt(size)} materials, sampler {json.dumps(sampler)}, seed "
                    f"{st.get('seed')}, checkpoint sha256 "
                    f"`{str(st.get('checkpoint_sha256'))[:16]}...`, "
                    f"{_fmt(summaries[task].get('total_seconds'))} s."
                )
            lines.append("")
    if notes:
        lines += ["## Where this model falls short, and why", "", notes.strip(), ""]
    path = model_dir / "MODEL_CARD.md"
    with atomic_write(path) as fh:
        fh.write("\n".join(lines))
    return path
