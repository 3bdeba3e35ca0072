"""The utility study (System B's protocol, issue 15).

- On a PREPARED dataset through the CLI (`medlord run utility_study --param dataset=DIR`): the test makes the dataset
  with `prepare` from three real scans (the embedded CTs, one patient each), runs the study at smoke
  size with the shipped generators, and checks the record: the patient-level split (file and metrics), the per-group
  table with 95% intervals for every arm, the figure, per-case Dice that the table's numbers follow from, and that the
  targeted cases made by the patch DDPM carry their edited nodules (the nodule stands out of the lung by HU contrast).
- The statistics on constructed Dice tables: known deltas give known means and intervals, groups hold their cases.
The embedded default run is executed by tests/test_run_all.py (at smoke size there, see its SMOKE)."""
import csv, io, math, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import papermill as pm
from medlord_nb.core import load_json
from medlord_nb.runner import run_experiment
from medlord_nb.utility import (DiceTable, UtilityStudyConfig, bootstrap_ci, group_summary, split_patients, PatientSplit,
                                case_boxes, GROUPS, ARMS)

ROOT = Path(__file__).resolve().parents[1]
MEDLORD = Path(sys.executable).parent/"medlord"
# Smoke size: the real pipeline (whole-scan sampling with both shipped generators, 3 seeds, 3 groups), few steps
SMOKE = {"seg_steps": 12, "seg_channels": [4, 8, 16], "seg_patch_size": [64, 64, 48], "patch_steps": 2, "latent_steps": 2, "n_worst": 1, "targeted_per_case": 2,
         "n_boot": 500, "n_shapes": 2, "device": "cpu"}

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    "A prepared dataset of three patients (lung1, lung2, cta as NIfTI + masks) through `prepare`; the study draws the split."
    from medlord_nb.data import load_sample, save_volume
    from medlord_nb.datasets import prepare
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("ds")/"prepared"
    for name in ("lung1", "lung2", "cta"):
        v = load_sample(name)
        save_volume(src/f"{name}.nii.gz", v.image, v.affine); save_volume(src/f"{name}_mask.nii.gz", v.labels, v.affine, np.uint8)
    prepare(str(src), str(out), progress=False)
    return out

