"""`medlord` subcommands at smoke size: help, dry runs, train into a run directory, refuse / force / resume, sample (sharded,
with a per-entry status in samples.json), plan, prepare, report."""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import yaml
from medlord_nb.cli import main, COMMANDS, error_line

ROOT = Path(__file__).resolve().parents[1]
from cli_helpers import TINY, params, call, one_line_error

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    "A 2-step tiny patch-DDPM run and a lung1 mask crop (with its CT) to sample from."
    d = tmp_path_factory.mktemp("cli")
    assert main(["train", "--root", str(d/"runs"), "--name", "t", "--quiet", *params()]) == 0
    from medlord_nb.data import load_sample, save_volume
    s = load_sample("lung1")
    sl = (slice(60, 92), slice(40, 72), slice(10, 26))
    save_volume(d/"case1.nii.gz", s.labels[sl], s.affine, dtype=np.uint8)
    save_volume(d/"case1_ct.nii.gz", s.image[sl], s.affine)
    return d

def test_help_lists_every_subcommand():
    r = subprocess.run([str(Path(sys.executable).parent/"medlord"), "--help"], capture_output=True, encoding="utf-8", errors="replace")
    if r.returncode != 0 or not r.stdout:            # console script not installed: same entry point through -m
        r = subprocess.run([sys.executable, "-m", "medlord_nb.cli", "--help"], capture_output=True, encoding="utf-8", errors="replace", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    for c in ("samples", "prepare", "plan", "train", "sample", "evaluate", "run", "demo"): assert c in r.stdout, c

@pytest.mark.parametrize("cmd", list(COMMANDS))
def test_subcommand_help_from_docments(cmd, capsys):
    rc = main([cmd, "--help"])
    out = capsys.readouterr().out
    assert rc == 0 and COMMANDS[cmd].__doc__.split()[0] in out
    if cmd not in ("samples", "pretrained"): assert "--dry_run" in out and "--debug" in out   # listings have nothing to dry-run

def test_python_dash_m_version():
    r = subprocess.run([sys.executable, "-m", "medlord_nb.cli", "--version"], capture_output=True, encoding="utf-8", errors="replace", cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("medlord-nb "), r

def test_train_dry_run_prints_resolved_config(tmp_path, capsys):
    cfg = tmp_path/"lung.yaml"; cfg.write_text("steps: 7\nlr: 0.0005\n")
    rc, out, err = call(capsys, "train", "--config", cfg, "--root", tmp_path/"runs", "--param", "batch_size=2", "--dry_run")
    assert rc == 0, err
    d = yaml.safe_load(out)
    assert d["run"] == str(tmp_path/"runs"/"lung") and d["config"]["steps"] == 7 and d["config"]["batch_size"] == 2
    assert d["config"]["patch_size"] == [32, 32, 16]          # defaults filled in: the *resolved* config
    assert not (tmp_path/"runs").exists()

def test_train_preset_dry_run(capsys):
    rc, out, _ = call(capsys, "train", "--config", "patch_ddpm_lung", "--dry_run")
    assert rc == 0 and yaml.safe_load(out)["config"]["channels"] == [32, 64, 128, 256]

def test_train_writes_run_dir(trained):
    r = trained/"runs"/"t"
    assert sorted(p.name for p in r.iterdir()) == ["checkpoints", "config.yaml", "loss.png", "metrics.json", "params.yaml"]
    assert (r/"checkpoints"/"last.pt").stat().st_size > 0 and (r/"loss.png").read_bytes()[:4] == b"\x89PNG"
    m = json.loads((r/"metrics.json").read_text(encoding="utf-8"))["train"]
    assert m["steps"] == 2 and m["processes"] == 1 and np.isfinite(m["final_loss"]) and len(m["loss_history"]) == 2
    assert yaml.safe_load((r/"params.yaml").read_text(encoding="utf-8"))["pipeline"] == "patch"
    c = yaml.safe_load((r/"config.yaml").read_text(encoding="utf-8"))
    assert c["channels"] == [8, 16] and c["steps"] == 2 and c["out_dir"] == str(r)
    assert not list(r.rglob("*.tmp"))

def test_refuse_force_resume(tmp_path, capsys):
    root = tmp_path/"runs"
    assert main(["train", "--root", str(root), "--name", "x", "--quiet", *params()]) == 0
    ck = root/"x"/"checkpoints"/"last.pt"; before = ck.read_bytes()
    rc, _, err = call(capsys, "train", "--root", root, "--name", "x", "--quiet", *params())
    one_line_error(rc, err, "train"); assert "--force" in err and "--resume" in err
    assert ck.read_bytes() == before                          # untouched
    rc, out, err = call(capsys, "train", "--root", root, "--name", "x", "--resume", "--quiet", "--param", "steps=3")
    assert rc == 0, err
    import torch
    assert torch.load(ck, weights_only=False)["step"] == 3
    m = json.loads((root/"x"/"metrics.json").read_text(encoding="utf-8"))["train"]
    assert m["steps"] == 3 and m["resumed"] is True and len(m["loss_history"]) == 3
    rc, out, err = call(capsys, "train", "--root", root, "--name", "x", "--force", "--quiet", *params(steps=1))
    assert rc == 0, err
    assert torch.load(ck, weights_only=False)["step"] == 1

def test_sample_writes_atomic_volumes_with_mask_affine(trained, capsys):
    import nibabel as nib
    out = trained/"s1"
    rc, o, err = call(capsys, "sample", trained/"runs"/"t", trained/"case1.nii.gz", "--image", trained/"case1_ct.nii.gz",
                      "--n", 2, "--seed", 5, "--out", out, "--quiet")
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["case1_000.nii.gz", "case1_001.nii.gz", "samples.json"]
    mask = nib.load(trained/"case1.nii.gz")
    a, b = (nib.load(out/f"case1_00{k}.nii.gz") for k in (0, 1))
    np.testing.assert_allclose(a.affine, mask.affine, atol=1e-6); assert a.shape == mask.shape
    x = a.get_fdata(); assert np.isfinite(x).all() and -1001 <= x.min() and x.max() <= 1001
    assert not np.array_equal(x, b.get_fdata())              # different seeds
    js = json.loads((out/"samples.json").read_text(encoding="utf-8"))
    assert [e["seed"] for e in js["samples"]] == [5, 6] and [e["status"] for e in js["samples"]] == ["written", "written"]
    # same seed again (--force): the same volume
    rc, _, err = call(capsys, "sample", trained/"runs"/"t", trained/"case1.nii.gz", "--image", trained/"case1_ct.nii.gz",
                      "--seed", 5, "--out", out, "--quiet", "--force")
    assert rc == 0, err
    np.testing.assert_array_equal(nib.load(out/"case1_000.nii.gz").get_fdata(), x)

def test_sample_shards_by_rank(trained, capsys, monkeypatch):
    "Under torchrun (RANK/WORLD_SIZE set), each process writes only its share of the jobs."
    from medlord_nb.core import save_json
    import shutil
    shutil.copy(trained/"case1.nii.gz", trained/"case2.nii.gz")
    monkeypatch.setenv("RANK", "1"); monkeypatch.setenv("WORLD_SIZE", "2"); monkeypatch.setenv("LOCAL_RANK", "1")
    args = ["sample", trained/"runs"/"t", trained/"case1.nii.gz", trained/"case2.nii.gz", "--image", trained/"case1_ct.nii.gz",
            "--image", trained/"case1_ct.nii.gz", "--n", 2, "--out", trained/"s2", "--quiet"]
    rc, out, err = call(capsys, *args, "--dry_run")
    assert rc == 0, err
    jobs = yaml.safe_load(out)["jobs"]
    assert [j["rank"] for j in jobs] == [0, 1, 0, 1] and yaml.safe_load(out)["processes"] == 2
    rc, out, err = call(capsys, *args)
    assert rc == 0, err
    assert sorted(p.name for p in (trained/"s2").iterdir()) == ["case1_001.nii.gz", "case2_001.nii.gz", "samples.json"]   # rank 1's
    js = json.loads((trained/"s2"/"samples.json").read_text(encoding="utf-8"))          # each rank records its own entries
    assert [(e["file"], e["rank"], e["status"]) for e in js["samples"]] == [("case1_001.nii.gz", 1, "written"), ("case2_001.nii.gz", 1, "written")]

def test_plan_fits_and_json(capsys):
    base = ["plan", "--shape", 32, 32, 16, *params()[:8]]
    rc, out, err = call(capsys, *base, "--budget", "8GB")
    assert rc == 0, err
    assert "memory plan" in out and "train" in out and "denoise" in out
    rc, out, err = call(capsys, *base, "--budget", "8GB", "--json", "--precision", "fp32")
    assert rc == 0, err
    d = json.loads(out)
    assert d["fits"] and d["precision"] == "fp32" and d["shape"] == [32, 32, 16] and set(d["phases"]) == {"train", "denoise"}
    rc, out, err = call(capsys, *base, "--budget", "1MB")
    one_line_error(rc, err, "plan"); assert "does not fit" in err and "would fit" in err
    assert "NO" in out                                       # the table is still printed, with the failing phase
    rc, out, err = call(capsys, "plan", "--preset", "patch_ddpm_lung", "--shape", 64, 64, 32, "--dry_run")
    assert rc == 0 and yaml.safe_load(out)["config"]["batch_size"] == 8

def test_prepare_wired(tmp_path, capsys):
    rc, out, err = call(capsys, "prepare", tmp_path/"src", tmp_path/"ds", "--derive_masks", "--dry_run")
    assert rc == 0 and yaml.safe_load(out) == {"src": str(tmp_path/"src"), "out": str(tmp_path/"ds"), "derive_masks": True, "force": False,
                                                        "allow_odd_hu": False, "modality": "ct"}
    rc, out, err = call(capsys, "prepare", tmp_path/"nope", tmp_path/"ds")       # missing folder (or no datasets module): one line
    one_line_error(rc, err, "prepare")
    pytest.importorskip("medlord_nb.datasets")
    from medlord_nb.data import load_sample, save_volume
    s = load_sample("lung1"); sl = (slice(60, 92), slice(40, 72), slice(10, 26))
    save_volume(tmp_path/"src"/"case1.nii.gz", s.image[sl], s.affine)
    save_volume(tmp_path/"src"/"case1_mask.nii.gz", s.labels[sl], s.affine, dtype=np.uint8)
    rc, out, err = call(capsys, "prepare", tmp_path/"src", tmp_path/"ds", "--quiet")
    assert rc == 0, err
    man = json.loads((tmp_path/"ds"/"manifest.json").read_text(encoding="utf-8"))
    assert len(man["cases"]) == 1 and "1 cases" in out
    rc, out, err = call(capsys, "prepare", tmp_path/"src", tmp_path/"ds", "--quiet")          # never overwritten without --force
    one_line_error(rc, err, "prepare"); assert "--force" in err
    rc, out, err = call(capsys, "train", "--root", tmp_path/"runs", "--name", "own", "--quiet",   # train on the prepared dataset
                        *params(train_samples=f"[{tmp_path/'ds'}]"))
    assert rc == 0, err
    cfg = yaml.safe_load((tmp_path/"runs"/"own"/"config.yaml").read_text(encoding="utf-8"))
    assert cfg["train_samples"] == [str(tmp_path/"ds")] and (tmp_path/"runs"/"own"/"checkpoints"/"last.pt").exists()

def test_evaluate_and_run_dry_run(tmp_path, capsys):
    rc, out, _ = call(capsys, "evaluate", tmp_path/"real", tmp_path/"fake", "--dry_run")
    assert rc == 0 and yaml.safe_load(out)["samples"] == [str(tmp_path/"fake")]
    rc, out, _ = call(capsys, "run", "demo", "--dry_run", "--param", "seed=4")
    assert rc == 0 and yaml.safe_load(out)["parameters"]["seed"] == 4

def test_error_line():
    import errno
    assert error_line(OSError(errno.ENOSPC, "No space left on device")).startswith("no space left on device; free disk space")
    assert error_line(OSError(errno.EACCES, "Permission denied", "/x/y")) == "/x/y: Permission denied"
    assert error_line(ValueError("a\n  b\n")) == "a b"
    assert error_line(FileNotFoundError("x.nii: no such file")) == "x.nii: no such file"

def test_sample_json_never_lists_an_unwritten_file(trained, capsys, monkeypatch):
    "A run that fails half-way: the finished sample is 'written', the failed one 'failed', the rest 'pending'."
    from medlord_nb import runner
    P = runner.get_system("patch")
    calls = [0]
    def flaky(*a, **k):
        calls[0] += 1
        if calls[0] == 2: raise ValueError("the sampler diverged (test)")
        return P.generate(*a, **k)
    monkeypatch.setattr(runner, "get_system", lambda name: P._replace(generate=flaky))
    out = trained/"s3"
    rc, _, err = call(capsys, "sample", trained/"runs"/"t", trained/"case1.nii.gz", "--image", trained/"case1_ct.nii.gz",
                      "--n", 3, "--out", out, "--quiet")
    one_line_error(rc, err, "sample"); assert "diverged" in err
    js = json.loads((out/"samples.json").read_text(encoding="utf-8"))
    assert [(e["file"], e["status"]) for e in js["samples"]] == [("case1_000.nii.gz", "written"), ("case1_001.nii.gz", "failed"),
                                                                 ("case1_002.nii.gz", "pending")]
    assert "diverged" in js["samples"][1]["error"]
    on_disk = {p.name for p in out.glob("*.nii.gz")}
    assert on_disk == {e["file"] for e in js["samples"] if e["status"] == "written"} == {"case1_000.nii.gz"}

def test_report_of_a_run_dir(trained, tmp_path, capsys):
    "main(['report', RUN_DIR]) on (a copy of) the small trained run: a page with its train metrics and loss figure."
    import shutil
    run = tmp_path/"t"; shutil.copytree(trained/"runs"/"t", run)
    rc, out, err = call(capsys, "report", run)
    assert rc == 0, err
    md = (run/"report.md").read_text(encoding="utf-8")
    assert "## train" in md and "loss" in md and "params.yaml" in md, md[:2000]
    rc, out, err = call(capsys, "report", run, "--format", "html", "--out", tmp_path/"r.html")
    assert rc == 0, err
    h = (tmp_path/"r.html").read_text(encoding="utf-8")
    assert h.startswith("<!DOCTYPE html>") and "data:image/png;base64," in h
    rc, _, err = call(capsys, "report", tmp_path/"nope")
    one_line_error(rc, err, "report"); assert "no such run directory" in err

def test_kill_9_then_resume_gives_the_same_weights_and_log(tmp_path):
    "`medlord train` killed with SIGKILL at three points, then --resume each time: weights and loss_history equal an uninterrupted run."
    import signal, time, random, torch
    from cli_helpers import params as _params
    args = _params(steps=60, ckpt_every=2)                               # log every 6 steps: loss windows span checkpoints
    cmd = lambda name, *extra: [sys.executable, "-m", "medlord_nb.cli", "train", "--root", str(tmp_path), "--name", name, "--quiet", *args, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert subprocess.run(cmd("whole"), env=env, cwd=ROOT, capture_output=True).returncode == 0
    rng, kills = random.Random(0), 0
    last = tmp_path/"cut"/"checkpoints"/"last.pt"
    for attempt in range(12):
        p = subprocess.Popen(cmd("cut", *(["--resume"] if (tmp_path/"cut"/"config.yaml").exists() else [])), env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < 3:                                                    # wait for a checkpoint newer than the last one, then kill
            t0 = last.stat().st_mtime_ns if last.exists() else 0
            while p.poll() is None and not (last.exists() and last.stat().st_mtime_ns > t0): time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.1))                            # a random point between checkpoints (far from the end)
            if p.poll() is None: p.send_signal(signal.SIGKILL); p.wait(); kills += 1; continue
        assert p.wait() == 0, p.stderr.read().decode()[-2000:]
        if (tmp_path/"cut"/"metrics.json").exists(): break
    assert kills == 3, kills
    a, b = json.loads((tmp_path/"whole"/"metrics.json").read_text()), json.loads((tmp_path/"cut"/"metrics.json").read_text())
    assert a["train"]["loss_history"] == b["train"]["loss_history"] and len(a["train"]["loss_history"]) == 10
    wa = torch.load(tmp_path/"whole"/"checkpoints"/"last.pt", weights_only=True)
    wb = torch.load(tmp_path/"cut"/"checkpoints"/"last.pt", weights_only=True)
    for part in ("model", "ema"):
        for k, v in wa[part].items(): assert torch.equal(v, wb[part][k]), (part, k)
