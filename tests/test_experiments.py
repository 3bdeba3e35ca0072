"""Experiment notebooks run under papermill at smoke size (their default parameters) and write metrics."""
import json, subprocess, sys
from pathlib import Path
import pytest
from medlord_nb.runner import run_experiment
from medlord_nb.core import load_json

ROOT = Path(__file__).resolve().parents[1]

def test_demo_notebook(tmp_path):
    run = run_experiment(ROOT/"nbs/experiments/demo.ipynb", name="demo", root=tmp_path, progress=False)
    m = load_json(run/"metrics.json")
    assert m["sample"] == "lung1" and m["protocol"].startswith("demo-v1")
    assert m["shape"] == list(m["shape"]) and len(m["shape"]) == 3
    assert m["label_mean_hu"]["lung"] < -600, m["label_mean_hu"]       # real lungs are dark
    assert m["label_mean_hu"]["nodule"] > -300, m["label_mean_hu"]     # the nodule is soft tissue
    assert m["hu_roundtrip_max_abs_error"] < 1e-2
    assert m["patch_label_hit_rate"] >= 0.25
    for f in ("montage.png", "patches.png", "params.yaml", "demo.ipynb"):
        assert (run/f).exists(), f
    # the run directory is never silently overwritten
    with pytest.raises(FileExistsError, match="already exists"):
        run_experiment(ROOT/"nbs/experiments/demo.ipynb", name="demo", root=tmp_path, progress=False)

def test_misspelled_parameter_is_rejected(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match="did you mean 'n_patches'"):
        run_experiment(ROOT/"nbs/experiments/demo.ipynb", name="bad", root=tmp_path, params={"n_patch": 2}, progress=False)
    assert (tmp_path/"bad"/"demo.failed.ipynb").exists()

def test_cli_help():
    exe = Path(sys.executable).parent/"medlord"          # the installed console script
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for c in ("demo", "run", "samples"): assert c in out, out
