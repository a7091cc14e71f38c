"""Data-layer speed: cold preprocessing (parse, Niggli, CrystalNN) per structure, cached load,
and the periodic radius graph for a batch of 256 Perov-5 crystals. Prints JSON and writes
benchmarks/results/data.json.

    python benchmarks/bench_data.py --data-dir ../shared/data [--rows 400] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.geometry import radius_graph_pbc
from cdvae_core.utils import available_workers, machine_record, write_json_result

REFERENCE = {"perov_5_s_per_structure_one_core": 0.054, "carbon_24_s_per_structure_one_core": 0.19}


def cold(path: Path, dataset: str, rows: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "val.csv"
        pd.read_csv(path, nrows=rows).to_csv(sub, index=False)
        t0 = time.perf_counter()
        ds = CrystalDataset.from_csv(sub, dataset, cache_dir=Path(tmp) / "cache",
                                     workers=workers, progress=False)
        return (time.perf_counter() - t0) / len(ds)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--rows", type=int, default=400)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default="benchmarks/results/data.json")
    args = p.parse_args()
    torch.set_num_threads(available_workers())
    data = Path(args.data_dir)
    res: dict = {"reference_implementation": REFERENCE}
    for ds in ("perov_5", "carbon_24"):
        path = data / ds / "val.csv"
        res[f"{ds}_cold_s_per_structure_one_core"] = cold(path, ds, args.rows, 1)
        res[f"{ds}_cold_s_per_structure_all_cores"] = cold(path, ds, args.rows,
                                                           available_workers())
    test = data / "perov_5" / "test.csv"
    with tempfile.TemporaryDirectory() as tmp:
        CrystalDataset.from_csv(test, "perov_5", cache_dir=tmp, progress=False)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ds = CrystalDataset.from_csv(test, "perov_5", cache_dir=tmp, progress=False)
            times.append(time.perf_counter() - t0)
        res["perov_5_test_cached_load_s"] = statistics.median(times)
        res["perov_5_test_structures"] = len(ds)
        b = ds.collate(range(256))
        lattice = b.lattice
        graph = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ei, _, _ = radius_graph_pbc(b.frac_coords, lattice, b.num_atoms, 7.0, 20)
            graph.append(time.perf_counter() - t0)
        res["radius_graph_256_perov_5_s"] = statistics.median(graph)
        res["radius_graph_256_perov_5_edges"] = int(ei.shape[1])
    res["rows_for_cold_timing"] = args.rows
    res["machine"] = machine_record(cores_for_workers=available_workers())
    res["note"] = "medians; cold timings on the first --rows rows of val.csv"
    write_json_result(args.out, res)


if __name__ == "__main__":
    main()
