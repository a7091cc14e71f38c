"""CIF / zip / extended XYZ / CSV / POSCAR input and output."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from cdvae_core.io import (
    atomic_write,
    load_named_structures,
    load_structures,
    structure_to_cif,
    structure_to_poscar,
    write_cif_zip,
    write_extxyz,
)

_CIF_HEADER = """data_test
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
"""


@pytest.fixture
def crystals(nacl, srtio3, diamond) -> list[Structure]:
    return [nacl, srtio3, diamond]


def _assert_same_crystals(read: list[Structure], written: list[Structure]) -> None:
    matcher = StructureMatcher(stol=0.01, ltol=0.001, angle_tol=0.1, primitive_cell=False)
    assert len(read) == len(written)
    for a, b in zip(read, written, strict=True):
        assert len(a) == len(b) and a.composition == b.composition
        assert matcher.fit(a, b)
        np.testing.assert_allclose(a.lattice.matrix, b.lattice.matrix, atol=1e-5)


def test_cif_zip_round_trip(tmp_path, crystals):
    path = write_cif_zip(crystals, tmp_path / "samples.zip", names=["nacl", "sto", "c"])
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["c.cif", "nacl.cif", "sto.cif"]
    named = dict(load_named_structures(path))
    _assert_same_crystals([named["nacl"], named["sto"], named["c"]], crystals)
    assert not list(tmp_path.glob(".*tmp"))


def test_extxyz_round_trip_with_info(tmp_path, crystals):
    info = [{"name": f"s{i}", "energy": float(i)} for i in range(3)]
    path = write_extxyz(crystals, tmp_path / "samples.extxyz", info=info)
    _assert_same_crystals(load_structures(path), crystals)
    assert [name for name, _ in load_named_structures(path)] == ["s0", "s1", "s2"]


def test_folder_of_cifs_and_single_cif(tmp_path, crystals):
    for i, crystal in enumerate(crystals):
        (tmp_path / f"{i:02d}.cif").write_text(structure_to_cif(crystal))
    _assert_same_crystals(load_structures(tmp_path), crystals)
    _assert_same_crystals(load_structures(tmp_path / "01.cif"), crystals[1:2])


def test_benchmark_style_csv(tmp_path, crystals):
    frame = pd.DataFrame(
        {"material_id": ["a", "b", "c"], "cif": [structure_to_cif(s) for s in crystals]}
    )
    frame.to_csv(tmp_path / "test.csv")
    named = load_named_structures(tmp_path / "test.csv")
    assert [name for name, _ in named] == ["a", "b", "c"]
    _assert_same_crystals([s for _, s in named], crystals)


def test_poscar_text(srtio3):
    text = structure_to_poscar(srtio3)
    assert Structure.from_str(text, fmt="poscar").composition == srtio3.composition


def test_malformed_cif_names_the_file(tmp_path):
    bad = tmp_path / "broken.cif"
    bad.write_text("this is not a CIF file\n")
    with pytest.raises(ValueError, match="broken.cif"):
        load_structures(bad)


def test_partial_occupancy_is_rejected(tmp_path):
    path = tmp_path / "disordered.cif"
    path.write_text(_CIF_HEADER + "  Na Na0 0 0 0 0.5\n  Cl Cl1 0.5 0.5 0.5 1\n")
    with pytest.raises(ValueError, match="disordered.cif.*(disordered|partially)"):
        load_structures(path)


def test_unknown_element_is_rejected(tmp_path):
    path = tmp_path / "alien.cif"
    path.write_text(_CIF_HEADER + "  Xq Xq0 0 0 0 1\n  Na Na1 0.5 0.5 0.5 1\n")
    with pytest.raises(ValueError, match="alien.cif.*unknown element 'Xq'"):
        load_structures(path)


def test_bad_member_of_a_zip_is_named(tmp_path, nacl):
    path = tmp_path / "mixed.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("good.cif", structure_to_cif(nacl))
        archive.writestr("bad.cif", "garbage")
    with pytest.raises(ValueError, match="mixed.zip:bad.cif"):
        load_structures(path)


def test_unsupported_inputs(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_structures(tmp_path / "missing.cif")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="unsupported format"):
        load_structures(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="no .cif files"):
        load_structures(tmp_path)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("new, half written")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_benchmark_results_name_the_machine_and_keep_the_old_file_on_failure(tmp_path, capsys):
    import json
    import platform

    from cdvae_core.utils import machine_record, write_json_result

    record = machine_record(note="quiet cores")
    # the guide asks every benchmark result to name its CPU and whether the cores were shared
    assert record["cpu"] and record["logical_cores"] >= 1 and record["note"] == "quiet cores"
    assert record["python"] == platform.python_version()
    assert record["load_average_1min"] is None or record["load_average_1min"] >= 0
    target = tmp_path / "result.json"
    write_json_result(target, {"seconds": 1.5, "machine": record}, show={"seconds": 1.5})
    assert json.loads(target.read_text())["machine"] == record
    assert json.loads(capsys.readouterr().out) == {"seconds": 1.5}
    with pytest.raises(TypeError):  # not JSON: the earlier result stays whole
        write_json_result(target, {"bad": object()}, show=None)
    assert json.loads(target.read_text())["seconds"] == 1.5
