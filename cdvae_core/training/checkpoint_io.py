"""The training checkpoint written by Lightning every epoch, made atomic (temp file, then rename)
and read with ``weights_only=True``; the model file itself is :mod:`cdvae_core.model.checkpoint`.
"""

from __future__ import annotations

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from cdvae_core.utils import atomic_torch_save, safe_torch_load

__all__ = ["AtomicCheckpointIO"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O with atomic writes and ``weights_only=True`` reads."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return safe_torch_load(path, map_location or "cpu")
