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
DEMO_SMOKE = {"train_steps": 3, "sampler_steps": 2, "pretrained_steps": 2, "device": "cpu"}

@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    "`medlord demo` at smoke size, through the CLI (which runs the demo notebook with papermill, as `make demo` does)."
    from medlord_nb.cli import main
    root = tmp_path_factory.mktemp("runs")
    assert main(["demo", "--out", str(root/"demo"), *[a for k, v in DEMO_SMOKE.items() for a in ("--param", f"{k}={v}")]]) == 0
    return root/"demo"

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
    assert "by construction" in a["protocol_details"]["real_reference"]   # lung1's lung label is HU-derived
    # the checks that can fail are recorded on every run; a 3-step smoke run does not assert them
    assert set(m["adherence_checks"]) == {"lung_mean_hu", "lung_dice_threshold", "nodule_contrast_hu"}
    assert m["adherence_checks_asserted"] is False
    c = m["adherence_checks"]["lung_dice_threshold"]
    assert c["value"] == a["sample"]["lung_dice_threshold"] and c["threshold"] == 0.8 and c["op"] == ">"

def test_demo_samples_the_pretrained_model(demo_run):
    "The demo's last lesson: the zoo's patch DDPM on the held-out lung2's mask, measured against the real lung2."
    import nibabel as nib
    from medlord_nb.data import load_sample
    m = load_json(demo_run/"metrics.json")["pretrained"]
    assert m["model"] == "patch_lung" and m["held_out"] == "lung2" and m["sampler_steps"] == 2
    assert set(m["texture_ratio"]) == {"lung", "soft tissue"} and all(v > 0 for v in m["texture_ratio"].values())
    assert 0 <= m["segmenter_lung_dice"] <= 1
    v, src = nib.load(demo_run/"pretrained_sample.nii.gz"), load_sample("lung2")
    assert v.shape == src.shape and np.allclose(v.affine, src.affine, atol=1e-5)
    assert (demo_run/"pretrained_montage_lung.png").exists() and (demo_run/"pretrained_montage_soft-tissue.png").exists()

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

