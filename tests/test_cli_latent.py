"""`medlord train` / `medlord sample` for the latent systems (MedLoRD, Med-LSDM) at smoke size: run directory, refusal, resume, samples."""
import json
from pathlib import Path
import numpy as np
import pytest
import yaml
from medlord_nb.cli import main
from cli_helpers import as_params, call, one_line_error

LATENT = {"train_samples": "[lung1]", "vqgan_channels": "[8,16]", "latent_channels": "4", "num_embeddings": "64",
          "vqgan_patch_size": "[16,16,16]", "vqgan_steps": "2", "adv_warmup_steps": "1", "channels": "[8,16]",
          "attention_levels": "[false,true]", "num_head_channels": "8", "norm_num_groups": "4", "steps": "2",
          "num_inference_steps": "2", "device": "cpu", "image_downsample": "[4,4,2]", "warmup_steps": "1"}
SYSTEMS = {"medlord": {"base_steps": "2"}, "med_lsdm": {"crop_size": "[24,24,8]", "spade_decoder": "true"}}   # Med-LSDM: SPADE decoder

def params(system, **over):
    return as_params({**LATENT, **SYSTEMS[system]}, **over)

@pytest.fixture(scope="module")
def case(tmp_path_factory):
    "A 64x64x32 lung1 mask crop and its CT (big enough for the tiny U-Net's deepest level)."
    d = tmp_path_factory.mktemp("latent")
    from medlord_nb.data import load_sample, save_volume
    s = load_sample("lung1")
    sl = (slice(60, 124), slice(40, 104), slice(10, 42))
    save_volume(d/"case1.nii.gz", s.labels[sl], s.affine, dtype=np.uint8)
    save_volume(d/"case1_ct.nii.gz", s.image[sl], s.affine)
    return d

@pytest.mark.parametrize("system", ["medlord", "med_lsdm"])
def test_latent_train_resume_sample(system, case, capsys):
    runs = case/"runs"
    rc, out, err = call(capsys, "train", "--pipeline", system, "--root", runs, "--name", system, "--quiet", *params(system))
    assert rc == 0, err
    r = runs/system
    assert sorted(p.name for p in r.iterdir()) == ["checkpoints", "config.yaml", "latents", "loss.png", "metrics.json", "params.yaml", "stages.json"]
    stages = ["ldm", "vqgan"] + (["ldm_base"] if system == "medlord" else [])
    assert sorted(p.name for p in (r/"checkpoints").iterdir()) == sorted(stages)
    for s in stages: assert (r/"checkpoints"/s/"last.pt").stat().st_size > 0, s
    assert (r/"latents"/"manifest.json").is_file() and (r/"loss.png").read_bytes()[:4] == b"\x89PNG"
    m = json.loads((r/"metrics.json").read_text(encoding="utf-8"))["train"]
    assert m["pipeline"] == system and m["steps"] == 2 and m["checkpoint"] == "checkpoints/ldm/last.pt" and m["stages"]["vqgan"]["steps"] == 2
    assert yaml.safe_load((r/"params.yaml").read_text(encoding="utf-8"))["pipeline"] == system
    rec = json.loads((r/"checkpoints"/"ldm"/"latent_scale.json").read_text(encoding="utf-8"))   # the scale the denoiser trained with
    assert rec["scale_factor"] == m["stages"]["scale_factor"] and rec["volumes"] == ["lung1"]
    assert not list(r.rglob("*.tmp"))

    rc, _, err = call(capsys, "train", "--pipeline", system, "--root", runs, "--name", system, "--quiet", *params(system))
    one_line_error(rc, err, "train"); assert "--resume" in err and "--force" in err
    rc, _, err = call(capsys, "train", "--pipeline", system, "--root", runs, "--name", system, "--resume", "--param", "vqgan_steps=5")
    one_line_error(rc, err, "train"); assert "cannot change vqgan_steps" in err
    vq_before = (r/"checkpoints"/"vqgan"/"last.pt").read_bytes()
    rc, _, err = call(capsys, "train", "--pipeline", system, "--root", runs, "--name", system, "--resume", "--quiet", "--param", "steps=3")
    assert rc == 0, err
    m = json.loads((r/"metrics.json").read_text(encoding="utf-8"))["train"]
    assert m["steps"] == 3 and m["resumed"] and m["stages"]["vqgan"]["steps"] == 2        # finished stages skipped, the last one extended
    import torch
    a = torch.load(r/"checkpoints"/"vqgan"/"last.pt", weights_only=False)["model"]
    from io import BytesIO
    b = torch.load(BytesIO(vq_before), weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(".gamma." in k for k in a) == (system == "med_lsdm")                # the SPADE decoder was built, trained and kept

    out = case/f"samples_{system}"
    rc, o, err = call(capsys, "sample", r, case/"case1.nii.gz", "--image", case/"case1_ct.nii.gz", "--n", "2", "--out", out, "--quiet")
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["case1_000.nii.gz", "case1_001.nii.gz", "samples.json"]
    import nibabel as nib
    ref = nib.load(case/"case1.nii.gz")
    for f in ("case1_000.nii.gz", "case1_001.nii.gz"):
        x = nib.load(out/f)
        assert x.shape == (64, 64, 32) and np.isfinite(x.get_fdata()).all()
        np.testing.assert_allclose(x.affine, ref.affine, atol=1e-5)
    j = json.loads((out/"samples.json").read_text(encoding="utf-8"))
    assert [e["seed"] for e in j["samples"]] == [0, 1] and j["checkpoint"].endswith("checkpoints/ldm/last.pt")
    rc, _, err = call(capsys, "sample", r, case/"case1.nii.gz", "--out", out)
    one_line_error(rc, err, "sample"); assert "pass --force" in err

def test_latent_refusals(case, tmp_path, capsys, monkeypatch):
    rc, _, err = call(capsys, "sample", tmp_path, case/"case1.nii.gz")
    one_line_error(rc, err, "sample"); assert "not a trained run" in err
    (tmp_path/"config.yaml").write_text("steps: 2\n"); (tmp_path/"params.yaml").write_text("pipeline: medlord\n")
    rc, _, err = call(capsys, "sample", tmp_path, case/"case1.nii.gz")
    one_line_error(rc, err, "sample"); assert "checkpoints/ldm/last.pt missing" in err
    monkeypatch.setenv("WORLD_SIZE", "2"); monkeypatch.setenv("RANK", "0")
    rc, _, err = call(capsys, "train", "--pipeline", "medlord", "--root", tmp_path/"runs", *params("medlord"))
    one_line_error(rc, err, "train"); assert "must split evenly over 2 processes" in err and not (tmp_path/"runs").exists()
