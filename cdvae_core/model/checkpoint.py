"""The model file format (``model.pt``) that we ship and that evaluation, sampling and the app
load: a dict of plain tensors and Python primitives (format tag, config, state dict with the
fitted scalers as buffers, split policy, training summary), loaded with ``weights_only=True``.

Reading one needs torch and the model alone, not Lightning: :func:`load_model` also reads the
training checkpoints that :mod:`cdvae_core.training` writes, which are plain dicts too.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.config import ModelConfig
from cdvae_core.utils import CheckpointError, atomic_torch_save, safe_torch_load

__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointError", "save_model", "load_model"]

FORMAT = "cdvae_core.model"
FORMAT_VERSION = 1


def save_model(
    model: CDVAE,
    path: str | os.PathLike,
    split_policy: dict | None = None,
    training: dict | None = None,
) -> None:
    """Write the self-contained model file (config, weights, scalers, provenance)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    # round-trip through JSON: only plain types may enter a weights_only-loadable file
    split_policy = json.loads(json.dumps(split_policy or {}, default=str))
    training = json.loads(json.dumps(training or {}, default=str))
    atomic_torch_save(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": model.cfg.to_dict(),
            "state_dict": state,
            "split_policy": split_policy,
            "training": training,
        },
        path,
    )


def _from_lightning(obj: dict) -> dict:
    """Model-file view of a Lightning training checkpoint written by our module."""
    hp = obj.get("hyper_parameters") or {}
    if "model_config" not in hp:
        raise CheckpointError("Lightning checkpoint without a cdvae_core model config")
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in obj["state_dict"].items() if k.startswith(prefix)}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": hp["model_config"],
        "state_dict": state,
        "split_policy": hp.get("split_policy", {}),
        "training": {"epoch": obj.get("epoch"), "global_step": obj.get("global_step")},
    }


def load_model(
    path: str | os.PathLike, map_location: Any = "cpu", with_info: bool = False
) -> CDVAE | tuple[CDVAE, dict]:
    """Rebuild a :class:`CDVAE` from a model file (or from one of our Lightning checkpoints).

    Raises :class:`CheckpointError` with the reason for a corrupt, foreign or incompatible file.
    """
    obj = safe_torch_load(path, map_location)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a cdvae_core checkpoint (holds a {type(obj).__name__})")
    if obj.get("format") != FORMAT:
        if "state_dict" in obj and "hyper_parameters" in obj:
            try:
                obj = _from_lightning(obj)
            except CheckpointError as exc:
                raise CheckpointError(f"{path}: {exc}") from None
        else:
            raise CheckpointError(
                f"{path}: not a cdvae_core checkpoint (no format tag {FORMAT!r}; keys: "
                f"{sorted(obj)[:8]})"
            )
    if obj.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer cdvae_core (format {obj['format_version']}); upgrade"
        )
    try:
        cfg = ModelConfig.from_dict(obj["config"])
        model = CDVAE(cfg)
        model.load_state_dict(obj["state_dict"])
    except Exception as exc:
        raise CheckpointError(f"{path}: config or weights do not fit the model ({exc})") from None
    model.eval()
    if with_info:
        info = {k: v for k, v in obj.items() if k != "state_dict"}
        return model, info
    return model
