"""The utility study (System B) runs end to end at smoke size under papermill: four segmenter arms scored
on the same real test set, per-case Dice table (CSV + Markdown), delta plot, metrics.json; and
`report.make_report` renders the run."""
import csv, io, math
from pathlib import Path
import pytest
import papermill as pm
from medlord_nb.runner import run_experiment
from medlord_nb.core import load_json

ROOT = Path(__file__).resolve().parents[1]
ARMS = ["real", "synthetic", "real+synthetic", "real+targeted"]

@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return run_experiment("utility_study", name="utility", root=root, params={"device": "cpu"}, progress=False)

def _unit(x): return isinstance(x, float) and math.isfinite(x) and 0.0 <= x <= 1.0

def test_outputs(study_run):
    for f in ("metrics.json", "per_case_dice.csv", "per_case_dice.md", "dice_delta.png", "targeted_example.png",
              "config.yaml", "utility_study.ipynb"):
        assert (study_run/f).is_file(), f
    assert (study_run/"dice_delta.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

def test_metrics(study_run):
    m = load_json(study_run/"metrics.json")
    assert m["protocol"] == "utility-segmentation-v1" and m["experiment"] == "utility_study"
    for k in ("protocol_details", "n_per_arm", "mean_test_dice", "mean_test_dice_per_label", "per_case_delta", "per_case_dice",
              "test_cases", "worst_val_cases", "val_dice_real", "seconds"):
        assert k in m, k
    d = m["protocol_details"]
    assert "No significance claim" in d["caveats"] and d["test_scans"] == ["lung1"]
    assert d["nodule_shapes"]["dataset"].startswith(("LIDC-IDRI", "ellipsoid"))
    assert list(m["mean_test_dice"]) == ARMS and all(_unit(v) for v in m["mean_test_dice"].values()), m["mean_test_dice"]
    n = m["n_per_arm"]
    assert n["real"] == d["n_train_real"] > 0 and n["synthetic"] > 0
    assert n["real+synthetic"] == n["real"] + n["synthetic"] and n["real+targeted"] > n["real"]
    assert m["n_synthetic_per_arm"]["real"] == 0 and m["n_synthetic_per_arm"]["synthetic"] == n["synthetic"]
    # the same real test set for every arm: every test case scored by every arm, deltas to 'real' add up
    cases = m["test_cases"]
    assert len(cases) == d["n_test"] > 0 and all(c.startswith("lung1:") for c in cases)
    assert set(m["per_case_dice"]) == set(cases)
    for c in cases:
        row = m["per_case_dice"][c]
        assert list(row) == ARMS and all(_unit(v) for v in row.values()), (c, row)
    assert set(m["per_case_delta"]) == set(ARMS[1:])
    for a, dd in m["per_case_delta"].items():
        assert set(dd) == set(cases)
        for c, v in dd.items(): assert abs(v - (m["per_case_dice"][c][a] - m["per_case_dice"][c]["real"])) < 1e-9
    for a in ARMS: assert abs(m["mean_test_dice"][a] - sum(m["per_case_dice"][c][a] for c in cases) / len(cases)) < 1e-9
    assert 1 <= len(m["worst_val_cases"]) <= 2 and all(w in m["val_dice_real"] for w in m["worst_val_cases"])
    assert not set(m["worst_val_cases"]) & set(cases)                    # targets come from validation, never test
    assert not set(d["ddpm"]["trained_on"]) & set(cases)                  # the DDPM never saw a test image

def test_table_files(study_run):
    m = load_json(study_run/"metrics.json")
    rows = list(csv.DictReader(io.StringIO((study_run/"per_case_dice.csv").read_text(encoding="utf-8"))))
    assert [r["case"] for r in rows] == m["test_cases"]
    for r in rows:
        for a in ARMS: assert abs(float(r[a]) - m["per_case_dice"][r["case"]][a]) < 1e-4
    md = (study_run/"per_case_dice.md").read_text(encoding="utf-8")
    assert md.startswith("| case | nodule | real |") and "**mean**" in md and all(c in md for c in m["test_cases"])

def test_report_of_the_run(study_run, tmp_path):
    from medlord_nb.report import make_report
    md = make_report(study_run, out=tmp_path/"r.md").read_text(encoding="utf-8")
    assert "utility-segmentation-v1" in md and "## mean_test_dice" in md and "## per_case_dice" in md
    assert "dice_delta.png" in md and "real+targeted" in md
    html = make_report(study_run, format="html").read_text(encoding="utf-8")
    assert (study_run/"report.html").is_file() and html.count("data:image/png;base64,") == 2
    assert "<table>" in html and "No significance claim" in html

def test_misspelled_parameter_is_rejected(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="did you mean 'seg_steps'"):
        run_experiment("utility_study", name="bad", root=tmp_path, params={"seg_step": 3}, progress=False)

def test_gpu_config_is_valid():
    from medlord_nb.utility import UtilityStudyConfig
    c = UtilityStudyConfig.from_yaml(ROOT/"configs/utility_study.yaml")
    assert c.seg_steps >= 1000 and c.ddpm_steps >= 10000 and c.test_scans == ("lung1",)
    assert c.ddpm_config().labels == (1, 2, 3) and c.seg_config().patch_size == (96, 96, 8)
