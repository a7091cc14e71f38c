"""Model cards are written from what the model file and the evaluation runs record."""

from __future__ import annotations

import json

import torch

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.scaler import fit_scalers
from cdvae_core.experiments.model_card import write_model_card
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.checkpoint import save_model
from cdvae_core.model.config import ModelConfig

from conftest import cubic_srtio3, rocksalt_nacl

SMALL = {"hidden": 16, "num_layers": 1, "num_rbf": 8}


def _run(folder, task, summary, sampler):
    (folder / task).mkdir(parents=True)
    (folder / task / "summary.json").write_text(json.dumps(summary))
    (folder / task / "settings.json").write_text(json.dumps(
        {"sampler": sampler, "seed": 0, "checkpoint_sha256": "ab" * 32}))


def test_card_reports_wall_time_and_both_samplers_beside_the_paper(tmp_path):
    ds = CrystalDataset.from_structures([cubic_srtio3(), rocksalt_nacl()], "perov_5")
    torch.manual_seed(0)
    model = CDVAE(ModelConfig.for_dataset("perov_5", encoder=SMALL, decoder=SMALL, latent_dim=8,
                                          hidden_dim=16), fit_scalers(ds))
    save_model(model, tmp_path / "model.pt", {"description": "a split"},
               {"epochs_completed": 400, "best_epoch": 377, "wall_time_s": 7200.0,
                "wall_time_from_epoch": 361,
                "weight_averaging": {"ema_decay": 0.999, "from_epoch": 370}})
    default, paper = tmp_path / "eval", tmp_path / "eval_paper"
    _run(default, "reconstruction", {"match_rate": 0.7, "rmse": 0.05, "num_structures": 3785},
         {"n_step_each": 5})
    _run(default, "generation", {"cov_precision": 0.9, "cov_recall": 0.95,
                                 "cov_precision_separate_minima": 0.97, "num_samples": 10000},
         {"n_step_each": 5})
    _run(paper, "generation", {"cov_precision": 0.93, "cov_recall": 0.6, "num_samples": 1000},
         {"n_step_each": 100})
    card = write_model_card(tmp_path, default, notes="Short of the paper.",
                            extra_evals={"paper sampler": paper}).read_text()
    assert "2.00 h (7200 s), counted from epoch 361 on" in card
    assert "moving average of the weights, decay 0.999 per step, kept from epoch 370 on" in card
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[3:-1]]
            for line in card.splitlines() if line.startswith("| ")}
    header = rows.pop("metric")
    assert header == ["ours", "paper sampler", "paper"]
    strict, published = ("COV-P (%), one reference within both cutoffs",
                         "COV-P (%), minima apart (as published)")
    assert float(rows[strict][0]) == 90 and float(rows[strict][1]) == 93
    # the paper's Perov-5 number stands beside the definition its code computed, not the other
    assert rows[strict][2] == "-" and float(rows[published][2]) == 98.46
    assert float(rows[published][0]) == 97 and rows[published][1] == "-"
    assert float(rows["Match rate (%)"][0]) == 70 and rows["Match rate (%)"][1] == "-"
    # the first table's row order is kept: reconstruction before generation
    names = list(rows)
    assert names.index("Match rate (%)") < names.index(strict)
    assert "paper sampler: generation: 1000 materials" in card
    assert "Short of the paper." in card


def test_card_says_when_the_predictor_trained_on_another_split(tmp_path):
    from cdvae_core.predictor.gnn import PredictorConfig, PropertyPredictor, save_predictor

    ds = CrystalDataset.from_structures([cubic_srtio3(), rocksalt_nacl()], "perov_5")
    model = CDVAE(ModelConfig.for_dataset("perov_5", encoder=SMALL, decoder=SMALL, latent_dim=8,
                                          hidden_dim=16), fit_scalers(ds))
    save_model(model, tmp_path / "model.pt", {"description": "upstream train/val"}, {})
    predictor = PropertyPredictor(PredictorConfig(hidden=16, num_layers=1))
    for split, said in (({"description": "upstream train/val"}, "trained on the same training "
                         "split"),
                        ({"description": "val.csv minus a hold-out"}, "trained on another split "
                         "than this model (val.csv minus a hold-out; this model: upstream "
                         "train/val)")):
        save_predictor(predictor, tmp_path / "predictor.pt",
                       {"split_policy": split, "val_mae": 0.1, "test_mae": 0.1})
        card = write_model_card(tmp_path, predictor=tmp_path / "predictor.pt").read_text()
        assert said in card
