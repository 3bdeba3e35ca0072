"""DDP with torchrun, 2 CPU processes (gloo): `medlord train` gives the single-process weights and losses, `medlord sample`
shards the samples and gives the single-process volumes, `shard='independent'` draws per-rank batches and resumes."""
import json, os, signal, socket, subprocess, sys
from pathlib import Path
import numpy as np
import torch
from medlord_nb.cli import main

ROOT = Path(__file__).resolve().parents[1]
from cli_helpers import params
PARAMS = params(batch_size=4, steps=4)             # the tiny patch DDPM with a global batch of 4

DRIVER = '''
import sys, torch
from pathlib import Path
from medlord_nb.cli import main
from medlord_nb.training import Trainer, TrainConfig, Batch, dist_info
from medlord_nb.schedules import NoiseSchedule
d, params = Path(sys.argv[1]), sys.argv[2:]
# shard='independent': per-rank streams from derive_seed(seed, rank); the checkpoint holds every rank's generator
seen = []
def batch_fn(g):
    x = torch.rand(2, 1, 4, 4, 4, generator=g) * 2 - 1; seen.append(x); return Batch(x)
net = lambda: torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv3d(4, 1, 3, padding=1))
class Net(torch.nn.Module):
    def __init__(s): super().__init__(); torch.manual_seed(0); s.f = net()
    def forward(s, x, t): return s.f(x)
sch = NoiseSchedule("cosine", 50, prediction_type="epsilon")
cfg = TrainConfig(steps=3, lr=1e-3, ema_decay=None, log_every=1)
tr = Trainer(Net(), sch, batch_fn, cfg, device="cpu", ckpt_dir=d/"indep", progress=False, shard="independent")
tr.fit(steps=2)
r = dist_info().rank
torch.save(seen[0], d/f"indep_batch{r}.pt")
tr2 = Trainer(Net(), sch, batch_fn, cfg, device="cpu", ckpt_dir=d/"indep", progress=False, shard="independent")
assert tr2.step == 2 and torch.equal(tr2.gen.get_state(), tr.gen.get_state()), "independent resume restores each rank's stream"
tr2.fit(); tr.fit()
for k, v in tr.model.state_dict().items(): assert torch.equal(v, tr2.model.state_dict()[k]), k
# the CLI on the same process group (main tears it down when done)
assert main(["train", "--root", str(d/"runs"), "--name", "ddp", "--quiet", *params]) == 0
assert main(["sample", str(d/"runs"/"ddp"), str(d/"case1.nii.gz"), "--image", str(d/"case1_ct.nii.gz"), "--n", "2",
             "--out", str(d/"ddp_samples"), "--quiet"]) == 0
'''

def _free_port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def _rel(a:dict, b:dict) -> float:
    num = sum(float(((a[k].double() - b[k].double()) ** 2).sum()) for k in a)
    return (num / sum(float((a[k].double() ** 2).sum()) for k in a)) ** 0.5

def test_two_processes_match_one(tmp_path):
    from medlord_nb.data import load_sample, save_volume
    s = load_sample("lung1")
    sl = (slice(60, 92), slice(40, 72), slice(10, 26))
    save_volume(tmp_path/"case1.nii.gz", s.labels[sl], s.affine, dtype=np.uint8)
    save_volume(tmp_path/"case1_ct.nii.gz", s.image[sl], s.affine)
    (tmp_path/"driver.py").write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                          "--master_port", str(_free_port()), str(tmp_path/"driver.py"), str(tmp_path), *PARAMS],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8", errors="replace", env=env, cwd=tmp_path, start_new_session=True)
    try: out, err = p.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); out, err = p.communicate()          # torchrun and both workers
        raise AssertionError("torchrun timed out: " + out[-2000:] + err[-2000:])
    assert p.returncode == 0, out[-3000:] + err[-3000:]

    # the same training and sampling in one process
    assert main(["train", "--root", str(tmp_path/"runs"), "--name", "single", "--quiet", *PARAMS]) == 0
    assert main(["sample", str(tmp_path/"runs"/"single"), str(tmp_path/"case1.nii.gz"), "--image", str(tmp_path/"case1_ct.nii.gz"),
                 "--n", "2", "--out", str(tmp_path/"single_samples"), "--quiet"]) == 0

    one = torch.load(tmp_path/"runs"/"single"/"checkpoints"/"last.pt", weights_only=False)
    two = torch.load(tmp_path/"runs"/"ddp"/"checkpoints"/"last.pt", weights_only=False)
    assert two["world_size"] == 2 and two["step"] == one["step"] == 4
    rel_w, rel_ema = _rel(one["model"], two["model"]), _rel(one["ema"], two["ema"])
    l1, l2 = np.array([h[1] for h in one["history"]]), np.array([h[1] for h in two["history"]])
    rel_loss = float(np.abs(l1 - l2).max() / np.abs(l1).max())
    print(f"DDP(2) vs 1 process after 4 steps: weights {rel_w:.2e}, EMA {rel_ema:.2e}, loss {rel_loss:.2e} (relative)")
    assert rel_w < 1e-5 and rel_ema < 1e-5 and rel_loss < 1e-5, (rel_w, rel_ema, rel_loss)
    m = json.loads((tmp_path/"runs"/"ddp"/"metrics.json").read_text(encoding="utf-8"))["train"]
    assert m["processes"] == 2 and m["steps"] == 4
    assert not list((tmp_path/"runs").rglob("*.tmp"))

    # sharded sampling: rank 0 wrote sample 0, rank 1 sample 1; each equals the single-process sample
    import nibabel as nib
    js = json.loads((tmp_path/"ddp_samples"/"samples.json").read_text(encoding="utf-8"))
    assert [e["rank"] for e in js["samples"]] == [0, 1]
    for k in (0, 1):
        a = nib.load(tmp_path/"ddp_samples"/f"case1_00{k}.nii.gz"); b = nib.load(tmp_path/"single_samples"/f"case1_00{k}.nii.gz")
        np.testing.assert_allclose(a.affine, b.affine)
        np.testing.assert_allclose(a.get_fdata(), b.get_fdata(), atol=0.5)      # HU; the weights differ by ~1e-7
    assert "error" not in err

    # a DDP checkpoint ('split' shards) resumes in one process as if it had been trained there
    for name in ("ddp", "single"):
        assert main(["train", "--root", str(tmp_path/"runs"), "--name", name, "--resume", "--quiet", "--param", "steps=5"]) == 0
    one = torch.load(tmp_path/"runs"/"single"/"checkpoints"/"last.pt", weights_only=False)
    two = torch.load(tmp_path/"runs"/"ddp"/"checkpoints"/"last.pt", weights_only=False)
    assert two["step"] == 5 and _rel(one["model"], two["model"]) < 1e-5

    # independent shards: the two ranks drew different batches
    b0, b1 = torch.load(tmp_path/"indep_batch0.pt"), torch.load(tmp_path/"indep_batch1.pt")
    assert not torch.equal(b0, b1)
