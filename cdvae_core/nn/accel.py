"""Optional ``torch.compile`` of the message-passing trunks.

The fast architecture spends most of its time in element-wise products, gathers and scatters of
``[E, 3, F]`` edge tensors (``benchmarks/results/model.json``). Eager PyTorch writes each
intermediate to memory; TorchInductor fuses them into a few loops, which on this 2-core CPU makes
a Langevin step over 256 Perov-5 crystals about 2.3x faster and a training step about 1.2x
faster, at a one-off compile cost of 25-40 s (cached on disk by PyTorch afterwards). Weights,
state-dict keys and checkpoints are unchanged: ``nn.Module.compile`` compiles the call in place.

The paper architecture's DimeNet++ and GemNet-T interaction blocks are compiled the same way
(their triplet construction stays eager).

On the CPU Inductor needs a C++ compiler; ``mode="auto"`` compiles only when one is found (or
on a GPU) and otherwise runs eagerly, with the same numbers.
"""

from __future__ import annotations

import os
import shutil

import torch
from torch import nn

__all__ = ["COMPILE_MODES", "can_compile", "compile_model"]

COMPILE_MODES = ("auto", "on", "off")


def can_compile(device: str | torch.device = "cpu") -> tuple[bool, str]:
    """Whether ``torch.compile`` can build kernels here, and why not when it cannot."""
    if not hasattr(torch, "compile"):
        return False, f"torch {torch.__version__} has no torch.compile"
    if torch.device(device).type == "cuda":
        return True, "CUDA (Triton kernels)"
    cxx = os.environ.get("CXX", "c++")
    found = shutil.which(cxx) or shutil.which("g++") or shutil.which("clang++")
    if not found:
        return False, (f"no C++ compiler on PATH (looked for {cxx!r}, g++, clang++); "
                       "install one (e.g. apt install g++) to enable --compile")
    return True, f"C++ compiler {found}"


def _targets(model: nn.Module) -> list[tuple[str, nn.Module]]:
    # The trunks of the fast architecture and the interaction / output blocks of the paper's
    # DimeNet++ and GemNet-T: static module structure, dynamic edge and triplet counts. Graph
    # and triplet construction (data-dependent sizes) stays eager.
    from cdvae_core.nn import dimenet, gemnet
    from cdvae_core.nn.painn import PaiNNTrunk

    kinds = (PaiNNTrunk, dimenet._PeriodicInteractionPP, gemnet._InteractionBlock,
             gemnet._OutputBlock)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]


def compile_model(model: nn.Module, mode: str = "auto") -> list[str]:
    """Compile the model's trunks in place; returns the names of the compiled modules.

    mode: ``"auto"`` compiles when :func:`can_compile` says yes, ``"on"`` raises if it cannot,
    ``"off"`` does nothing.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r}: choose one of {', '.join(COMPILE_MODES)}")
    if mode == "off":
        return []
    device = next(model.parameters()).device
    ok, why = can_compile(device)
    if not ok:
        if mode == "on":
            raise RuntimeError(f"cannot compile the model: {why}")
        return []
    if mode == "auto":
        # a compiler that is present but fails (a broken toolchain) falls back to eager code
        # instead of stopping a long run
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
    targets = _targets(model)
    for _, module in targets:
        # dynamic shapes: every batch has its own number of atoms and edges
        module.compile(dynamic=True)
    return [name for name, _ in targets]
