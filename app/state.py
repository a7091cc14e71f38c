"""Model, data and per-session state of the app.

Heavy read-only objects (the model, the test set, its latent vectors) are built once per process
with ``st.cache_resource`` and shared by every browser session; what one user selects or runs
lives in that session's ``st.session_state``. Nothing mutable lives at module level, so several
sessions never see each other's work.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch
from components.loading import MapJob

from cdvae_core import explore
from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.registry import DatasetInfo, get_dataset_info
from cdvae_core.data.splits import dataset_dir, load_split
from cdvae_core.diffusion.langevin import LangevinConfig
from cdvae_core.diffusion.presets import get_preset
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.checkpoint import CheckpointError, load_model
from cdvae_core.utils import (
    atomic_write,
    configure_cpu,
    default_cache_dir,
    file_sha256,
    safe_torch_load,
)

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
#: the shipped model the app opens on unless told otherwise (CDVAE_CHECKPOINT, the sidebar)
DEFAULT_MODEL_FOLDER = "perov_5"
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
    found = sorted(root.glob("*/model.pt")) + sorted(root.glob("*.pt"))
    # the Perov-5 model first (the app opens on it): its property is the formation energy
    # (heat_ref) the steering page is about; the others follow in alphabetical order
    return sorted(found, key=lambda p: p.parent.name != DEFAULT_MODEL_FOLDER)


@st.cache_data(show_spinner=False, max_entries=32)
def checkpoint_summary(path: str, mtime: float) -> str:
    """One line on what a model file is: dataset, property, training data, epoch."""
    try:
        obj = safe_torch_load(path)
        cfg, split = obj.get("config") or {}, obj.get("split_policy") or {}
        training = obj.get("training") or {}
    except CheckpointError:
        return "unreadable file"
    if not cfg:  # a Lightning training checkpoint of ours
        cfg = (obj.get("hyper_parameters") or {}).get("model_config") or {}
        split = (obj.get("hyper_parameters") or {}).get("split_policy") or {}
        training = {"best_epoch": obj.get("epoch")}
    try:
        title = get_dataset_info(cfg.get("dataset", "?")).title
    except KeyError:
        title = str(cfg.get("dataset", "unknown dataset"))
    if split.get("train_file") == "train.csv":
        data = "trained on the upstream train.csv"
    elif split.get("train_file") == "val.csv":
        data = (f"trained on val.csv minus a {100 * split.get('holdout_fraction', 0):.0f} % "
                "hold-out")
    else:
        data = "training data not recorded"
    epoch = training.get("best_epoch", training.get("epoch"))
    return (f"{title}, property {cfg.get('property_column', '?')}, {data}"
            + (f", epoch {epoch}" if epoch is not None else ""))


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
    configure_cpu(n if torch.get_num_threads() != n else None)  # subnormals flushed, see there
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


def _test_set(ds: CrystalDataset) -> TestSet:
    types = [ds.atom_types[int(s): int(s) + int(n)].tolist()
             for s, n in zip(ds.atom_start, ds.num_atoms, strict=True)]
    return TestSet(ds, explore.dataset_table(ds), explore.composition_vectors(types))


@dataclass(frozen=True)
class LatentMap:
    """Latent means of the test set and the 2D projection fitted on them."""

    z: np.ndarray  # [M, latent]
    xy: np.ndarray  # [M, 2]
    projection: explore.Projection


#: crystals whose map a cold first launch shows while the rest of the test set is prepared
PREVIEW_CRYSTALS = 256


def _latent_map(z: np.ndarray) -> LatentMap:
    """``z`` on the map: in its own PCA frame."""
    projection = explore.fit_projection(z)
    return LatentMap(z, projection.transform(z), projection)


def _map_of(model: CDVAE, ds: CrystalDataset) -> tuple:
    """(TestSet, LatentMap) of ``ds``, encoded now (nothing cached): the preview's map."""
    return _test_set(ds), _latent_map(explore.encode_in_chunks(model, ds).numpy())


