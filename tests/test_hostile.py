"""Hostile input: every case ends in ONE clear line on stderr (no traceback), exit status 2, and no lost or half-written file.

Cases go through `medlord` (cli.main in-process, a few real subprocesses) and the API: corrupt / truncated / empty
files, mismatched grids, wrong dtypes, NaN / inf, empty masks, unknown labels, wrong config keys and types, a budget
too small, a killed run (resumed exactly), a full disk, an existing run directory.
"""
import errno, gzip, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import nibabel as nib
import torch
from medlord_nb.cli import main

ROOT = Path(__file__).resolve().parents[1]
from cli_helpers import TINY, params

def _tmp_files(*roots):
    return [p for r in roots for p in Path(r).rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name]

def fails(capsys, cmd, *argv, match=None, roots=()):
    "Run `medlord cmd argv`; assert exit 2, one `medlord cmd: error: ...` line on stderr, no temp file left; return the line."
    rc = main([cmd, *map(str, argv)])
    err = capsys.readouterr().err
    assert rc == 2, (rc, err)
    assert err.count("\n") == 1 and err.startswith(f"medlord {cmd}") and ": error: " in err, err
    assert "Traceback" not in err
    if match: assert match in err, err
    assert not _tmp_files(*roots), _tmp_files(*roots)
    return err

def nii(path, arr, affine=None, dtype=None):
    img = nib.Nifti1Image(np.asarray(arr if dtype is None else np.asarray(arr).astype(dtype)), np.eye(4) if affine is None else affine)
    nib.save(img, str(path)); return Path(path)

@pytest.fixture(scope="module")
def w(tmp_path_factory):
    "A tiny trained run, a valid mask (body = 255) and its CT, all on one grid."
    d = tmp_path_factory.mktemp("hostile")
    assert main(["train", "--root", str(d/"runs"), "--name", "t", "--quiet", *params()]) == 0
    from medlord_nb.data import load_sample, body_mask
    s = load_sample("lung1")
    sl = (slice(60, 92), slice(40, 72), slice(10, 26))
    lab, ct = s.labels[sl].copy(), s.image[sl]
    lab[(lab == 0) & body_mask(ct)] = 255
    class W: pass
    w = W(); w.d, w.run, w.affine, w.lab, w.ct = d, d/"runs"/"t", s.affine, lab, ct
    w.mask = nii(d/"mask.nii.gz", lab, s.affine, np.uint8)
    w.image = nii(d/"ct.nii.gz", ct, s.affine, np.float32)
    return w

def sample(capsys, w, *files, extra=(), match=None):
    out = w.d/"out"
    shutil.rmtree(out, ignore_errors=True)
    e = fails(capsys, "sample", w.run, *files, "--out", out, "--quiet", *extra, match=match, roots=(w.d,))
    assert not out.exists() or not any(p.suffix == ".gz" for p in out.iterdir())     # nothing written
    return e

# ---- mask and image files ------------------------------------------------------------------------------------------

def test_corrupt_nifti(capsys, w):
    bad = w.d/"garbage.nii.gz"; bad.write_bytes(gzip.compress(os.urandom(600)))
    sample(capsys, w, bad, match="garbage.nii.gz")

def test_truncated_gzip(capsys, w):
    bad = w.d/"trunc.nii.gz"; bad.write_bytes(w.mask.read_bytes()[:300])
    sample(capsys, w, bad, match="trunc.nii.gz")

def test_truncated_uncompressed(capsys, w):
    full = nii(w.d/"full.nii", w.lab, w.affine, np.uint8)
    bad = w.d/"short.nii"; bad.write_bytes(full.read_bytes()[:352 + 100])       # header + 100 of 16384 voxels
    sample(capsys, w, bad, match="short.nii")

def test_empty_file(capsys, w):
    bad = w.d/"empty.nii.gz"; bad.write_bytes(b"")
    sample(capsys, w, bad, match="empty")

def test_missing_file(capsys, w):
    sample(capsys, w, w.d/"nope.nii.gz", match="nope.nii.gz: no such file")

def test_wrong_extension(capsys, w):
    bad = w.d/"mask.png"; bad.write_bytes(b"\x89PNG....")
    sample(capsys, w, bad, match="unsupported file type")

def test_2d_mask(capsys, w):
    sample(capsys, w, nii(w.d/"slice.nii.gz", w.lab[:, :, 5], w.affine, np.uint8), match="2D")

def test_shape_mismatch_image_mask(capsys, w):
    ct = nii(w.d/"ct_small.nii.gz", w.ct[:, :, :12], w.affine, np.float32)
    sample(capsys, w, w.mask, extra=("--image", ct), match="shapes differ")

