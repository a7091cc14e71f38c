"""Task runners write every promised artefact; the predictor and the CLI behave."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from cdvae_core import tasks
from cdvae_core.cli import main
from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.scaler import fit_scalers
from cdvae_core.io import load_structures
from cdvae_core.metrics.predictor import (
    PredictorConfig,
    PropertyPredictor,
    load_predictor,
    save_predictor,
    train_predictor,
)
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.config import ModelConfig
from cdvae_core.sampling import LangevinConfig
from cdvae_core.training.checkpoint import save_model
from cdvae_core.utils import CheckpointError

from conftest import cubic_srtio3, rocksalt_nacl

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
    from cdvae_core.sampling import generate

    a = generate(model, 3, LangevinConfig(n_step_each=1), seed=5, progress=False)
    b = generate(model, 3, LangevinConfig(n_step_each=1), seed=5, progress=False)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.frac_coords, y.frac_coords)


def test_optimization_run_and_success_rates(tiny, test_set, tmp_path):
    model, path = tiny
    predictor = PropertyPredictor(PredictorConfig(hidden=16, num_layers=1)).eval()
    res = tasks.run_optimization(model, test_set, tmp_path / "opt", predictor.predict,
                                 num_materials=3, steps=4, decode_every=2,
                                 sampler=LangevinConfig(n_step_each=1), checkpoint=path,
                                 progress=False)
    assert res["num_materials"] == 3
    assert set(res["success_rates"]) == {"SR5", "SR10", "SR15"}
    import pandas as pd

    table = pd.read_csv(tmp_path / "opt" / "per_sample.csv")
    assert set(table["best_step"]) <= {2, 4}


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
    assert main(["info", str(path)]) == 0
    assert "parameters" in capsys.readouterr().out
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    assert main(["info", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err