def prepare_map(model: CDVAE, model_path: str, data_dir: str, dataset: str, limit: int,
                report, publish=None) -> tuple:
    """(TestSet, LatentMap) of the first ``limit`` crystals (0: all) of ``data_dir``'s test
    split: graphs (built once, then cached on disk by the data layer), latent means (cached on
    disk too, keyed by the model file's and the crystals' content), PCA.
    ``report(phase, done, total)`` follows the work (it runs in a :class:`MapJob` thread);
    on a cold cache ``publish((test, map))`` receives the map of the first
    :data:`PREVIEW_CRYSTALS` crystals as soon as their graphs are built."""

    def preview(part: CrystalDataset) -> None:
        # a map needs two crystals; a preview that cannot be drawn is skipped, never fatal
        if publish is None or len(part) < 2 or (limit and limit <= len(part)):
            return
        try:
            publish(_map_of(model, part))
        except Exception as exc:  # the whole map still comes; only the early look is lost
            log.warning("no preview of the latent map: %s", exc)

    ds = load_split(data_dir, dataset, "test", progress=False,
                    on_progress=lambda done, total: report("graphs", done, total),
                    on_preview=preview, preview_rows=PREVIEW_CRYSTALS)
    if limit and limit < len(ds):
        ds = ds.subset(range(limit))
    test = _test_set(ds)
    n = len(ds)
    report("encoding", 0, n)
    cache = _latent_cache_file(model_path, ds)
    z = _read_latents(cache, n, model.cfg.latent_dim)
    if z is None:
        z = explore.encode_in_chunks(model, ds, progress=lambda f: report("encoding", round(f * n), n))
        z = z.numpy()
        with atomic_write(cache, "wb") as fh:
            np.save(fh, z)
    return test, _latent_map(z)


def _latent_cache_file(model_path: str, ds: CrystalDataset) -> Path:
    """Where the latent means of ``ds`` under the model file ``model_path`` are kept: the key
    hashes the model file and every crystal's lattice, types and coordinates."""
    h = hashlib.sha256(file_sha256(model_path).encode())
    for t in (ds.lengths, ds.angles_deg, ds.atom_types, ds.frac_coords, ds.num_atoms):
        h.update(t.numpy().tobytes())
    return default_cache_dir() / "latents" / f"z-{h.hexdigest()[:32]}.npy"


def _read_latents(path: Path, n: int, dim: int) -> np.ndarray | None:
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return z if z.shape == (n, dim) and np.isfinite(z).all() else None  # else: recomputed


@st.cache_resource(show_spinner=False)
def _map_jobs() -> dict:
    """Process-wide registry of map jobs, one per (model, data, limit), shared by sessions."""
    return {"lock": threading.Lock(), "jobs": {}}


def map_job(model_key: str, model: CDVAE, model_path: str, data_dir: str, dataset: str,
            limit: int) -> MapJob:
    """The (running or finished) job preparing this model's latent map of this test set; started
    on first request. A failed job is forgotten once reported, so the next run tries again."""
    registry = _map_jobs()
    key = (model_key, data_dir, dataset, limit)
    with registry["lock"]:
        job = registry["jobs"].get(key)
        created = job is None
        if created:
            job = MapJob(lambda report, publish: prepare_map(
                model, model_path, data_dir, dataset, limit, report, publish),
                         name=f"latent map {dataset}")
            registry["jobs"][key] = job
    if created:
        job.wait(timeout=2.0)  # a cached test set is ready by then: no progress flashes by
    return job


def forget_map_job(model_key: str, data_dir: str, dataset: str, limit: int,
                   job: MapJob | None = None) -> None:
    """Drop the job under this key (only if it is still ``job``, when given: another session
    may already have started the next try)."""
    registry = _map_jobs()
    key = (model_key, data_dir, dataset, limit)
    with registry["lock"]:
        if job is None or registry["jobs"].get(key) is job:
            registry["jobs"].pop(key, None)


@st.cache_resource(show_spinner=False, max_entries=4)
def prior_map(model_key: str, latent_dim: int, n: int = 500) -> LatentMap:
    """Without a test set the map shows draws from the prior N(0, I) in their own PCA frame."""
    z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(0)).numpy()
    return _latent_map(z)


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
    map_job: MapJob | None = None  # still preparing the test set's map (None: not wanted)
    limit: int = 0  # test crystals to encode (0: all), part of the map job's key

    @property
    def whole_test(self) -> TestSet | None:
        """The test set once all of it is loaded; None while only a preview of its first
        crystals is (nearest-material searches must not look among a part)."""
        return self.test if self.map_job is None else None

    @property
    def map(self) -> LatentMap:
        return self.latents or prior_map(self.model_key, self.model.cfg.latent_dim)

    @property
    def property_name(self) -> str:
        return self.dataset.property_column


def model_key(path: Path) -> str:
    """What identifies a model file in the caches and the map jobs: its path and mtime."""
    return f"{path.resolve()}:{path.stat().st_mtime}"


