"""Task runners write every promised artefact; the predictor and the CLI behave."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from cdvae_core.cli import main
from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.scaler import fit_scalers
from cdvae_core.diffusion.langevin import LangevinConfig
from cdvae_core.experiments import tasks
from cdvae_core.io import load_structures
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.checkpoint import save_model
from cdvae_core.model.config import ModelConfig
from cdvae_core.predictor.gnn import (
    PredictorConfig,
    PropertyPredictor,
    load_predictor,
    save_predictor,
    train_predictor,
)
from cdvae_core.utils import CheckpointError

from conftest import cubic_srtio3, rocksalt_nacl
from helpers import data_file

SMALL = {"hidden": 16, "num_layers": 1, "num_rbf": 8}


@pytest.fixture
def test_set():
    structures = []
    for i in range(4):
        s = cubic_srtio3(3.8 + 0.05 * i)
        structures.append(s)
    structures.append(rocksalt_nacl())
    return CrystalDataset.from_structures(structures, "perov_5", props=[0.1, 0.5, 1.0, 1.5, 2.0],
                                          material_ids=["a", "b", "c", "d", "e"])


@pytest.fixture
def tiny(test_set, tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig.for_dataset("perov_5", encoder=SMALL, decoder=SMALL, latent_dim=8,
                                  hidden_dim=16)
    model = CDVAE(cfg, fit_scalers(test_set)).eval()
    path = tmp_path / "model.pt"
    save_model(model, path)
    return model, path


def test_reconstruction_and_generation_runs_write_their_artefacts(tiny, test_set, tmp_path):
    model, path = tiny
    sampler = LangevinConfig(n_step_each=1)
    rec = tasks.run_reconstruction(model, test_set, tmp_path / "rec", sampler, seed=3,
                                   checkpoint=path, progress=False)
    assert 0.0 <= rec["match_rate"] <= 1.0 and rec["num_structures"] == 5
    gen = tasks.run_generation(model, test_set, tmp_path / "gen", num_samples=6,
                               sampler=sampler, seed=3, checkpoint=path, n_diversity=4,
                               progress=False)
    assert gen["num_samples"] == 6
    for run in ("rec", "gen"):
        folder = tmp_path / run
        for name in ("structures.zip", "structures.extxyz", "settings.json", "summary.json",
                     "per_sample.csv"):
            assert (folder / name).is_file(), f"{run}/{name} missing"
        settings = json.loads((folder / "settings.json").read_text())
        assert settings["seed"] == 3 and settings["sampler"]["n_step_each"] == 1
        assert len(settings["checkpoint_sha256"]) == 64
        assert "torch" in settings["versions"] and "pymatgen" in settings["versions"]
    with zipfile.ZipFile(tmp_path / "gen" / "structures.zip") as z:
        assert len(z.namelist()) == 6
    assert len(load_structures(tmp_path / "gen" / "structures.extxyz")) == 6


def test_same_seed_same_samples(tiny, test_set, tmp_path):
    model, _ = tiny
    from cdvae_core.model.decode import generate

    a = generate(model, 3, LangevinConfig(n_step_each=1), seed=5, progress=False)
    b = generate(model, 3, LangevinConfig(n_step_each=1), seed=5, progress=False)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.frac_coords, y.frac_coords)


def test_optimization_run_keeps_every_decode_and_rescores(tiny, test_set, tmp_path):
    """The reference's protocol: the first materials of the test file, every decode kept
    (named by material and iteration), scored by the instrument; a second instrument rescores
    the same decodes without decoding again."""
    model, path = tiny
    predictor = PropertyPredictor(PredictorConfig(hidden=16, num_layers=1)).eval()
    res = tasks.run_optimization(model, test_set, tmp_path / "opt", predictor.predict,
                                 num_materials=3, steps=6, decode_every=None,
                                 sampler=LangevinConfig(n_step_each=1), checkpoint=path,
                                 progress=False, instrument="tiny predictor")
    assert res["num_materials"] == 3 and res["decodes_per_material"] == 6
    assert res["decode_iterations"] == [0, 1, 2, 3, 4, 5]  # steps // 10 = 0 -> every step
    assert set(res["success_rates"]) == {"SR5", "SR10", "SR15"}
    assert res["property_instrument"] == "tiny predictor"
    import pandas as pd

    table = pd.read_csv(tmp_path / "opt" / "per_sample.csv")
    assert len(table) == 18
    assert list(table["material_id"][:3]) == test_set.material_ids[:3]  # the first three
    assert table.groupby("material_id")["is_best"].sum().max() <= 1
    saved = load_structures(tmp_path / "opt" / "structures.extxyz")
    missing = tmp_path / "opt" / "missing.txt"
    assert len(saved) + (len(missing.read_text().split()) if missing.is_file() else 0) == 18

    def constant(structures):
        return np.full(len(structures), -1e9)  # below every threshold

    again = tasks.rescore_optimization(tmp_path / "opt", "perov_5", constant, "constant")
    valid = table["struct_valid"] & table["comp_valid"]
    materials_ok = table[valid]["material_id"].nunique()
    assert again["success_rates"]["SR5"] == materials_ok / 3
    assert again["property_instrument"] == "constant"
    assert again["decode_iterations"] == res["decode_iterations"]


def test_predictor_learns_and_roundtrips(test_set, tmp_path):
    torch.manual_seed(0)
    model, report = train_predictor(test_set, test_set, PredictorConfig(hidden=16, num_layers=1),
                                    epochs=60, batch_size=5, lr=5e-3, progress=False)
    history = report["history"]
    assert history[-1]["val_mae"] < history[0]["val_mae"]
    path = tmp_path / "pred.pt"
    save_predictor(model, path, {"test_mae": 0.1})
    loaded = load_predictor(path)
    structures = test_set.structures()
    np.testing.assert_allclose(loaded.predict(structures), model.predict(structures), rtol=1e-5)
    assert np.isnan(loaded.predict([None])[0])
    with pytest.raises(CheckpointError, match="not a cdvae_core property predictor"):
        torch.save({"format": "x"}, tmp_path / "bad.pt")
        load_predictor(tmp_path / "bad.pt")


def test_predictor_is_invariant_to_cell_choice():
    model = PropertyPredictor(PredictorConfig(hidden=16, num_layers=2)).eval()
    s = cubic_srtio3()
    s.perturb(0.05)
    big = s.copy()
    big.make_supercell([2, 1, 1])
    p = model.predict([s, big])
    assert p[0] == pytest.approx(p[1], rel=1e-3, abs=1e-5)  # float32 sums in another order


def test_cli_generate_and_info(tiny, tmp_path, capsys):
    _, path = tiny
    assert main(["generate", str(path), "--out-dir", str(tmp_path / "g"), "--num-samples", "2",
                 "--sampler", "interactive", "--steps-per-level", "1"]) == 0
    assert (tmp_path / "g" / "structures.zip").is_file()
    assert main(["generate", str(path), "--out-dir", str(tmp_path / "pc"), "--num-samples", "2",
                 "--scheme", "pc", "--steps-per-level", "0", "--num-levels", "4",
                 "--step-lr", "3e-4"]) == 0
    settings = json.loads((tmp_path / "pc" / "settings.json").read_text())
    assert settings["sampler"] == {**settings["sampler"], "scheme": "pc", "n_step_each": 0,
                                   "num_levels": 4, "step_lr": 3e-4}
    assert main(["info", str(path)]) == 0
    assert "parameters" in capsys.readouterr().out
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    assert main(["info", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_default_sampler_follows_the_models_dataset(test_set, tmp_path, capsys):
    # the sampling study found Carbon-24 needs 1,000 decoder calls (thorough) where Perov-5 does
    # well with 250 (fast): without --sampler each model gets its dataset's preset, and the
    # command says so; --num-levels 2 only keeps the run short and must not change the preset
    torch.manual_seed(0)
    runs = {}
    for dataset in ("perov_5", "carbon_24"):
        cfg = ModelConfig.for_dataset(dataset, encoder=SMALL, decoder=SMALL, latent_dim=8,
                                      hidden_dim=16)
        path = tmp_path / f"{dataset}.pt"
        save_model(CDVAE(cfg, fit_scalers(test_set)).eval(), path)
        out = tmp_path / dataset
        assert main(["generate", str(path), "--out-dir", str(out), "--num-samples", "1",
                     "--num-levels", "2", "--compile", "off"]) == 0
        assert f"the default for {dataset} models" in capsys.readouterr().out
        runs[dataset] = json.loads((out / "settings.json").read_text())
    assert runs["carbon_24"]["sampler_preset"] == "thorough"
    assert runs["perov_5"]["sampler_preset"] == "fast"
    carbon, perov = runs["carbon_24"]["sampler"], runs["perov_5"]["sampler"]
    assert (carbon["n_step_each"], carbon["step_lr"], carbon["scheme"]) == (20, 1e-4, "langevin")
    assert (perov["n_step_each"], perov["step_lr"], perov["scheme"]) == (4, 4e-4, "pc")
    assert carbon["num_levels"] == perov["num_levels"] == 2


# ---------------------------------------------------------------------------- CHGNet relaxation
def _relaxed_rows(table):
    """Rows where a relaxation ran (a value or an error), by the per-sample columns."""
    return [i for i in range(len(table))
            if not (np.isnan(table["relaxed_energy_per_atom_eV"][i])
                    and table["relax_error"].isna()[i])]


@pytest.mark.slow
def test_generation_relaxes_the_first_valid_samples(tiny, test_set, tmp_path, monkeypatch):
    pytest.importorskip("chgnet", reason="CHGNet not installed (pip install 'cdvae-core[relax]')")
    import pandas as pd

    model, path = tiny
    nacl, srtio3 = rocksalt_nacl(), cubic_srtio3(3.95)
    nacl.perturb(0.1, seed=0)
    srtio3.perturb(0.05, seed=1)
    samples = [None, nacl, srtio3, rocksalt_nacl()]  # a failed decode first
    monkeypatch.setattr(tasks, "generate", lambda *args, **kwargs: list(samples))
    summary = tasks.run_generation(model, test_set, tmp_path / "gen", num_samples=4,
                                   sampler=LangevinConfig(n_step_each=1), n_diversity=4,
                                   checkpoint=path, progress=False, relax=2, relax_steps=100)
    table = pd.read_csv(tmp_path / "gen" / "per_sample.csv")
    assert set(tasks.RELAX_COLUMNS) <= set(table.columns)
    valid = list(np.flatnonzero(table["valid"].to_numpy()))
    assert valid[:2] == [1, 2]  # the decode that failed is not valid, the crystals are
    assert _relaxed_rows(table) == [1, 2]
    for i in (1, 2):
        assert table["relax_converged"][i] in (True, False)
        assert table["relaxed_energy_per_atom_eV"][i] <= (
            table["relax_initial_energy_per_atom_eV"][i] + 1e-6)
        assert table["relax_rms_displacement_A"][i] >= 0
        assert math.isfinite(table["relax_volume_change"][i])
    for i in (0, 3):  # not relaxed: empty cells
        assert table[list(tasks.RELAX_COLUMNS)].iloc[i].isna().all()
    saved = json.loads((tmp_path / "gen" / "summary.json").read_text())
    rel = saved["relaxation"]
    assert rel == json.loads(json.dumps(summary["relaxation"]))
    assert rel["requested"] == 2 and rel["relaxed"] + rel["failed"] == 2
    assert 0.0 <= rel["fraction_barely_moving"] <= 1.0
    assert rel["mean_energy_per_atom_eV"] == pytest.approx(
        table["relaxed_energy_per_atom_eV"][[1, 2]].mean(), rel=1e-6)
    settings = json.loads((tmp_path / "gen" / "settings.json").read_text())
    assert settings["relaxation"]["structures"] == 2 and settings["relaxation"]["steps"] == 100


@pytest.mark.slow
def test_generation_with_relaxation_on_a_tiny_model(tiny, test_set, tmp_path):
    pytest.importorskip("chgnet", reason="CHGNet not installed (pip install 'cdvae-core[relax]')")
    import pandas as pd

    model, path = tiny
    summary = tasks.run_generation(model, test_set, tmp_path / "gen", num_samples=3,
                                   sampler=LangevinConfig(n_step_each=1), seed=3, n_diversity=3,
                                   checkpoint=path, progress=False, relax=1, relax_steps=5)
    table = pd.read_csv(tmp_path / "gen" / "per_sample.csv")
    assert set(tasks.RELAX_COLUMNS) <= set(table.columns)
    n_valid = int(table["valid"].sum())
    assert _relaxed_rows(table) == list(np.flatnonzero(table["valid"].to_numpy()))[:1]
    assert table["relax_steps"].dropna().le(5).all()
    rel = json.loads((tmp_path / "gen" / "summary.json").read_text())["relaxation"]
    assert rel["requested"] == 1 and rel["relaxed"] + rel["failed"] == min(1, n_valid)
    assert summary["relaxation"]["max_steps"] == 5


def test_generation_without_chgnet_fails_before_sampling(tiny, test_set, tmp_path, monkeypatch,
                                                          no_chgnet):
    from cdvae_core.relax import RelaxationUnavailable

    model, path = tiny
    earlier = tmp_path / "gen" / "summary.json"
    earlier.parent.mkdir()
    earlier.write_text('{"earlier": true}\n')

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled although the relaxation cannot run")

    monkeypatch.setattr(tasks, "generate", no_sampling)
    with pytest.raises(RelaxationUnavailable, match="pip install"):
        tasks.run_generation(model, test_set, tmp_path / "gen", num_samples=2, checkpoint=path,
                             progress=False, relax=1)
    assert earlier.read_text() == '{"earlier": true}\n'
    with pytest.raises(ValueError):
        tasks.run_generation(model, test_set, tmp_path / "gen", num_samples=2, relax=-1)


def test_cli_relax_without_chgnet_stops_before_anything_runs(tiny, tmp_path, monkeypatch, capsys,
                                                              no_chgnet):
    import cdvae_core.model.checkpoint as checkpoint

    _, path = tiny

    def no_loading(*args, **kwargs):
        raise AssertionError("loaded the model although the relaxation cannot run")

    monkeypatch.setattr(checkpoint, "load_model", no_loading)
    common = ["evaluate", str(path), "--data-dir", str(tmp_path), "--out-dir",
              str(tmp_path / "eval")]
    assert main([*common, "--tasks", "reconstruction", "generation", "--relax", "5"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "pip install" in err and "chgnet" in err.lower()
    assert main([*common, "--tasks", "reconstruction", "--relax", "5"]) == 2
    assert "generation task" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


def test_cli_documents_relax(capsys):
    from cdvae_core.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["evaluate", "m.pt", "--data-dir", "d", "--out-dir", "o"])
    assert args.relax == 0  # off by default
    args = parser.parse_args(["evaluate", "m.pt", "--data-dir", "d", "--out-dir", "o",
                              "--relax", "50", "--relax-steps", "100", "--relax-fmax", "0.05"])
    assert (args.relax, args.relax_steps, args.relax_fmax) == (50, 100, 0.05)
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "--relax N" in capsys.readouterr().out


def test_rescore_scores_the_saved_structures_again_and_keeps_the_run(test_set, tmp_path):
    import pandas as pd

    run = tmp_path / "gen"
    run.mkdir()
    # the "generated" samples are the reference crystals themselves, plus one failed decode
    tasks.write_structures(test_set.structures() + [None], run)
    (run / "settings.json").write_text(json.dumps(
        {"task": "generation", "seed": 0, "num_samples": 6}))
    (run / "summary.json").write_text(json.dumps(
        {"num_samples": 6, "decode_seconds": 12.5, "total_seconds": 20.0, "cov_precision": 0.1,
         "relaxation": {"n_relaxed": 1}}))
    pd.DataFrame({"sample": range(6), "relax_converged": [True] + [None] * 5}).to_csv(
        run / "per_sample.csv", index=False)
    summary = tasks.rescore_generation(run, test_set, n_diversity=4, progress=False)
    # every saved sample is a reference crystal, so covered under both definitions; the failed
    # decode stays failed and counts against COV-P
    assert summary["n_failed_decodes"] == 1
    assert summary["cov_precision"] == pytest.approx(5 / 6)
    assert summary["cov_precision_separate_minima"] == pytest.approx(5 / 6)
    assert summary["cov_recall"] == summary["cov_recall_separate_minima"] == 1.0
    # the run's own figures stay; the rescoring is recorded
    assert summary["decode_seconds"] == 12.5 and summary["relaxation"] == {"n_relaxed": 1}
    assert "torch" in summary["rescored"]["versions"]
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["cov_precision"] == pytest.approx(5 / 6)
    table = pd.read_csv(run / "per_sample.csv")
    assert len(table) == 6 and bool(table["relax_converged"].iloc[0])
    assert table["covered"].tolist() == [True] * 5 + [False]


def test_property_only_rescoring_gives_what_a_whole_rescoring_gives(test_set, tmp_path):
    # two instruments (volume per atom, density); scoring the property alone with the second
    # on a run the first scored gives the figures a whole rescoring with the second gives
    import numpy as np
    import pandas as pd

    def by_volume(structures):
        return np.array([s.volume / len(s) for s in structures])

    def by_density(structures):
        return np.array([float(s.density) for s in structures])

    runs = {}
    for name in ("whole", "property"):
        run = runs[name] = tmp_path / name
        run.mkdir()
        tasks.write_structures(test_set.structures() + test_set.structures()[:3] + [None], run)
        (run / "settings.json").write_text(json.dumps(
            {"task": "generation", "seed": 0, "num_samples": 9}))
        (run / "summary.json").write_text(json.dumps({"num_samples": 9}))
        pd.DataFrame({"sample": range(9)}).to_csv(run / "per_sample.csv", index=False)
        tasks.rescore_generation(run, test_set, by_volume, n_diversity=4, progress=False,
                                 instrument="volume")
    whole = tasks.rescore_generation(runs["whole"], test_set, by_density, n_diversity=4,
                                     progress=False, instrument="density")
    alone = tasks.rescore_generation_property(runs["property"], test_set, by_density,
                                              "density")
    keys = [k for k in whole if k.startswith("wdist_property")]
    assert len(keys) == 4 and all(alone[k] == pytest.approx(whole[k]) for k in keys)
    assert alone["property_instrument"] == "density"
    assert set(alone["by_instrument"]) == {"volume", "density"}
    assert alone["by_instrument"]["density"] == pytest.approx(whole["by_instrument"]["density"])
    assert alone["cov_precision"] == whole["cov_precision"]  # the rest is kept as it was
    a = pd.read_csv(runs["property"] / "per_sample.csv")["predicted_property"]
    b = pd.read_csv(runs["whole"] / "per_sample.csv")["predicted_property"]
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy())


def test_cli_rescore_refuses_a_run_that_is_not_a_generation(tmp_path, capsys):
    (tmp_path / "settings.json").write_text(json.dumps({"task": "reconstruction"}))
    assert main(["rescore", str(tmp_path), "--data-dir", str(tmp_path)]) == 2
    assert "not a generation or optimisation run" in capsys.readouterr().err


def test_cli_reconstruction_alone_needs_no_property_instrument(tiny, tmp_path, monkeypatch,
                                                                 capsys):
    """Reconstruction scores no property, so it runs with the paper's property models not
    fetched (an empty cache); generation still asks for them, naming the fetch command."""
    _, path = tiny
    monkeypatch.setenv("CDVAE_CACHE_DIR", str(tmp_path / "empty-cache"))
    data = tmp_path / "data" / "perov_5"
    data.mkdir(parents=True)
    pd.read_csv(data_file("perov_5", "test"), nrows=3).to_csv(data / "test.csv", index=False)
    common = ["evaluate", str(path), "--data-dir", str(tmp_path / "data"), "--compile", "off",
              "--steps-per-level", "1"]
    assert main([*common, "--out-dir", str(tmp_path / "rec"), "--tasks", "reconstruction"]) == 0
    summary = json.loads((tmp_path / "rec" / "reconstruction" / "summary.json").read_text())
    assert summary["num_structures"] == 3
    capsys.readouterr()
    assert main([*common, "--out-dir", str(tmp_path / "gen"), "--tasks", "generation",
                 "--num-samples", "2"]) == 2
    assert "fetch-property-models" in capsys.readouterr().err
    assert not (tmp_path / "gen" / "generation").exists()  # stopped before sampling
