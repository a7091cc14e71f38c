"""Model, data and per-session state of the app.

Heavy read-only objects (the model, the test set, its latent vectors) are built once per process
with ``st.cache_resource`` and shared by every browser session; what one user selects or runs
lives in that session's ``st.session_state``. Nothing mutable lives at module level, so several
sessions never see each other's work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from cdvae_core import explore
from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.registry import DatasetInfo, get_dataset_info
from cdvae_core.data.splits import dataset_dir, load_split
from cdvae_core.diffusion.langevin import LangevinConfig
from cdvae_core.diffusion.presets import get_preset
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.checkpoint import CheckpointError, load_model

REPO = Path(__file__).resolve().parents[1]
#: session keys holding latent vectors or results of the loaded model
MODEL_STATE = ("selected", "point_A", "point_B", "uploads", "interp", "traj", "steer_result",
               "recon", "gallery", "focus", "_last_click", "relax")


# ---------------------------------------------------------------------------- discovery
def checkpoint_candidates() -> list[Path]:
    """Model files the app offers: ``$CDVAE_CHECKPOINT`` alone if set, else the shipped
    ``<dir>/<dataset>/model.pt`` (and loose ``*.pt``) under ``$CDVAE_CHECKPOINTS_DIR``
    (default: the repository's ``checkpoints/``)."""
    single = os.environ.get("CDVAE_CHECKPOINT")
    if single:
        return [Path(single)]
    root = Path(os.environ.get("CDVAE_CHECKPOINTS_DIR", REPO / "checkpoints"))
    return sorted(root.glob("*/model.pt")) + sorted(root.glob("*.pt"))


def default_data_dir() -> str:
    """``$CDVAE_DATA_DIR``, else ``../shared/data`` beside the checkout if it exists, else ""."""
    env = os.environ.get("CDVAE_DATA_DIR")
    if env:
        return env
    shared = REPO.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else ""


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def configure_torch() -> int:
    """CPU threads per computation: ``$CDVAE_APP_THREADS``, default 1.

    The app decodes one crystal or a small batch at a time, where intra-op threads gain little;
    on a busy machine (a training job beside the app) they spin against each other and a
    Langevin run became 15 to 75 times slower with 2 threads than with 1 in our measurements.
    Concurrent sessions still run in parallel, each in its own script thread.
    """
    n = max(1, int(os.environ.get("CDVAE_APP_THREADS", "1")))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


# ---------------------------------------------------------------------------- cached loads
@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def load_model_cached(path: str, mtime: float) -> tuple[CDVAE, dict]:
    """The model of ``path`` on the GPU if there is one; ``mtime`` is part of the cache key so
    that a replaced file is read again."""
    model, info = load_model(path, with_info=True)
    model = model.to(device()).eval()
    # Shared by all sessions and used for inference only. Freezing the weights makes the latent
    # optimisation's backward pass stop at z, so no session writes gradient buffers that
    # another session's run would race with.
    model.requires_grad_(False)
    return model, info


@st.cache_resource(show_spinner="Loading CHGNet (once)...")
def chgnet_model():
    """The CHGNet potential (weights inside its package), loaded once per process and shared:
    relaxations only run it forward (forces by autograd on positions, never on weights).
    Raises :class:`cdvae_core.relax.RelaxationUnavailable` without the package (not cached)."""
    from cdvae_core.relax import load_chgnet

    return load_chgnet()


@dataclass(frozen=True)
class TestSet:
    """The test split of a dataset with what the pages show about each crystal."""

    dataset: CrystalDataset
    table: pd.DataFrame  # explore.dataset_table columns
    comp: np.ndarray  # [M, 100] element fractions (nearest-material search)


@st.cache_resource(show_spinner=False, max_entries=4)
def load_test_set(data_dir: str, dataset: str, limit: int) -> TestSet:
    """The first ``limit`` crystals (0: all) of ``data_dir``'s test split; graphs are built
    once and cached on disk by the data layer, the rest here, once per process."""
    with st.spinner(f"Reading the {dataset} test set (graphs are cached on disk after the "
                    "first time)..."):
        ds = load_split(data_dir, dataset, "test", progress=False)
    if limit and limit < len(ds):
        ds = ds.subset(range(limit))
    types = [ds.atom_types[int(s): int(s) + int(n)].tolist()
             for s, n in zip(ds.atom_start, ds.num_atoms, strict=True)]
    return TestSet(ds, explore.dataset_table(ds), explore.composition_vectors(types))


@dataclass(frozen=True)
class LatentMap:
    """Latent means of the test set and the 2D projection fitted on them."""

    z: np.ndarray  # [M, latent]
    xy: np.ndarray  # [M, 2]
    projection: explore.Projection


@st.cache_resource(show_spinner=False, max_entries=4)
def encode_test_set(model_key: str, _model: CDVAE, data_dir: str, dataset: str, limit: int):
    """Encode the test set once per (model, data) and fit the PCA on it."""
    test = load_test_set(data_dir, dataset, limit)
    bar = st.progress(0.0, text=f"Encoding {len(test.dataset)} test crystals (once)...")
    z = explore.encode_in_chunks(_model, test.dataset, progress=lambda f: bar.progress(f))
    bar.empty()
    z = z.numpy()
    projection = explore.fit_projection(z)
    return LatentMap(z, projection.transform(z), projection)


@st.cache_resource(show_spinner=False, max_entries=4)
def prior_map(model_key: str, latent_dim: int, n: int = 500) -> LatentMap:
    """Without a test set the map shows draws from the prior N(0, I) in their own PCA frame."""
    z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(0)).numpy()
    projection = explore.fit_projection(z)
    return LatentMap(z, projection.transform(z), projection)