def warm_up(wait_for_map_s: float = 5.0) -> str:
    """Do at server start what the first page would otherwise wait for: import the pages'
    libraries, load the model the sidebar opens on (with its one-line summary) and start the
    map job of its test set under the default data directory, the same cache entries the
    sidebar then finds. Waits at most ``wait_for_map_s`` for the map (a warm disk cache has it
    ready in about a second); on a cold cache the job carries on and the page shows its
    progress. Returns what was done, for the server log. Runs outside any browser session:
    it touches only process-wide caches, never ``st.session_state``."""
    import importlib

    import plotly.graph_objects as go

    go.Scattergl  # noqa: B018  (plotly loads its trace classes lazily: load the map's now)
    # the libraries the pages import (the pages are scripts, run per session). Not the app's
    # own components: Streamlit registers the 3D viewer's component only when it is declared
    # inside a session's script run, so components.viewer (and what imports it) must load there
    for module in ("cdvae_core.explore.scene", "cdvae_core.metrics.evaluate", "cdvae_core.relax",
                   "cdvae_core.model.decode", "components.latent_plot", "components.loading"):
        importlib.import_module(module)
    found = checkpoint_candidates()
    if not found:
        return "no model file found"
    for other in found:  # the sidebar's model list shows each file's one-line summary
        with contextlib.suppress(OSError):
            checkpoint_summary(str(other), other.stat().st_mtime)
    path = found[0]
    mtime = path.stat().st_mtime
    summary = checkpoint_summary(str(path), mtime)
    model, _ = load_model_cached(str(path), mtime)
    done = [f"model {_short(path)} ({summary})"]
    data_dir = default_data_dir()
    dataset = get_dataset_info(model.cfg.dataset)
    if data_dir and (dataset_dir(data_dir, dataset) / "test.csv").is_file():
        job = map_job(model_key(path), model, str(path), data_dir, dataset.name, 0)
        ready = job.wait(timeout=wait_for_map_s)
        done.append(f"latent map of {dataset.name} test.csv "
                    + ("ready" if ready else "still being prepared (cold cache)"))
    return "; ".join(done)


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
            "Model", found, key="checkpoint",
            # one line per model: what it is, not only where it lies
            format_func=lambda p: (f"{checkpoint_summary(str(p), p.stat().st_mtime)} "
                                   f"({_short(p)})"),
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
        f"**{checkpoint_summary(str(path), path.stat().st_mtime)}**. "
        f"{model.num_parameters():,} parameters, latent {model.cfg.latent_dim}, on "
        f"{device().type.upper()}."
    )
    data_dir = st.sidebar.text_input(
        "Data directory (optional)", value=default_data_dir(), key="data_dir",
        help="Folder holding <dataset>/test.csv. Without it the app works from the prior.",
    ).strip()
    limit = int(st.sidebar.number_input(
        "Test crystals to encode (0 = all)", min_value=0, max_value=100_000, value=0, step=500,
        key="test_limit",
    ))
    key = model_key(path)
    if st.session_state.get("model_key") != key:
        # latent vectors and results of another model mean nothing (or the wrong size) here
        for name in MODEL_STATE:
            st.session_state.pop(name, None)
        st.session_state["model_key"] = key
    job = None
    if data_dir:
        csv = dataset_dir(data_dir, dataset) / "test.csv"
        if not csv.is_file():
            st.sidebar.warning(f"No {dataset.name} test.csv under {data_dir}: using the prior only.")
        else:
            # prepared in a background thread: no page waits for it, the map page shows progress
            job = map_job(key, model, str(path), data_dir, dataset.name, limit)
    # the test set and its map come from the job (whole, or a preview of its first crystals)
    ctx = Context(model, info, key, str(path), dataset, data_dir, None, None, job, limit)
    ctx = with_finished_map(ctx, st.sidebar)
    if ctx.map_job is not None:
        line = ctx.map_job.progress().line().rstrip(".")
        st.sidebar.info(
            f"{line}. The latent map appears when it is done; the other pages work meanwhile."
            if ctx.test is None else
            f"{line}. The latent map shows the first {len(ctx.test.dataset):,} crystals "
            "until the rest are done; the other pages work meanwhile.")
    elif ctx.test is not None:
        st.sidebar.caption(f"Test set: {len(ctx.test.dataset)} crystals encoded.")
    return ctx


def with_finished_map(ctx: Context, where=st) -> Context:
    """``ctx`` with its map job's outcome once the job has finished: the test set and its map,
    or (a broken CSV must not take the whole app down) an error shown ``where`` and the job
    forgotten so that the next run tries again. A page that waited for the job takes the map
    from here in the same run: rerunning instead loops where the context is not rebuilt."""
    job = ctx.map_job
    if job is None:
        return ctx
    if not job.done:
        if job.partial is not None and ctx.test is None:
            # the first crystals' map while the rest are prepared (a cold first launch)
            test, latents = job.partial
            return replace(ctx, test=test, latents=latents)
        return ctx
    if job.error is not None:
        where.error(f"Could not read the test set: {_user_message(job.error)}")
        forget_map_job(ctx.model_key, ctx.data_dir, ctx.dataset.name, ctx.limit, job)
        # a preview published before the failure is not the test set
        return replace(ctx, test=None, latents=None, map_job=None)
    test, latents = job.result
    return replace(ctx, test=test, latents=latents, map_job=None)


def _user_message(exc: BaseException) -> str:
    """The first line of an error, without the exception class (the user's terms)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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