def test_affine_mismatch_image_mask(capsys, w):
    moved = w.affine.copy(); moved[:3, 3] += 3.0
    ct = nii(w.d/"ct_moved.nii.gz", w.ct, moved, np.float32)
    sample(capsys, w, w.mask, extra=("--image", ct), match="affines differ")

def test_spacing_mismatch_image_mask(capsys, w):
    fine = w.affine.copy(); fine[:3, :3] *= 0.5
    ct = nii(w.d/"ct_fine.nii.gz", w.ct, fine, np.float32)
    e = sample(capsys, w, w.mask, extra=("--image", ct), match="not on the grid")
    assert "spacing" in e and "nearest" in e

def test_float_mask_with_fractions(capsys, w):
    sample(capsys, w, nii(w.d/"frac.nii.gz", w.lab + 0.5, w.affine, np.float32), match="non-integer")

def test_complex_dtype(capsys, w):
    sample(capsys, w, nii(w.d/"cplx.nii.gz", w.lab, w.affine, np.complex64), match="not numeric")

def test_nan_in_mask(capsys, w):
    a = w.lab.astype(np.float32); a[3, 4, 5] = np.nan
    sample(capsys, w, nii(w.d/"nan.nii.gz", a, w.affine), match="NaN")

def test_inf_in_image(capsys, w):
    a = w.ct.copy(); a[0, 0, 0] = np.inf
    sample(capsys, w, w.mask, extra=("--image", nii(w.d/"inf.nii.gz", a, w.affine, np.float32)), match="infinite")

def test_empty_mask(capsys, w):
    sample(capsys, w, nii(w.d/"zeros.nii.gz", np.zeros_like(w.lab), w.affine, np.uint8), match="empty mask")

def test_unknown_label(capsys, w):
    a = w.lab.copy(); a[:2, :2, :2] = 42
    sample(capsys, w, nii(w.d/"l42.nii.gz", a, w.affine, np.uint8), match="[42] are unknown")

def test_mask_without_body(capsys, w):
    a = np.where(w.lab == 255, 0, w.lab)
    sample(capsys, w, nii(w.d/"nobody.nii.gz", a, w.affine, np.uint8), match="no body outline")

def test_image_count_mismatch(capsys, w):
    sample(capsys, w, w.mask, w.mask, extra=("--image", w.image), match="one CT per mask")

# ---- runs and checkpoints ------------------------------------------------------------------------------------------

def test_not_a_run(capsys, w, tmp_path):
    fails(capsys, "sample", tmp_path, w.mask, match="not a trained run", roots=(tmp_path,))

def test_truncated_checkpoint(capsys, w, tmp_path):
    run = tmp_path/"broken"; shutil.copytree(w.run, run)
    ck = run/"checkpoints"/"last.pt"; ck.write_bytes(ck.read_bytes()[:1000])
    fails(capsys, "sample", run, w.mask, "--out", tmp_path/"o", match="cannot read checkpoint", roots=(tmp_path,))
    assert not (tmp_path/"o").exists() or not list((tmp_path/"o").glob("*.gz"))

def test_sampling_cannot_change_the_model(capsys, w):
    sample(capsys, w, w.mask, extra=("--param", "channels=[4,4]"), match="cannot change channels")

def test_existing_run_dir_without_force(capsys, w):
    before = {p: p.read_bytes() for p in w.run.rglob("*") if p.is_file()}
    e = fails(capsys, "train", "--root", w.d/"runs", "--name", "t", "--quiet", *params(), match="already exists", roots=(w.d,))
    assert "--force" in e and "--resume" in e
    assert {p: p.read_bytes() for p in w.run.rglob("*") if p.is_file()} == before

def test_force_with_resume(capsys, w):
    fails(capsys, "train", "--root", w.d/"runs", "--name", "t", "--force", "--resume", match="not both")

def test_resume_without_run(capsys, tmp_path):
    fails(capsys, "train", "--root", tmp_path, "--name", "ghost", "--resume", match="no run to resume", roots=(tmp_path,))

def test_existing_samples_without_force(capsys, w, tmp_path):
    out = tmp_path/"o"; out.mkdir(); (out/"mask_000.nii.gz").write_bytes(b"keep me")
    fails(capsys, "sample", w.run, w.mask, "--out", out, match="pass --force", roots=(tmp_path,))
    assert (out/"mask_000.nii.gz").read_bytes() == b"keep me"