def test_demo_run_is_a_trained_run(demo_run, tmp_path, capsys):
    "Issue 12: after `make demo`, `medlord sample runs/demo MASK` and `medlord report runs/demo` treat it like any trained run."
    import nibabel as nib
    from medlord_nb.cli import main
    from medlord_nb.data import load_sample
    s = load_sample("lung1")
    aff = s.affine.copy()
    nib.save(nib.Nifti1Image(np.asarray(s.labels)[40:88, 40:88, 16:32].astype(np.uint8), aff), str(tmp_path/"mask.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(s.image)[40:88, 40:88, 16:32].astype(np.int16), aff), str(tmp_path/"ct.nii.gz"))   # the body from HU
    assert main(["sample", str(demo_run), str(tmp_path/"mask.nii.gz"), "--image", str(tmp_path/"ct.nii.gz"), "--out", str(tmp_path/"gen"), "--param", "num_inference_steps=1",
                 "--param", "device=cpu", "--quiet"]) == 0
    out = sorted((tmp_path/"gen").glob("*.nii.gz"))
    assert len(out) == 1 and nib.load(out[0]).shape == (48, 48, 16) and np.allclose(nib.load(out[0]).affine, aff)
    assert main(["report", str(demo_run), "--out", str(tmp_path/"report.md")]) == 0
    assert "lung" in (tmp_path/"report.md").read_text(encoding="utf-8")

def test_run_dir_never_overwritten(demo_run, capsys):
    with pytest.raises(FileExistsError, match="already exists"):
        run_experiment(ROOT/"nbs/experiments/demo.ipynb", name=demo_run.name, root=demo_run.parent, progress=False)
    from medlord_nb.cli import main
    before = (demo_run/"metrics.json").read_bytes()
    capsys.readouterr()
    assert main(["demo", "--out", str(demo_run)]) == 2                  # the CLI refuses too, in one line, without --force
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already exists" in err and "--force" in err, err
    assert (demo_run/"metrics.json").read_bytes() == before

def test_misspelled_parameter_is_rejected(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="did you mean 'n_patches'"):
        run_experiment(ROOT/"nbs/experiments/demo.ipynb", name="bad", root=tmp_path, params={"n_patch": 2}, progress=False)
    assert (tmp_path/"bad"/"demo.failed.ipynb").exists()

def test_patch_ddpm_lung_with_config_overrides(tmp_path):
    cfg = tmp_path/"smoke.yaml"
    cfg.write_text("steps: 3\nnum_inference_steps: 2\nsampler: dpmpp_2m\ndevice: cpu\nwindow: [64, 64, 32]\n", encoding="utf-8")
    from medlord_nb.cli import main                     # `medlord run`, as the README documents it
    assert main(["run", "patch_ddpm_lung", "--config", str(cfg), "--name", "lung", "--root", str(tmp_path), "--param", "seed=1"]) == 0
    run = tmp_path/"lung"
    m = load_json(run/"metrics.json")
    assert m["experiment"] == "patch_ddpm_lung" and m["train_steps"] == 3
    assert m["mask_adherence"]["protocol"] == "mask-adherence-hu-v1"
    p = m["paper_metrics"]                              # `medlord evaluate`'s defaults on two samples
    assert p["n_samples"] == 2 and p["fid_tiles"] > 0 and 0 < p["diversity_msssim"] <= 1 and p["relative_volume_segmented_sample"]["lung"] >= 0
    ref = load_json(run/"evaluation.json")["mask_adherence"]["reference"]["lung"]    # 3 steps make no lung; the real scan segments as its mask
    assert 0.8 < ref["relative_volume_pooled"] < 1.2 and "lung" in p["hu_wasserstein"]
    c = (run/"config.yaml").read_text(encoding="utf-8")
    assert "sampler: dpmpp_2m" in c and "seed: 1" in c and "- 64" in c
    for f in ("sample.nii.gz", "montage.png", "loss.png", "patch_ddpm_lung.ipynb"): assert (run/f).exists(), f

def test_patch_ddpm_lung_rejects_bad_config(tmp_path):
    cfg = tmp_path/"bad.yaml"; cfg.write_text("stpes: 3\n", encoding="utf-8")
    with pytest.raises(pm.PapermillExecutionError, match="did you mean 'steps'"):
        run_experiment("patch_ddpm_lung", name="bad", root=tmp_path, config=cfg, progress=False)

def test_full_config_is_valid():
    "What the comments of configs/patch_ddpm_lung.yaml promise."
    from medlord_nb.patch_ddpm import PatchDDPMConfig
    from medlord_nb.data import load_sample
    c = PatchDDPMConfig.from_yaml(ROOT/"configs/patch_ddpm_lung.yaml")
    assert c.steps >= 10000 and c.window is None and c.num_train_timesteps == 1000
    assert set(c.train_samples) == {"lung1", "lung2", "cta"}           # every embedded real scan (issue 3)
    assert c.patch_size[:2] == (64, 64) and c.patch_size[2] == 32      # 64 in-plane; 32 along z (see the comment)
    for name in c.train_samples:
        v = load_sample(name)
        assert all(p <= n for p, n in zip(c.patch_size, v.image.shape)), (name, c.patch_size, v.image.shape)  # fits every volume
        if v.spacing[2] >= 5: assert c.patch_size[2] * v.spacing[2] >= 150, (name, v.spacing)   # >= 150 mm along z on 5 mm scans
    assert load_sample("lung1").image.shape[2] < 64                    # why not 64^3: lung1 has 48 slices

README_DEMO = ROOT/"nbs/images/demo_metrics.json"

def test_demo_metrics_on_record_follow_the_mask():
    "The metrics the README quotes come from a default-length demo run whose sample passes the checks that can fail."
    m = load_json(README_DEMO)
    assert m["train_steps"] >= 200 and m["adherence_checks_asserted"] is True
    assert all(c["passed"] for c in m["adherence_checks"].values()), m["adherence_checks"]
    s = m["mask_adherence"]["sample"]
    assert s["label_hu"]["lung"]["mean"] < -600 and s["lung_dice_threshold"] > 0.8 and s["nodule_contrast_hu"] > 200

def _readme_demo_section():
    text = (ROOT/"README.md").read_text(encoding="utf-8")
    return text.split("### What the demo measured", 1)[1].split("\n### ", 1)[0]

def test_readme_quotes_the_recorded_demo():
    "Every number in the README's demo table and timing line is the recorded run's, rounded as printed."
    import re
    m, sec = load_json(README_DEMO), _readme_demo_section()
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:4]] for r in sec.splitlines() if r.startswith("| ") and "---" not in r}
    a = m["mask_adherence"]
    def hu(side, label): return a[side]["label_hu"][label]["mean"]
    want = {"Dice(threshold lung, lung mask)": [f"{a[k]['lung_dice_threshold']:.3f}" for k in ("real", "sample")],
            "nodule contrast (HU)": [f"{a[k]['nodule_contrast_hu']:.0f}" for k in ("real", "sample")],
            "mean HU: lung / vessels / nodule": [" / ".join(f"{hu(k, l):.0f}" for l in ("lung", "vessels", "nodule")) for k in ("real", "sample")],
            "mean HU: body / outside the body": [" / ".join(f"{hu(k, l):.0f}" for l in ("body (derived)", "outside body")) for k in ("real", "sample")]}
    for k, v in want.items(): assert rows.get(k) == v, (k, rows.get(k), v)
    mins, secs = divmod(round(m["notebook_seconds"]), 60)
    assert f"in {mins} min {secs} s on a" in sec, (mins, secs)
    assert f"sampling the whole volume: {m['sample_seconds']:.0f} s" in sec, m["sample_seconds"]
    assert f"{m['train_steps']} training steps" in sec and "x".join(map(str, m["shape"])) in sec

def test_cli_help():
    exe = Path(sys.executable).parent/"medlord"          # the installed console script
    out = subprocess.run([str(exe), "--help"], capture_output=True, encoding="utf-8", errors="replace", check=True).stdout
    for c in ("demo", "run", "samples"): assert c in out, out
