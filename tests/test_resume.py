"""`medlord run NAME --resume` (issue 16, item 5): the MedLoRD experiment at a tiny size is interrupted after its VQ-GAN and
latent stages (the later outputs deleted, as a crash would leave them), resumed, and the finished stage is not retrained:
its weights file is byte-identical and untouched, the later stages and the final outputs exist, stages.json is complete."""
import os
import pytest
from medlord_nb.cli import main
from medlord_nb.core import load_json, save_json, run_stages, file_sha256, STAGES_FILE
from medlord_nb.runner import run_experiment

TINY = {"device": "cpu", "train_samples": ["lung1"], "recon_sample": None, "image_downsample": [4, 4, 2],
        "vqgan_patch_size": [32, 32, 16], "vqgan_steps": 1, "adv_warmup_steps": 1, "base_steps": 1, "steps": 1, "warmup_steps": 1,
        "num_inference_steps": 2}

def _one_line(capsys, rc, *what):
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("medlord run: error:") and "\n" not in err and all(w in err for w in what), err

def test_medlord_resume_after_the_vqgan(tmp_path, capsys):
    root = tmp_path/"runs"
    run = run_experiment("medlord", name="r", root=root, params=TINY, progress=False)
    st = run_stages(run)
    assert st["complete"] and list(st["stages"]) == ["vqgan", "encode", "ldm_base", "ldm", "outputs"], st
    vq = run/"checkpoints"/"vqgan"/"last.pt"
    vq_sha, vq_mtime = file_sha256(vq), os.stat(vq).st_mtime_ns
    # interrupted after the latents: the diffusion stages and the outputs never happened
    for f in ("checkpoints/ldm_base/last.pt", "checkpoints/ldm/last.pt", "sample.nii.gz", "montage.png", "metrics.json", "medlord.ipynb"):
        (run/f).unlink()
    save_json({"stages": {k: st["stages"][k] for k in ("vqgan", "encode")}, "complete": False}, run/STAGES_FILE)

    _one_line(capsys, main(["run", "medlord", "--root", str(root), "--name", "r"]), "already exists", "--resume")   # never overwritten
    _one_line(capsys, main(["run", "medlord", "--root", str(root), "--name", "r", "--resume", "--force"]), "not both")
    _one_line(capsys, main(["run", "medlord", "--root", str(root), "--name", "nope", "--resume"]), "no such run to resume")
    _one_line(capsys, main(["run", "medlord", "--root", str(root), "--name", "r", "--resume", "--param", "lr=0.1"]),
              "cannot change lr", "start a new run")

    assert run_experiment("medlord", name="r", root=root, resume=True, progress=False) == run
    assert file_sha256(vq) == vq_sha and os.stat(vq).st_mtime_ns == vq_mtime          # loaded, not trained or rewritten
    for f in ("checkpoints/ldm/last.pt", "sample.nii.gz", "montage.png", "medlord.ipynb"): assert (run/f).is_file(), f
    m = load_json(run/"metrics.json")
    assert m["train_steps"] == {"vqgan": 1, "base": 1, "controlnet": 1}, m["train_steps"]
    st = run_stages(run)
    assert st["complete"] and st["stages"]["vqgan"]["steps"] == 1 and "outputs" in st["stages"]
    nb_mtime = os.stat(run/"medlord.ipynb").st_mtime_ns
    assert run_experiment("medlord", name="r", root=root, resume=True, progress=False) == run    # complete: nothing to do
    assert os.stat(run/"medlord.ipynb").st_mtime_ns == nb_mtime
