"""Experiment notebooks run under papermill at smoke size and write their metrics; the runner and the
notebooks refuse misspelled parameters and never overwrite a run."""
import subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import papermill as pm
from medlord_nb.runner import run_experiment
from medlord_nb.core import load_json

ROOT = Path(__file__).resolve().parents[1]
DEMO_SMOKE = {"train_steps": 3, "sampler_steps": 2, "device": "cpu"}

@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return run_experiment(ROOT/"nbs/experiments/demo.ipynb", name="demo", root=root, params=DEMO_SMOKE, progress=False)

def test_demo_metrics(demo_run):
    m = load_json(demo_run/"metrics.json")
    assert m["sample_name"] == "lung1" and m["protocol"].startswith("demo-v1")
    a = m["mask_adherence"]
    assert a["protocol"] == "mask-adherence-hu-v1" and a["protocol_details"]["n_samples"] == 1
    assert len(m["shape"]) == 3 and m["train_steps"] == 3
    assert m["label_mean_hu"]["lung"] < -600, m["label_mean_hu"]       # real lungs are dark
    assert m["label_mean_hu"]["nodule"] > -300, m["label_mean_hu"]     # the nodule is soft tissue
    assert m["hu_roundtrip_max_abs_error"] < 1e-2
    assert m["patch_label_hit_rate"] >= 0.25
    # the real scan passes its own adherence check: the metric measures what it claims
    assert a["real"]["lung_dice_threshold"] > 0.9, a["real"]
    assert a["real"]["nodule_contrast_hu"] > 300, a["real"]
    assert set(a["sample"]["label_hu"]) == {"outside body", "body (derived)", "lung", "vessels", "nodule"}
    assert 0 <= a["sample"]["lung_dice_threshold"] <= 1

def test_demo_outputs(demo_run):
    import nibabel as nib
    from medlord_nb.data import load_sample
    for f in ("montage.png", "real_montage.png", "patches.png", "loss.png", "params.yaml", "demo.ipynb",
              "sample.nii.gz", "checkpoints/last.pt"):
        assert (demo_run/f).exists(), f
    img, src = nib.load(demo_run/"sample.nii.gz"), load_sample("lung1")
    assert img.shape == src.image.shape
    np.testing.assert_allclose(img.affine, src.affine, atol=1e-4)    # overlays on the source scan
    x = np.asarray(img.dataobj)
    assert np.isfinite(x).all() and x.min() >= -1000 and x.max() <= 1000

def test_run_dir_never_overwritten(demo_run):
    with pytest.raises(FileExistsError, match="already exists"):
        run_experiment(ROOT/"nbs/experiments/demo.ipynb", name=demo_run.name, root=demo_run.parent, progress=False)

def test_misspelled_parameter_is_rejected(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="did you mean 'n_patches'"):
        run_experiment(ROOT/"nbs/experiments/demo.ipynb", name="bad", root=tmp_path, params={"n_patch": 2}, progress=False)
    assert (tmp_path/"bad"/"demo.failed.ipynb").exists()

def test_patch_ddpm_lung_with_config_overrides(tmp_path):
    cfg = tmp_path/"smoke.yaml"
    cfg.write_text("steps: 3\nnum_inference_steps: 2\nsampler: dpmpp_2m\ndevice: cpu\nwindow: [64, 64, 32]\n", encoding="utf-8")
    run = run_experiment("patch_ddpm_lung", name="lung", root=tmp_path, config=cfg, params={"seed": 1}, progress=False)
    m = load_json(run/"metrics.json")
    assert m["experiment"] == "patch_ddpm_lung" and m["train_steps"] == 3
    assert m["mask_adherence"]["protocol"] == "mask-adherence-hu-v1"
    c = (run/"config.yaml").read_text(encoding="utf-8")
    assert "sampler: dpmpp_2m" in c and "seed: 1" in c and "- 64" in c
    for f in ("sample.nii.gz", "montage.png", "loss.png", "patch_ddpm_lung.ipynb"): assert (run/f).exists(), f

def test_patch_ddpm_lung_rejects_bad_config(tmp_path):
    cfg = tmp_path/"bad.yaml"; cfg.write_text("stpes: 3\n", encoding="utf-8")
    with pytest.raises(pm.PapermillExecutionError, match="did you mean 'steps'"):
        run_experiment("patch_ddpm_lung", name="bad", root=tmp_path, config=cfg, progress=False)

def test_full_config_is_valid():
    from medlord_nb.patch_ddpm import PatchDDPMConfig
    c = PatchDDPMConfig.from_yaml(ROOT/"configs/patch_ddpm_lung.yaml")
    assert c.steps >= 10000 and min(c.patch_size) >= 32 and c.window is None

def test_cli_help():
    exe = Path(sys.executable).parent/"medlord"          # the installed console script
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for c in ("demo", "run", "samples"): assert c in out, out