@pytest.fixture(scope="module")
def study_run(dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cmd = [str(MEDLORD), "run", "utility_study", "--root", str(root), "--name", "ds", "--param", f"dataset={dataset}",
           *[a for k, v in SMOKE.items() for a in ("--param", f"{k}={v}")]]
    r = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return root/"ds"

def test_outputs(study_run):
    for f in ("metrics.json", "per_case_dice.csv", "groups.md", "dice_groups.png", "targeted_example.png", "cases.png", "split.json",
              "config.yaml", "utility_study.ipynb"):
        assert (study_run/f).is_file(), f
    assert (study_run/"dice_groups.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

def test_split_is_by_patient(study_run, dataset):
    m, s = load_json(study_run/"metrics.json"), load_json(study_run/"split.json")
    assert m["split"]["patients"] == s["patients"]
    p = s["patients"]
    allp = p["train"] + p["val"] + p["test"]
    assert sorted(allp) == ["cta", "lung1", "lung2"] and all(len(p[k]) == 1 for k in ("train", "val", "test"))
    assert m["protocol_details"]["dataset"] == str(dataset)
    for part, cases in s["cases"].items():                              # every case of a set belongs to a patient of that set
        assert cases and all(c.split(":")[0] in p[part] for c in cases), (part, cases)

def test_groups_with_intervals(study_run):
    m = load_json(study_run/"metrics.json")
    assert m["protocol"] == "utility-segmentation-v2" and m["protocol_details"]["seeds"] == [0, 1, 2]
    assert list(m["groups"]) == list(GROUPS)
    worst, split = m["worst_val_cases"], m["split"]["cases"]
    assert len(worst) == 1 and worst[0] in split["val"]
    for g, arms in m["groups"].items():
        assert list(arms) == list(ARMS)
        cases = [c for c, r in m["per_case_dice"].items() if r["group"] == g]
        want = worst if g == "worst validation" else [c for c in split["val"] if c not in worst] if g == "other validation" else split["test"]
        assert sorted(cases) == sorted(want), g
        for a, r in arms.items():
            assert r["n_cases"] == len(cases) and 0 <= r["mean_dice"] <= 1
            assert abs(r["mean_dice"] - np.mean([m["per_case_dice"][c][a] for c in cases])) < 1e-9
            if a == "real": continue
            d = [m["per_case_delta"][a][c] for c in cases]
            assert abs(r["mean_delta"] - np.mean(d)) < 1e-9 and r["ci95"][0] <= r["mean_delta"] <= r["ci95"][1]
            assert min(d) - 1e-9 <= r["ci95"][0] and r["ci95"][1] <= max(d) + 1e-9 and r["seed_sd"] >= 0
    md = (study_run/"groups.md").read_text(encoding="utf-8")
    assert md.startswith("| group | arm | cases | mean Dice | delta vs real [95% CI] | seed sd |") and md.count("\n") == 2 + 12
    rows = list(csv.DictReader(io.StringIO((study_run/"per_case_dice.csv").read_text(encoding="utf-8"))))
    assert len(rows) == len(m["per_case_dice"]) * 4 * 3                    # every case x arm x seed
    assert "not that synthetic data helps" in m["protocol_details"]["caveats"]

def test_targeted_cases_carry_their_nodules(study_run):
    "Mask in, nodule out: each patch-DDPM targeted case's edited nodule stands out of the lung around it."
    m = load_json(study_run/"metrics.json")
    t = m["targeted"]
    assert [x["generator"] for x in t] == ["patch_lung", "medlord_small"] and all(x["nodule_voxels"] > 0 for x in t)
    for x in t:
        if x["generator"] == "patch_lung": assert x["nodule_contrast_hu"] is not None and x["nodule_contrast_hu"] >= 150, x
    assert m["n_per_arm"]["real+targeted"] == m["n_per_arm"]["real"] + 2
    assert m["n_synthetic_per_arm"]["synthetic"] == m["n_per_arm"]["synthetic"] > 0

# --- the statistics on constructed tables (no model involved)
def _table(deltas_by_group, seeds=(0, 1, 2)):
    rows = []
    for g, deltas in deltas_by_group.items():
        for i, d in enumerate(deltas):
            for s in seeds:
                w = 0.02 * (s - 1)                                          # a seed effect shared by both arms: it cancels in the paired delta
                rows += [{"case": f"{g}-{i}", "group": g, "patient": "p", "has_nodule": True, "arm": "real", "seed": s, "dice": 0.6 + w, "lung": 0.6 + w},
                         {"case": f"{g}-{i}", "group": g, "patient": "p", "has_nodule": True, "arm": "t", "seed": s, "dice": 0.6 + w + d, "lung": 0.6 + w + d}]
    return DiceTable(["real", "t"], list(seeds), ["lung"], rows)

def test_grouping_and_known_deltas():
    tab = _table({"worst validation": [0.2, 0.2], "other validation": [0.0, 0.0, 0.0], "test": [0.1, -0.1, 0.3, 0.1]})
    assert [g for g in tab.cases.values()] == ["worst validation"] * 2 + ["other validation"] * 3 + ["test"] * 4
    s = group_summary(tab, n_boot=3000)
    assert s["worst validation"]["t"]["mean_delta"] == pytest.approx(0.2) and s["worst validation"]["t"]["ci95"] == pytest.approx([0.2, 0.2])
    assert s["other validation"]["t"]["mean_delta"] == pytest.approx(0.0) and s["other validation"]["t"]["seed_sd"] == pytest.approx(0.0, abs=1e-12)
    assert s["test"]["t"]["mean_delta"] == pytest.approx(0.1) and s["test"]["t"]["n_cases"] == 4
    lo, hi = s["test"]["t"]["ci95"]
    assert -0.1 <= lo < 0.1 < hi <= 0.3
    assert s["test"]["real"]["mean_dice"] == pytest.approx(0.6)           # the seed effect averages out

def test_bootstrap_interval_matches_theory():
    "On many cases the percentile bootstrap of a mean agrees with mean +- 1.96 sd / sqrt(n); seeded, so it repeats exactly."
    v = np.random.default_rng(7).normal(0.02, 0.1, 500)
    m, lo, hi = bootstrap_ci(v, n_boot=4000, seed=3)
    half = 1.96 * v.std(ddof=1) / math.sqrt(v.size)
    assert m == pytest.approx(v.mean()) and lo == pytest.approx(m - half, abs=0.003) and hi == pytest.approx(m + half, abs=0.003)
    assert bootstrap_ci(v, n_boot=4000, seed=3) == (m, lo, hi)
    assert bootstrap_ci([0.4] * 6)[1:] == pytest.approx((0.4, 0.4)) and bootstrap_ci([]) is None

def test_patient_split_and_boxes():
    assert split_patients(list("abc"), test=["a"], val=["b"]) == PatientSplit(("c",), ("b",), ("a",))
    s = split_patients([f"p{i}" for i in range(10)], test_fraction=0.2, val_fraction=0.3, seed=1)
    assert (len(s.test), len(s.val), len(s.train)) == (2, 3, 5) and not set(s.test) & set(s.val)
    assert UtilityStudyConfig().patient_split(["lung1", "lung2", "cta"]) == PatientSplit(("lung1",), ("cta",), ("lung2",))
    with pytest.raises(ValueError, match="at least 3"): split_patients(["a", "b"])
    assert [b[0] for b in case_boxes((214, 191, 61), (128, 128, 48))][:2] == [(0, 0, 0), (0, 0, 13)]

def test_misspelled_parameter_is_rejected(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="did you mean 'seg_steps'"):
        run_experiment("utility_study", name="bad", root=tmp_path, params={"seg_step": 3}, progress=False)

def test_gpu_config_is_valid():
    c = UtilityStudyConfig.from_yaml(ROOT/"configs/utility_study.yaml")
    assert c.seg_steps >= 1000 and len(c.seeds) >= 5 and c.generators == ("patch_lung", "medlord_small")
    assert c.case_size == (192, 192, 64) and c.seg_config().patch_size == (96, 96, 32) and c.dataset is None

def test_report_of_the_run(study_run, tmp_path):
    from medlord_nb.report import make_report
    md = make_report(study_run, out=tmp_path/"r.md").read_text(encoding="utf-8")
    assert "utility-segmentation-v2" in md and "dice_groups.png" in md and "real+targeted" in md