# ---------------------------------------------------------------------------- per session
@dataclass
class Context:
    """What every page needs, rebuilt by the sidebar on each run."""

    model: CDVAE
    info: dict
    model_key: str
    path: str
    dataset: DatasetInfo
    data_dir: str
    test: TestSet | None
    latents: LatentMap | None

    @property
    def map(self) -> LatentMap:
        return self.latents or prior_map(self.model_key, self.model.cfg.latent_dim)

    @property
    def property_name(self) -> str:
        return self.dataset.property_column


def sidebar() -> Context | None:
    """Model and data choice in the sidebar; returns the context, or None after explaining
    what is missing."""
    st.sidebar.header("Model and data")
    found = checkpoint_candidates()
    custom = st.sidebar.text_input(
        "Checkpoint path (optional)", key="custom_checkpoint",
        help="A model.pt written by cdvae_core (or one of its training checkpoints).",
    ).strip()
    if custom:
        path = Path(custom)
    elif found:
        path = st.sidebar.selectbox(
            "Checkpoint", found, format_func=lambda p: str(_short(p)), key="checkpoint"
        )
    else:
        st.error(
            "No model checkpoint found. Put a model file at `checkpoints/<dataset>/model.pt`, "
            "set `CDVAE_CHECKPOINT` to a model file or `CDVAE_CHECKPOINTS_DIR` to a folder of "
            "them, or type a path in the sidebar."
        )
        return None
    try:
        model, info = load_model_cached(str(path), path.stat().st_mtime)
    except (CheckpointError, OSError) as exc:
        st.error(f"Cannot load the checkpoint: {exc}")
        return None
    dataset = get_dataset_info(model.cfg.dataset)
    st.sidebar.caption(
        f"{dataset.title} model, {model.num_parameters():,} parameters, latent {model.cfg.latent_dim}"
        f", on {device().type.upper()}"
    )
    data_dir = st.sidebar.text_input(
        "Data directory (optional)", value=default_data_dir(), key="data_dir",
        help="Folder holding <dataset>/test.csv. Without it the app works from the prior.",
    ).strip()
    limit = int(st.sidebar.number_input(
        "Test crystals to encode (0 = all)", min_value=0, max_value=100_000, value=0, step=500,
        key="test_limit",
    ))
    test = latents = None
    key = f"{path.resolve()}:{path.stat().st_mtime}"
    if st.session_state.get("model_key") != key:
        # latent vectors and results of another model mean nothing (or the wrong size) here
        for name in MODEL_STATE:
            st.session_state.pop(name, None)
        st.session_state["model_key"] = key
    if data_dir:
        csv = dataset_dir(data_dir, dataset) / "test.csv"
        if not csv.is_file():
            st.sidebar.warning(f"No {dataset.name} test.csv under {data_dir}: using the prior only.")
        else:
            try:
                test = load_test_set(data_dir, dataset.name, limit)
                latents = encode_test_set(key, model, data_dir, dataset.name, limit)
            except Exception as exc:  # a broken CSV must not take the whole app down
                st.sidebar.error(f"Could not read the test set: {exc}")
                test = latents = None
    if test is not None:
        st.sidebar.caption(f"Test set: {len(test.dataset)} crystals encoded.")
    return Context(model, info, key, str(path), dataset, data_dir, test, latents)


def _short(path: Path) -> Path:
    try:
        return path.resolve().relative_to(REPO)
    except ValueError:
        return path


def context() -> Context:
    """The context built by the sidebar of this run (pages stop with a message without one)."""
    ctx = st.session_state.get("ctx")
    if ctx is None:
        st.info("Load a model first (see the message above or the sidebar).")
        st.stop()
    return ctx


def select_z(z: torch.Tensor | np.ndarray, label: str, source: str) -> None:
    """Make ``z [latent]`` the session's selected latent vector."""
    z = torch.as_tensor(np.asarray(z, dtype=np.float32)).reshape(-1)
    st.session_state["selected"] = {"z": z, "label": label, "source": source}


def selected() -> dict | None:
    """``{"z": Tensor [latent], "label": str, "source": str}`` or None."""
    return st.session_state.get("selected")


def draw_prior(ctx: Context, seed: int) -> None:
    z = torch.randn(ctx.model.cfg.latent_dim, generator=torch.Generator().manual_seed(seed))
    select_z(z, f"prior draw (seed {seed})", "prior")


def default_sampler() -> LangevinConfig:
    """The app's default sampler: the ``interactive`` preset; ``CDVAE_APP_STEPS`` overrides its
    steps per level (tests and demos on slow machines)."""
    steps = os.environ.get("CDVAE_APP_STEPS")
    return get_preset("interactive", **({"n_step_each": int(steps)} if steps else {}))
