"""The Streamlit app, driven headlessly with ``streamlit.testing.v1.AppTest``: every page loads
and runs its features on a tiny random-weight checkpoint without an exception."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from cdvae_core.data.registry import get_dataset_info  # noqa: E402
from cdvae_core.data.scaler import StandardScaler  # noqa: E402
from cdvae_core.io import structure_to_cif  # noqa: E402
from cdvae_core.model.cdvae import CDVAE  # noqa: E402
from cdvae_core.model.checkpoint import save_model  # noqa: E402
from cdvae_core.model.config import ModelConfig  # noqa: E402

from conftest import cubic_srtio3  # noqa: E402

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "explorer.py")  # the session script (main.py: the server)
SMALL = {"hidden": 32, "num_layers": 2, "num_rbf": 16}
# (A, B, X) of the tiny test split: cubic ABX3 perovskites
PEROVSKITES = [("Sr", "Ti", "O"), ("Ba", "Ti", "O"), ("Ca", "Zr", "O"), ("La", "Al", "O"),
               ("Sr", "Nb", "N"), ("K", "Mg", "F")]


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """Random weights; lattice scalers near Perov-5's (lengths / N^(1/3) ~ 2.3 Å, right
    angles), since unit scalers give sub-Ångström cells whose decoder graphs hold thousands of
    periodic images and make every Langevin step slow."""
    torch.manual_seed(seed)
    cfg = ModelConfig.for_dataset("perov_5", encoder=SMALL, decoder=SMALL, latent_dim=16,
                                  hidden_dim=32)
    lattice = StandardScaler(torch.tensor([2.3, 2.3, 2.3, 90.0, 90.0, 90.0]),
                             torch.tensor([0.1, 0.1, 0.1, 2.0, 2.0, 2.0]))
    save_model(CDVAE(cfg, scalers={"lattice": lattice}), path)
    return path


def perovskite(a: str, b: str, x: str, lattice: float = 3.9):
    return cubic_srtio3(lattice).replace_species({"Sr": a, "Ti": b, "O": x})


@pytest.fixture(scope="module", autouse=True)
def restore_torch_threads():
    """The app sets torch's thread count for the process (state.configure_torch); put it back
    for the tests that run after these."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    """A tiny checkpoint, a six-crystal Perov-5 test split and a private cache folder."""
    root = tmp_path_factory.mktemp("app")
    ckpt = tiny_checkpoint(root / "checkpoints" / "perov_5" / "model.pt")
    rows = []
    for i, (a, b, x) in enumerate(PEROVSKITES):
        s = perovskite(a, b, x, 3.9 + 0.05 * i)
        rows.append({"material_id": f"m{i}", "cif": structure_to_cif(s), "heat_ref": 0.1 * i,
                     "formula": s.composition.reduced_formula})
    (root / "data" / "perov_5").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / "data" / "perov_5" / "test.csv", index=False)
    return {"root": root, "ckpt": ckpt, "data": root / "data", "cache": root / "cache"}


@pytest.fixture(autouse=True)
def private_env(app_env, monkeypatch):
    """Every test: a private data cache, and one Langevin step per noise level (50 decoder
    calls per run keep the tests quick)."""
    monkeypatch.setenv("CDVAE_CACHE_DIR", str(app_env["cache"]))
    monkeypatch.setenv("CDVAE_APP_STEPS", "1")


@pytest.fixture
def app(app_env, monkeypatch):
    monkeypatch.setenv("CDVAE_CHECKPOINT", str(app_env["ckpt"]))
    monkeypatch.setenv("CDVAE_DATA_DIR", str(app_env["data"]))
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return until_map_ready(at)


def _preparing(at: AppTest) -> bool:
    return (any("The latent map appears when it is done" in i.value for i in at.sidebar.info)
            or any("Preparing the latent map" in i.value for i in at.info))


def until_map_ready(at: AppTest, timeout_s: float = 120.0) -> AppTest:
    """``at`` once the test set's latent map (prepared in a background thread shared by every
    session of the process) is shown; if it had to wait, a fresh AppTest run after it (AppTest
    drops the sidebar of a page rerun under st.navigation)."""
    if not _preparing(at):
        return at
    deadline = time.monotonic() + timeout_s
    while _preparing(at):
        assert time.monotonic() < deadline, "the latent map was not ready in time"
        time.sleep(0.5)
        at.run()
        assert not at.exception, at.exception
    fresh = AppTest.from_file(MAIN, default_timeout=180)
    fresh.run()
    assert not fresh.exception, fresh.exception
    return fresh


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything written by markdown, captions, subheaders, metrics and alerts."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [h.value for h in at.subheader] + [h.value for h in at.title]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [e.value for e in (*at.error, *at.warning, *at.info, *at.success)]
    return "\n".join(str(p) for p in parts)


def select_first_test_material(at: AppTest) -> AppTest:
    at.selectbox(key="pick_test").select_index(0).run()
    at.button(key="select_test").click().run()
    return ok(at)


# ---------------------------------------------------------------------------- model and data
def test_server_warm_up_leaves_the_first_page_nothing_to_load(app_env, tmp_path, monkeypatch):
    """app/main.py calls state.warm_up() at server start: the first session then finds the
    model loaded and the test set's map done, in the same process-wide caches (a fresh model
    file and cache folder, so that nothing earlier is reused)."""
    import sys

    sys.path.insert(0, str(Path(MAIN).parent))
    try:
        import state
    finally:
        sys.path.remove(str(Path(MAIN).parent))
    ckpt = tiny_checkpoint(tmp_path / "perov_5" / "model.pt", seed=3)
    monkeypatch.setenv("CDVAE_CHECKPOINT", str(ckpt))
    monkeypatch.setenv("CDVAE_DATA_DIR", str(app_env["data"]))
    monkeypatch.setenv("CDVAE_CACHE_DIR", str(tmp_path / "cache"))
    loads = []
    real = state.load_model
    monkeypatch.setattr(state, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    done = state.warm_up(wait_for_map_s=120)
    assert "latent map of perov_5 test.csv ready" in done, done
    assert len(loads) == 1
    at = ok(AppTest.from_file(MAIN, default_timeout=120).run())
    assert len(loads) == 1  # the session used the warmed-up model
    assert not _preparing(at)  # and the map: no progress line, its first run shows it
    assert "6 crystals encoded" in " ".join(c.value for c in at.sidebar.caption)
    assert at.get("plotly_chart")


def test_loads_model_and_encodes_test_set(app):
    captions = " ".join(c.value for c in app.sidebar.caption)
    assert "Perov-5, property heat_ref" in captions and "6 crystals encoded" in captions
    assert app.title[0].value == "Latent explorer"
    assert "No z selected" in texts(app)


def test_finds_shipped_checkpoints_in_a_folder(app_env, monkeypatch):
    monkeypatch.delenv("CDVAE_CHECKPOINT", raising=False)
    monkeypatch.setenv("CDVAE_CHECKPOINTS_DIR", str(app_env["root"] / "checkpoints"))
    monkeypatch.setenv("CDVAE_DATA_DIR", str(app_env["root"] / "no-data-here"))
    at = ok(AppTest.from_file(MAIN, default_timeout=120).run())
    assert at.sidebar.selectbox(key="checkpoint").value == app_env["ckpt"]
    assert "Perov-5, property heat_ref" in " ".join(c.value for c in at.sidebar.caption)


def test_opens_on_the_perov_5_model_and_says_what_each_model_is(monkeypatch):
    """Issue 14: with the shipped folders (carbon_24 sorts first) the app opens on Perov-5, and
    the model choice names dataset, property and training data of each model in one line."""
    shipped = Path(MAIN).parents[1] / "checkpoints"
    if not (shipped / "perov_5" / "model.pt").is_file():
        pytest.skip("no shipped checkpoints in this checkout")
    monkeypatch.delenv("CDVAE_CHECKPOINT", raising=False)
    monkeypatch.setenv("CDVAE_CHECKPOINTS_DIR", str(shipped))
    monkeypatch.setenv("CDVAE_DATA_DIR", str(shipped / "no-data-here"))
    at = ok(AppTest.from_file(MAIN, default_timeout=300).run())
    box = at.sidebar.selectbox(key="checkpoint")
    assert box.value == shipped / "perov_5" / "model.pt"
    lines = box.options
    assert len(lines) >= 2
    assert lines[0].startswith("Perov-5, property heat_ref, trained on"), lines
    carbon = [x for x in lines if x.startswith("Carbon-24")]
    assert carbon and "property energy_per_atom, trained on val.csv minus a 10 % hold-out" \
        in carbon[0], lines


def test_switching_model_clears_its_latent_state(app_env, monkeypatch, tmp_path):
    # Set before the first run: after it, AppTest's tree under st.navigation has no sidebar.
    monkeypatch.setenv("CDVAE_CHECKPOINT", str(app_env["ckpt"]))
    monkeypatch.setenv("CDVAE_DATA_DIR", str(app_env["data"]))
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.session_state["model_key"] = "a model loaded before"
    at.session_state["selected"] = {"z": torch.zeros(8), "label": "old z", "source": "prior"}
    at.session_state["custom_checkpoint"] = str(tiny_checkpoint(tmp_path / "other.pt", seed=1))
    ok(at.run())
    assert "selected" not in at.session_state and "No z selected" in texts(at)
    missing = AppTest.from_file(MAIN, default_timeout=120)
    missing.session_state["custom_checkpoint"] = str(tmp_path / "missing.pt")
    assert any("Cannot load the checkpoint" in e.value for e in ok(missing.run()).error)


def test_missing_checkpoint_gives_a_message(monkeypatch, tmp_path):
    monkeypatch.delenv("CDVAE_CHECKPOINT", raising=False)
    monkeypatch.setenv("CDVAE_CHECKPOINTS_DIR", str(tmp_path / "none"))
    at = ok(AppTest.from_file(MAIN, default_timeout=60).run())
    assert any("No model checkpoint found" in e.value for e in at.error)


def test_corrupt_checkpoint_gives_a_message(monkeypatch, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    monkeypatch.setenv("CDVAE_CHECKPOINT", str(bad))
    at = ok(AppTest.from_file(MAIN, default_timeout=60).run())
    assert any("Cannot load the checkpoint" in e.value for e in at.error)


def test_works_from_the_prior_without_data(app_env, monkeypatch):
    monkeypatch.setenv("CDVAE_CHECKPOINT", str(app_env["ckpt"]))
    monkeypatch.setenv("CDVAE_DATA_DIR", str(app_env["root"] / "no-data-here"))
    at = ok(AppTest.from_file(MAIN, default_timeout=120).run())
    assert any("prior" in i.value for i in at.info)
    at.button(key="draw_prior").click().run()
    assert "prior draw (seed 0)" in texts(ok(at))


def test_server_is_local_and_serves_the_viewer_offline():
    """localhost by default; 3Dmol.js comes from the app's static folder, never a CDN."""
    import tomllib

    repo = Path(MAIN).parents[1]
    config = tomllib.loads((repo / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost"
    assert config["server"]["enableStaticServing"] is True
    assert config["browser"]["gatherUsageStats"] is False
    html = (repo / "app" / "components" / "viewer3d" / "index.html").read_text()
    assert '<script src="../../app/static/3Dmol-min.js">' in html
    assert "http://" not in html and "https://" not in html


# ---------------------------------------------------------------------------- latent explorer
def test_latent_select_readout_and_interpolation(app):
    at = select_first_test_material(app)
    shown = texts(at)
    assert "SrTiO3 (m0)" in shown
    assert {"Atoms", "heat_ref (predicted)"} <= {m.label for m in at.metric}
    assert "Composition drawn for" in shown
    at.button(key="set_a").click().run()
    at.button(key="draw_prior").click().run()
    at.button(key="set_b").click().run()
    at.slider(key="interp_n").set_value(3).run()
    at.button(key="interp_run").click().run()
    shown = texts(ok(at))
    assert "t = 0.00" in shown and "t = 1.00" in shown
    assert "interp" in at.session_state


def test_sessions_are_independent(app_env, monkeypatch):
    monkeypatch.setenv("CDVAE_CHECKPOINT", str(app_env["ckpt"]))
    monkeypatch.setenv("CDVAE_DATA_DIR", str(app_env["data"]))
    one = until_map_ready(ok(AppTest.from_file(MAIN, default_timeout=120).run()))
    two = until_map_ready(ok(AppTest.from_file(MAIN, default_timeout=120).run()))
    one.button(key="draw_prior").click().run()
    assert "selected" in one.session_state
    two.run()
    assert "selected" not in two.session_state


# ---------------------------------------------------------------------------- denoising viewer
def click(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click()
    return at.run()


def run_sampler(at: AppTest, scheme: str | None = None, **values) -> AppTest:
    at.switch_page("pages/denoise.py").run()
    settings = {"Steps per noise level": 1, "Frames kept": 6,
                "Use every k-th noise level": 10, **values}
    for widget in at.number_input:
        if widget.label in settings:
            widget.set_value(settings[widget.label])
    if scheme is not None:
        next(w for w in at.selectbox if w.label == "Scheme").set_value(scheme)
    return click(at, "Run annealed Langevin")


def test_denoising_viewer_runs_and_shows_frames(app):
    at = select_first_test_material(app)
    at = ok(run_sampler(at))
    assert at.title[0].value == "Denoising viewer"
    slider = at.slider(key="frame_idx")
    assert slider.max >= 2
    assert {"Step", "Noise σ", "Mean |score|"} <= {m.label for m in at.metric}
    table = at.dataframe[0].value
    assert {"element", "score_norm", "p_element", "top1"} <= set(table.columns)
    assert len(table) == at.session_state["traj"]["result"].num_atoms.item()
    slider.set_value(slider.max).run()
    last = at.session_state["traj"]["result"].frames[-1].step
    assert ok(at).metric[0].value == f"{last} / {last}"
    assert {"Formula", "Space group", "Density (g/cm³)"} <= {m.label for m in at.metric}
    labels = {b.label for b in at.get("download_button")}
    assert {"CIF", "POSCAR", "Trajectory (extended XYZ)"} <= labels
    xyz = at.session_state["traj"]["extxyz"]
    assert xyz.count("Lattice=") == slider.max + 1


def test_denoising_viewer_runs_the_predictor_corrector_scheme(app):
    at = ok(run_sampler(select_first_test_material(app), scheme="pc",
                        **{"Steps per noise level": 0}))
    result = at.session_state["traj"]["result"]
    # 0 corrector steps: one predictor step on each of the 6 levels visited (stride 10 of 50)
    assert result.frames[-1].step == 6


@pytest.mark.parametrize(
    "bad, message",
    [({"Steps per noise level": 0}, "steps per level"),
     ({"Step size ε": -1.0}, "step size"),
     ({"Frames kept": 100000}, "frames kept"),
     ({"Steps per noise level": 5000}, "steps per level")],
)
def test_bad_sampler_settings_give_a_message(app, bad, message):
    at = ok(run_sampler(select_first_test_material(app), **bad))
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert "traj" not in at.session_state


# ---------------------------------------------------------------------------- steering
def test_property_steering_decodes_saved_steps(app):
    at = select_first_test_material(app)
    at.switch_page("pages/steer.py").run()
    for widget in at.number_input:
        if widget.label == "Gradient steps":
            widget.set_value(20)
        if widget.label == "Decode every k steps":
            widget.set_value(10)
    at.radio[0].set_value("maximize")
    ok(click(at, "Steer"))
    out = at.session_state["steer_result"]
    assert out["saved"] == [0, 10, 20] and len(out["structures"]) == 3
    assert len(out["prop"]) == 21 and out["prop"][-1] > out["prop"][0]
    assert "start" in texts(at) and "step 20" in texts(at)


def test_bad_steering_settings_give_a_message(app):
    at = select_first_test_material(app)
    at.switch_page("pages/steer.py").run()
    for widget in at.number_input:
        if widget.label == "Learning rate":
            widget.set_value(-1.0)
    click(at, "Steer")
    assert any("learning rate" in e.value for e in ok(at).error)


# ---------------------------------------------------------------------------- upload
def test_upload_encodes_maps_and_reconstructs(app):
    at = app.switch_page("pages/upload.py").run()
    at.text_area(key="cif_text").input(structure_to_cif(perovskite("Ba", "Zr", "O", 4.19))).run()
    ok(at)
    assert "BaZrO3" in texts(at)
    assert at.session_state["uploads"][0]["label"].startswith("BaZrO3")
    at.checkbox(key="upload_keep").check()
    at.button(key="upload_run").click().run()
    recon = ok(at).session_state["recon"]["structure"]
    assert recon.composition.reduced_formula == "BaZrO3"  # atoms kept, coordinates decoded
    assert any(m.label == "Match (StructureMatcher)" for m in at.metric)
    at.button(key="upload_select").click().run()
    at.switch_page("pages/latent.py").run()
    assert ok(at).session_state["selected"]["source"] == "upload"


@pytest.mark.parametrize(
    "cif, reason",
    [("data_x\n_cell_length_a 4\nloop_\n_broken", "cannot be used"),
     (structure_to_cif(cubic_srtio3()).replace("Sr", "Xx"), "unknown element"),
     (structure_to_cif(cubic_srtio3() * (2, 2, 2)), "exceeds the dataset maximum"),
     ("", None)],
)
def test_bad_uploads_give_a_message(app, cif, reason):
    at = app.switch_page("pages/upload.py").run()
    at.text_area(key="cif_text").input(cif).run()
    ok(at)
    if reason is None:
        assert not at.error
    else:
        assert any(reason in e.value for e in at.error), [e.value for e in at.error]


@pytest.mark.parametrize(
    "edit, words",
    [(lambda c: c[: len(c) * 2 // 3], "truncated"),
     (lambda c: c.replace("_cell_length_a   3.90500000", "_cell_length_a   0"), "length a is 0"),
     (lambda c: c.replace("_cell_angle_gamma   90.00000000", "_cell_angle_gamma   180"),
      "angle gamma")],
    ids=["truncated", "zero-length cell", "flat cell"],
)
def test_broken_cif_upload_says_what_is_wrong(app, edit, words):
    """Issue 14: no raw exception text (ZeroDivisionError, 'Invalid CIF file with no
    structures!'), a sentence about the file."""
    at = app.switch_page("pages/upload.py").run()
    at.text_area(key="cif_text").input(edit(structure_to_cif(cubic_srtio3()))).run()
    errors = [e.value for e in ok(at).error]
    assert any(words in e for e in errors), errors
    assert not any("ZeroDivisionError" in e or "no structures!" in e for e in errors), errors


def test_disordered_upload_is_refused(app):
    s = cubic_srtio3()
    s.replace(0, {"Sr": 0.5, "Ba": 0.5})
    at = app.switch_page("pages/upload.py").run()
    at.text_area(key="cif_text").input(structure_to_cif(s)).run()
    assert any("disordered" in e.value for e in ok(at).error)


# ---------------------------------------------------------------------------- gallery
def test_gallery_generates_filters_opens_and_downloads(app):
    at = app.switch_page("pages/gallery.py").run()
    for widget in at.number_input:
        if widget.label == "Samples":
            widget.set_value(4)
    gal = ok(click(at, "Generate")).session_state["gallery"]
    table = gal["table"]
    assert len(table) == 4 and {"validity", "spacegroup", "nearest_test"} <= set(table.columns)
    assert all(("valid" in v) for v in table["validity"])
    at.selectbox(key="gal_sort").select("density_g_cm3").run()
    at.checkbox(key="gal_desc").check().run()
    picks = [c for c in ok(at).checkbox if (c.key or "").startswith("gal_pick_")]
    assert len(picks) == 4
    picks[0].check().run()
    zip_button = [b for b in at.get("download_button") if "zip of CIFs" in b.label][0]
    assert "1 sample(s)" in zip_button.label
    at.selectbox(key="gal_valid").select("invalid").run()
    shown = [c for c in ok(at).checkbox if (c.key or "").startswith("gal_pick_")]
    assert len(shown) == int((~table["valid"]).sum())
    at.selectbox(key="gal_valid").select("all").run()
    click(at, "Open")
    assert ok(at).title[0].value == "Denoising viewer"
    focus = at.session_state["focus"]
    assert focus["z"] is not None and "Sample" in texts(at)
    # AppTest does not follow st.switch_page across runs: name the page it should rerun
    at.switch_page("pages/denoise.py").run()
    click(at, "Denoise from this sample's z")
    assert ok(at).session_state["selected"]["source"] == "sample"


def test_gallery_opens_an_evaluation_run(app, tmp_path):
    from cdvae_core.io import write_cif_zip

    structures = [perovskite(*abx) for abx in PEROVSKITES[:3]]
    write_cif_zip(structures, tmp_path / "run" / "samples.zip", ["a", "b", "c"])
    pd.DataFrame({"sample": [0, 1, 2], "energy": [0.3, 0.1, 0.2]}).to_csv(
        tmp_path / "run" / "per_sample.csv", index=False)
    at = app.switch_page("pages/gallery.py").run()
    at.radio(key="gallery_source").set_value("Open an evaluation run").run()
    at.text_input(key="gallery_path").input(str(tmp_path / "run" / "samples.zip")).run()
    at.button(key="gallery_open").click().run()
    table = ok(at).session_state["gallery"]["table"]
    assert list(table["name"]) == ["a", "b", "c"] and "energy" in table.columns
    assert table["nearest_test"][0] == "SrTiO3 (m0)"
    at.text_input(key="gallery_path").input(str(tmp_path / "missing.zip")).run()
    at.button(key="gallery_open").click().run()
    assert any("Cannot open these samples" in e.value for e in ok(at).error)


def test_gallery_compares_a_sample_with_its_nearest_test_crystals(app, tmp_path):
    from cdvae_core.io import write_cif_zip

    write_cif_zip([perovskite(*PEROVSKITES[0], 3.93), perovskite(*PEROVSKITES[2])],
                  tmp_path / "run" / "samples.zip", ["a", "b"])
    pd.DataFrame({"sample": [0, 1], "nearest_struct_ref_id": ["m1", "m2"],
                  "nearest_comp_ref_id": ["m0", "m2"], "min_struct_dist": [0.01, 0.02],
                  "min_comp_dist": [0.0, 0.0]}).to_csv(tmp_path / "run" / "per_sample.csv",
                                                       index=False)
    at = app.switch_page("pages/gallery.py").run()
    at.radio(key="gallery_source").set_value("Open an evaluation run").run()
    at.text_input(key="gallery_path").input(str(tmp_path / "run" / "samples.zip")).run()
    at.button(key="gallery_open").click().run()
    gid = ok(at).session_state["gallery"]["id"]
    assert at.selectbox(key=f"cmp_sample_{gid}").value == "a"
    ref = at.selectbox(key=f"cmp_ref_{gid}_0")
    assert ref.options == ["BaTiO3 (m1)", "SrTiO3 (m0)"]  # the evaluation's, then the app's
    shown = at.dataframe[-1].value
    assert list(shown["material_id"]) == ["m1", "m0"]
    comp = shown["composition fingerprint distance"]
    assert comp[1] < 1e-9 < comp[0]  # SrTiO3 against SrTiO3, then BaTiO3
    assert (shown["structure fingerprint distance"] >= 0).all()
    words = texts(at)
    assert "Structure fingerprint distance" in words and "by composition: **m0**" in words
    assert "over the whole test set, per the evaluation" in words
    at.selectbox(key=f"cmp_sample_{gid}").select("b").run()
    assert ok(at).selectbox(key=f"cmp_ref_{gid}_1").options == ["CaZrO3 (m2)"]
    at.selectbox(key=f"cmp_{gid}_cell").select("conventional").run()
    assert "conventional standard cell" in texts(ok(at))


def test_gallery_compare_without_a_test_set_says_so(app_env, monkeypatch):
    monkeypatch.setenv("CDVAE_CHECKPOINT", str(app_env["ckpt"]))
    monkeypatch.setenv("CDVAE_DATA_DIR", str(app_env["root"] / "no-data-here"))
    at = ok(AppTest.from_file(MAIN, default_timeout=120).run())
    at.switch_page("pages/gallery.py").run()
    for widget in at.number_input:
        if widget.label == "Samples":
            widget.set_value(2)
    ok(click(at, "Generate"))
    assert any("No test set is loaded" in i.value for i in at.info)


# ---------------------------------------------------------------------------- CHGNet relaxation
@pytest.mark.slow
def test_relax_button_plays_the_relaxation_and_reports_it(app):
    pytest.importorskip("chgnet", reason="CHGNet not installed (pip install 'cdvae-core[relax]')")
    from conftest import rocksalt_nacl

    rattled = rocksalt_nacl()
    rattled.perturb(0.12, seed=0)
    app.session_state["focus"] = {"name": "rattled", "structure": rattled, "z": None}
    at = ok(app.switch_page("pages/denoise.py").run())
    at.button(key="focus_relax").click().run()
    record = ok(at).session_state["relax"]["focus"]
    res = record["result"]
    assert res.error is None and res.energy_per_atom_eV <= res.initial_energy_per_atom_eV + 1e-6
    labels = {m.label for m in at.metric}
    assert {"Energy before (eV/atom)", "Energy after (eV/atom)", "RMS displacement (Å)",
            "Volume change", "Converged", "Space group before → after"} <= labels
    sg = next(m for m in at.metric if m.label == "Space group before → after").value
    assert sg.endswith("→ 225")  # relaxed rock salt is Fm-3m again
    # the trajectory plays frame by frame in the viewer: the slider walks input → result
    slider = at.slider(key="focus_relax_frame")
    assert slider.max == len(record["payload"]) - 1 >= 1
    slider.set_value(slider.max).run()
    assert ok(at).session_state["focus_relax_frame"] == slider.max
    assert "Relaxed structure (CIF)" in {b.label for b in at.get("download_button")}
    # a second click reuses the cached CHGNet model and gives the same relaxation
    at.button(key="focus_relax").click().run()
    again = ok(at).session_state["relax"]["focus"]["result"]
    assert again.energy_per_atom_eV == pytest.approx(res.energy_per_atom_eV, abs=1e-5)


def test_relax_button_without_chgnet_explains_the_install(app, no_chgnet):
    at = app.switch_page("pages/upload.py").run()
    at.text_area(key="cif_text").input(structure_to_cif(perovskite("Ba", "Zr", "O", 4.19))).run()
    at.checkbox(key="upload_keep").check()
    at.button(key="upload_run").click().run()
    assert "Relax the reconstruction" in texts(ok(at))
    at.button(key="recon_relax").click().run()
    assert any("pip install" in e.value and "chgnet" in e.value for e in ok(at).error), \
        [e.value for e in at.error]
    assert "recon" not in at.session_state["relax"]


# ---------------------------------------------------------------------------- viewer settings
def upload(app, structure) -> AppTest:
    at = app.switch_page("pages/upload.py").run()
    at.text_area(key="cif_text").input(structure_to_cif(structure)).run()
    return ok(at)


def test_viewer_settings_space_group_and_shown_cell(app):
    at = upload(app, cubic_srtio3())
    assert "Space group **Pm-3m** (221), cubic, at tolerance 0.10 Å" in texts(at)
    assert "covalent radii" in texts(at) and "VESTA colours" in texts(at)
    at.checkbox(key="upload_poly").check()
    for axis in "abc":
        at.number_input(key=f"upload_n{axis}").set_value(2)
    at.selectbox(key="upload_cell").set_value("conventional")
    at.slider(key="upload_symprec").set_value(0.3)
    at.checkbox(key="upload_sym").check().run()
    ok(at)
    assert not at.error
    assert "conventional standard (symmetrised) cell, 2x2x2" in texts(at)
    assert "at tolerance 0.30 Å" in texts(at)
    labels = {b.label for b in at.get("download_button")}
    assert {"Shown cell (CIF)", "Shown cell (POSCAR)", "Shown cell (extended XYZ)"} <= labels
    at.selectbox(key="upload_bonds").set_value("crystalnn").run()
    assert "CrystalNN" in texts(ok(at))


@pytest.mark.parametrize("widget, value, words", [
    ("upload_symprec", 0.0, "symmetry tolerance is 0.01 to 0.5 Å"),
    ("upload_na", 10, "supercell repeats each axis 1 to 3 times"),
    ("upload_nb", 0, "supercell repeats each axis 1 to 3 times"),
    ("upload_nc", -2, "supercell repeats each axis 1 to 3 times"),
])
def test_bad_viewer_settings_give_a_message(app, widget, value, words):
    at = upload(app, cubic_srtio3())
    (at.slider if widget.endswith("symprec") else at.number_input)(key=widget).set_value(value)
    at.run()
    assert any(words in e.value for e in ok(at).error), [e.value for e in at.error]
    assert "1x1x1" in texts(at)  # the default view is shown meanwhile


def test_negative_tolerance_cannot_be_set(app):
    at = upload(app, cubic_srtio3())
    at.slider(key="upload_symprec").set_value(-0.2).run()  # the slider keeps it in range
    assert not ok(at).error and "at tolerance" in texts(at)


def test_denoising_viewer_physics_settings(app):
    at = ok(run_sampler(select_first_test_material(app)))
    traj = at.session_state["traj"]
    assert traj["target"] is not None  # a test material: its crystal is shown as ghosts
    scene = traj["payload"][-1]
    assert len(scene["arrows"]) == traj["result"].num_atoms.item() and "ghosts" in scene
    assert "σ² x score" in texts(at)
    at.toggle(key="show_arrows").set_value(False)
    at.toggle(key="shade").set_value(False)
    at.select_slider(key="trail").set_value(0).run()
    ok(at)


# ---------------------------------------------------------------------------- MP-20 subset
def test_a_model_of_the_mp_20_subset_in_the_app(tmp_path, monkeypatch):
    """Issue 17: a model of the 2-3-element MP-20 subset (tiny random weights here) gets its
    latent map coloured by chemical family and by formation energy, steering toward lower
    formation energy, and validity and nearest test material for every decoded crystal."""
    from helpers import data_file

    torch.manual_seed(0)
    cfg = ModelConfig.for_dataset("mp_20_biternary", encoder=SMALL, decoder=SMALL,
                                  latent_dim=16, hidden_dim=32)
    lattice = StandardScaler(torch.tensor([2.3, 2.3, 2.3, 90.0, 90.0, 90.0]),
                             torch.tensor([0.1, 0.1, 0.1, 2.0, 2.0, 2.0]))
    ckpt = tmp_path / "mp" / "model.pt"
    ckpt.parent.mkdir()
    save_model(CDVAE(cfg, scalers={"lattice": lattice}), ckpt)
    (tmp_path / "data" / "mp_20_biternary").mkdir(parents=True)
    rows = pd.read_csv(data_file("mp_20_biternary", "test")).head(12)
    rows.to_csv(tmp_path / "data" / "mp_20_biternary" / "test.csv", index=False)
    monkeypatch.setenv("CDVAE_CHECKPOINT", str(ckpt))
    monkeypatch.setenv("CDVAE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CDVAE_CACHE_DIR", str(tmp_path / "cache"))
    at = until_map_ready(ok(AppTest.from_file(MAIN, default_timeout=180).run()))
    assert "MP-20 2-3-element subset, property formation_energy_per_atom" in " ".join(
        c.value for c in at.sidebar.caption)
    at.selectbox(key="map_colour").select("chemical family").run()
    spec = ok(at).get("plotly_chart")[0].proto.spec
    assert any(f'"name":"{fam}"' in spec.replace(" ", "")
               for fam in ("oxide", "intermetallic", "halide", "nitride", "chalcogenide",
                           "pnictide")), spec[:400]
    at = select_first_test_material(at)
    at.switch_page("pages/steer.py").run()
    assert "minimize formation_energy_per_atom" in [o for r in at.radio for o in r.options]
    for widget in at.number_input:
        if widget.label == "Gradient steps":
            widget.set_value(10)
        if widget.label == "Decode every k steps":
            widget.set_value(10)
    out = ok(click(at, "Steer")).session_state["steer_result"]
    assert out["prop"][-1] < out["prop"][0]  # toward lower formation energy
    at = at.switch_page("pages/gallery.py").run()
    for widget in at.number_input:
        if widget.label == "Samples":
            widget.set_value(2)
    table = ok(click(at, "Generate")).session_state["gallery"]["table"]
    assert {"validity", "nearest_test"} <= set(table.columns)
    assert all(("composition" in v or "valid" in v) for v in table["validity"])


def test_a_cold_launch_shows_the_first_crystals_map_before_the_rest(tmp_path, monkeypatch):
    """Issue 14: on a cold cache the map of the first crystals appears as soon as their graphs
    are built, with the progress of the rest beside it; the whole map replaces it when done,
    and nearest-material searches wait for the whole test set."""
    monkeypatch.syspath_prepend(str(Path(MAIN).parent))
    import state  # the app's module, as its pages import it

    monkeypatch.setattr(state, "PREVIEW_CRYSTALS", 4)
    gate = threading.Event()
    real_load = state.load_split

    def held_after_preview(*args, on_preview=None, **kwargs):
        def preview(part):
            on_preview(part)
            gate.wait(120)  # the rest of the test set waits until the test has looked

        return real_load(*args, on_preview=preview, **kwargs)

    monkeypatch.setattr(state, "load_split", held_after_preview)
    rows = []
    for i in range(12):
        a, b, x = PEROVSKITES[i % len(PEROVSKITES)]
        s = perovskite(a, b, x, 3.8 + 0.03 * i)
        rows.append({"material_id": f"m{i}", "cif": structure_to_cif(s), "heat_ref": 0.1 * i})
    (tmp_path / "data" / "perov_5").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(tmp_path / "data" / "perov_5" / "test.csv", index=False)
    monkeypatch.setenv("CDVAE_CHECKPOINT", str(tiny_checkpoint(tmp_path / "model.pt", seed=3)))
    monkeypatch.setenv("CDVAE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CDVAE_CACHE_DIR", str(tmp_path / "cache"))
    try:
        at = ok(AppTest.from_file(MAIN, default_timeout=120).run())
        deadline = time.monotonic() + 120
        while not any("shows the first 4 crystals" in i.value for i in at.sidebar.info):
            assert time.monotonic() < deadline, [i.value for i in at.sidebar.info]
            time.sleep(0.5)
            at = ok(AppTest.from_file(MAIN, default_timeout=120).run())
        spec = at.get("plotly_chart")[0].proto.spec
        assert '"m3"' in spec and '"m4"' not in spec  # the preview: the first four crystals
        assert any("first 4 crystals meanwhile" in i.value for i in at.info)
        at.switch_page("pages/gallery.py").run()
        for widget in at.number_input:
            if widget.label == "Samples":
                widget.set_value(1)
        table = ok(click(at, "Generate")).session_state["gallery"]["table"]
        assert "nearest_test" not in table.columns  # not among a part of the test set
    finally:
        gate.set()
    at = until_map_ready(ok(AppTest.from_file(MAIN, default_timeout=120).run()))
    spec = ok(at).get("plotly_chart")[0].proto.spec
    assert '"m11"' in spec
    assert "Test set: 12 crystals encoded." in [c.value for c in at.sidebar.caption]


def test_a_map_job_that_fails_after_its_preview_shows_the_error_not_the_preview(
        tmp_path, monkeypatch):
    """A preview of the first crystals is not the test set: when the rest fail to load, the app
    says why and keeps no part of the test set as if it were the whole."""
    monkeypatch.syspath_prepend(str(Path(MAIN).parent))
    import state

    monkeypatch.setattr(state, "PREVIEW_CRYSTALS", 4)
    real_load = state.load_split

    def fails_after_preview(*args, on_preview=None, **kwargs):
        previewed = []

        def preview(part):
            on_preview(part)
            previewed.append(len(part))

        ds = real_load(*args, on_preview=preview, **kwargs)
        if previewed:  # the rest of the load fails once the preview is out
            raise OSError("the disk went away")
        return ds

    monkeypatch.setattr(state, "load_split", fails_after_preview)
    rows = [{"material_id": f"m{i}", "heat_ref": 0.1 * i,
             "cif": structure_to_cif(perovskite(*PEROVSKITES[i % 6], 3.8 + 0.03 * i))}
            for i in range(10)]
    (tmp_path / "data" / "perov_5").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(tmp_path / "data" / "perov_5" / "test.csv", index=False)
    monkeypatch.setenv("CDVAE_CHECKPOINT", str(tiny_checkpoint(tmp_path / "model.pt", seed=4)))
    monkeypatch.setenv("CDVAE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CDVAE_CACHE_DIR", str(tmp_path / "cache"))
    deadline = time.monotonic() + 120
    while True:
        at = ok(AppTest.from_file(MAIN, default_timeout=120).run())
        errors = [e.value for e in at.sidebar.error] + [e.value for e in at.error]
        if errors:
            break
        assert time.monotonic() < deadline, "no error shown"
        time.sleep(0.5)
    assert any("Could not read the test set: the disk went away" in e for e in errors), errors
    assert at.session_state["ctx"].test is None
    assert any("No test set loaded" in i.value for i in at.info)


def test_a_failed_job_never_leaves_its_preview_as_the_test_set(monkeypatch):
    """The page-side path: the sidebar built its context from the preview, then the job failed
    before the page looked. The page's context must hold no test set, and the error is shown."""
    monkeypatch.syspath_prepend(str(Path(MAIN).parent))
    import state

    class FailedJob:
        done, error, partial = True, OSError("the disk went away"), ("preview", "map")

    shown = []

    class Where:
        def error(self, text):
            shown.append(text)

    ctx = state.Context(model=None, info={}, model_key="k", path="p",
                        dataset=get_dataset_info("perov_5"), data_dir="d", test="preview",
                        latents="map", map_job=FailedJob(), limit=0)
    assert ctx.whole_test is None  # a preview is not the whole test set
    out = state.with_finished_map(ctx, Where())
    assert out.test is None and out.latents is None and out.map_job is None
    assert shown == ["Could not read the test set: the disk went away"]
