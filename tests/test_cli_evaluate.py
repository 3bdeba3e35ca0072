"""`medlord evaluate` on two identical folders reports FID ~0 and Dice 1 (issue acceptance)."""
from pathlib import Path
import numpy as np
import torch
from medlord_nb.cli import main
from medlord_nb.core import load_json
from medlord_nb.data import load_sample, save_volume
from medlord_nb.evaluation import medicalnet_resnet

def test_identical_folders(tmp_path):
    s = load_sample("lung1")
    for d in ("real", "synthetic"):
        for i, (x0, y0) in enumerate(((40, 30), (100, 60), (70, 80))):           # three real crops
            save_volume(tmp_path/d/f"case{i}.nii.gz", s.image[x0:x0 + 48, y0:y0 + 48, 8:40], s.affine)
    torch.manual_seed(0)
    torch.save(medicalnet_resnet(10).state_dict(), tmp_path/"medicalnet10.pth")   # user-supplied weights (here: random)
    out = tmp_path/"metrics.json"
    rc = main(["evaluate", str(tmp_path/"real"), str(tmp_path/"synthetic"), "--medicalnet", str(tmp_path/"medicalnet10.pth"),
               "--medicalnet_depth", "10", "--out", str(out)])
    assert rc == 0
    m = load_json(out)
    assert m["fid"]["protocol"] == "fid-3d-medicalnet" and abs(m["fid"]["value"]) < 1e-3, m["fid"]
    assert m["fid"]["n_samples"] == 3 and m["fid"]["n_reference"] == 3
    for k, v in m["paired_agreement"]["per_label"].items(): assert v["dice_mean"] == 1.0, (k, v)

def test_missing_weights_is_one_clear_line(tmp_path, capsys):
    rc = main(["evaluate", str(tmp_path), str(tmp_path), "--medicalnet", str(tmp_path/"nope.pth")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nope.pth" in err and err.count("\n") == 1, err