# ---- configs -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,match", [
    ("stpes: 3\n", "did you mean 'steps'"),                         # unknown key
    ("steps: many\n", "expected an int"),                           # wrong type
    ("patch_size: [16, 16]\n", "expected 3 values"),                # wrong length
    ("sampler: euler\n", "not one of"),                             # not an allowed value
    ("- steps\n- 3\n", "expected a mapping"),                       # not a mapping
    ("steps: [1, 2\n", "not valid YAML"),                           # YAML syntax
])
def test_bad_config(capsys, tmp_path, text, match):
    cfg = tmp_path/"bad.yaml"; cfg.write_text(text)
    fails(capsys, "train", "--config", cfg, "--root", tmp_path/"runs", "--quiet", match=match, roots=(tmp_path,))
    assert not (tmp_path/"runs").exists()                           # refused before anything was created

def test_param_without_value(capsys, tmp_path):
    fails(capsys, "train", "--param", "steps", "--root", tmp_path, match="KEY=VALUE")

def test_bad_number_argument(capsys, w):
    fails(capsys, "sample", w.run, w.mask, "--n", "two", match="invalid int value")

def test_unknown_preset(capsys):
    fails(capsys, "train", "--config", "lung_big", "--dry_run", match="unknown preset 'lung_big'")

def test_budget_too_small(capsys):
    e = fails(capsys, "plan", "--shape", 32, 32, 16, "--budget", "1MB", *params(), match="does not fit")
    assert "MiB" in e

def test_budget_unreadable(capsys):
    fails(capsys, "plan", "--shape", 32, 32, 16, "--budget", "lots", match="cannot read size 'lots'")

def test_shape_not_positive(capsys):
    fails(capsys, "plan", "--shape", 0, 32, 16, match="three positive sizes")

# ---- a full disk, a killed run -------------------------------------------------------------------------------------

def _enospc_for(monkeypatch, fragment):
    "Make fsync fail with ENOSPC for files whose (temp) name contains `fragment`."
    real = os.fsync
    def fsync(fd):
        if fragment in os.readlink(f"/proc/self/fd/{fd}"): raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)
    monkeypatch.setattr(os, "fsync", fsync)

def test_full_disk_during_checkpoint(capsys, w, tmp_path, monkeypatch):
    run = tmp_path/"runs"/"t"; shutil.copytree(w.run, run)
    ck = run/"checkpoints"/"last.pt"; before = ck.read_bytes()
    _enospc_for(monkeypatch, ".last.pt.")
    fails(capsys, "train", "--root", tmp_path/"runs", "--name", "t", "--resume", "--quiet", "--param", "steps=3",
          match="no space left on device", roots=(tmp_path,))
    assert ck.read_bytes() == before                                # the previous checkpoint is intact
    assert torch.load(ck, weights_only=False)["step"] == 2

def test_full_disk_during_sample(capsys, w, monkeypatch):
    _enospc_for(monkeypatch, ".mask_000.nii.gz.")
    sample(capsys, w, w.mask, match="no space left on device")
    import json
    js = json.loads((w.d/"out"/"samples.json").read_text(encoding="utf-8"))      # the index never lists it as written
    assert [(e["file"], e["status"]) for e in js["samples"]] == [("mask_000.nii.gz", "failed")], js
    assert "no space left on device" in js["samples"][0]["error"]

# ---- evaluate ------------------------------------------------------------------------------------------------------

def test_evaluate_corrupt_sample(capsys, w, tmp_path):
    bad = tmp_path/"gen"/"bad.nii.gz"; bad.parent.mkdir(); bad.write_bytes(b"\x1f\x8b" + os.urandom(64))
    fails(capsys, "evaluate", "--reference", w.image, "--samples", bad, "--out", tmp_path/"m.json", match="bad.nii.gz", roots=(tmp_path,))
    assert not (tmp_path/"m.json").exists()

def test_evaluate_out_is_a_folder(capsys, w, tmp_path):
    fails(capsys, "evaluate", "--reference", w.image, "--samples", w.image, "--out", tmp_path, match="is a folder", roots=(tmp_path,))

def test_evaluate_mask_off_grid(capsys, w, tmp_path):
    (tmp_path/"s").mkdir(); (tmp_path/"m").mkdir()
    m = nii(tmp_path/"m"/"ct_mask.nii.gz", w.lab[:-1], w.affine, np.uint8)          # pairs with ct.nii.gz by stem, one row short
    ct = nii(tmp_path/"s"/"ct.nii.gz", w.ct, w.affine, np.float32)
    fails(capsys, "evaluate", "--reference", w.image, "--samples", ct, "--masks", m, "--out", tmp_path/"m.json",
          match="not on the grid", roots=(tmp_path,))

KILLER = '''
import os, sys, tempfile
from pathlib import Path
import medlord_nb.core as core
from medlord_nb.cli import main
real, n = core.atomic_write, [0]
def dying(path, data):
    if Path(path).name == "last.pt":
        n[0] += 1
        if n[0] == 2:                       # killed half-way through writing the second checkpoint
            fd, tmp = tempfile.mkstemp(prefix=".last.pt.", suffix=".tmp", dir=Path(path).parent)
            os.write(fd, data[: len(data) // 2]); os._exit(137)
    return real(path, data)
core.atomic_write = dying
sys.exit(main(sys.argv[1:]))
'''

@pytest.fixture
def one_thread():
    "Bitwise comparisons across processes need the same BLAS/OpenMP thread count on both sides: one."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def test_killed_run_resumes_exactly(capsys, tmp_path, one_thread):
    argv = ["train", "--root", str(tmp_path/"runs"), "--quiet", *params(steps=4, ckpt_every=2)]
    (tmp_path/"killer.py").write_text(KILLER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(tmp_path/"killer.py"), *argv, "--name", "killed"], capture_output=True, encoding="utf-8", errors="replace",
                       env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 137, r.stderr[-2000:]
    ckd = tmp_path/"runs"/"killed"/"checkpoints"
    assert torch.load(ckd/"last.pt", weights_only=False)["step"] == 2      # the last complete checkpoint
    assert len(list(ckd.glob(".last.pt.*.tmp"))) == 1                     # the half-written one
    e = fails(capsys, "train", *argv[1:], "--name", "killed", match="already exists")   # not silently reused
    assert main([*argv, "--name", "killed", "--resume"]) == 0
    capsys.readouterr()
    assert not list(ckd.glob("*.tmp"))                                    # cleaned, never read
    assert main([*argv, "--name", "straight"]) == 0
    a = torch.load(ckd/"last.pt", weights_only=False)
    b = torch.load(tmp_path/"runs"/"straight"/"checkpoints"/"last.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    for k in b["model"]: assert torch.equal(a["model"][k], b["model"][k]), k          # bitwise: resume == uninterrupted
    for k in b["ema"]: assert torch.equal(a["ema"][k], b["ema"][k]), k
    assert a["history"] == b["history"]

# ---- the console script and --debug ----------------------------------------------------------------------------------

def test_console_script_one_line(tmp_path):
    exe = Path(sys.executable).parent/"medlord"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "medlord_nb.cli"]
    r = subprocess.run([*cmd, "sample", str(tmp_path/"no_run"), str(tmp_path/"m.nii.gz")], capture_output=True, encoding="utf-8", errors="replace", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a trained run" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([*cmd, "plan", "--shape", "1", "2"], capture_output=True, encoding="utf-8", errors="replace", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--shape" in r.stderr, r.stderr

def test_debug_reraises(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not a trained run"): main(["sample", str(tmp_path), "m.nii.gz", "--debug"])
    monkeypatch.setenv("MEDLORD_DEBUG", "1")
    with pytest.raises(FileNotFoundError): main(["sample", str(tmp_path), "m.nii.gz"])

# ---- the API ---------------------------------------------------------------------------------------------------------

def test_api_load_weights_truncated(w, tmp_path):
    from medlord_nb.training import load_weights
    from medlord_nb.patch_ddpm import PatchDDPMConfig, build_model
    from medlord_nb.core import load_yaml
    bad = tmp_path/"half.pt"; bad.write_bytes((w.run/"checkpoints"/"last.pt").read_bytes()[:5000])
    with pytest.raises(ValueError, match="cannot read checkpoint") as e:
        load_weights(build_model(PatchDDPMConfig.from_dict(load_yaml(w.run/"config.yaml"))), bad)
    assert "\n" not in str(e.value)

def test_api_atomic_write_full_disk(tmp_path, monkeypatch):
    from medlord_nb.core import atomic_write, save_json
    p = save_json({"a": 1}, tmp_path/"m.json"); before = p.read_bytes()
    _enospc_for(monkeypatch, ".m.json.")
    with pytest.raises(OSError) as e: atomic_write(p, "{}")
    assert e.value.errno == errno.ENOSPC and p.read_bytes() == before and not _tmp_files(tmp_path)

def test_api_read_mask_grid(w):
    from medlord_nb.data import read_mask
    with pytest.raises(ValueError, match="not on the grid") as e: read_mask(w.mask, nii(w.d/"ct_x.nii.gz", w.ct[:-1], w.affine, np.float32))
    assert "\n" not in str(e.value)
