"""Modality-aware preprocessing on a REAL MRI (issue 16, item 3): the embedded `mr_abdomen` (TotalSegmentator 2.18.0's MR
test case with its 23-label segmentation) goes through `medlord prepare --modality mri` (manifest says "mri"), a tiny
Med-LSDM trains and samples on the prepared MR volume, and CT-only settings on it fail with one clear line."""
import json
import numpy as np
import pytest
from medlord_nb.cli import main
from medlord_nb.core import load_json
from medlord_nb.data import load_sample, save_volume
from medlord_nb.datasets import load_manifest, load_case
from medlord_nb.latent_diffusion import MedLSDMConfig, train_all, condition_region, prepare_volume, generate

LABELS = (5, 1, 2, 3)   # total_mr: liver, spleen, kidney_right, kidney_left
TINY = dict(labels=LABELS, recon_sample=None, image_downsample=(2, 2, 1), crop_size=(32, 32, 16), vqgan_patch_size=(32, 32, 16),
            vqgan_steps=2, adv_warmup_steps=1, steps=2, warmup_steps=1, num_inference_steps=2, device="cpu", seed=0)

def _one_line(capsys, rc, what):
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("medlord prepare: error:") and "\n" not in err and what in err, err
    return err

@pytest.fixture(scope="module")
def mr_folder(tmp_path_factory):
    "A folder as a user would bring it: NAME.nii.gz + NAME_seg.nii.gz + labels.json (TotalSegmentator's total_mr names)."
    mr = load_sample("mr_abdomen")
    src = tmp_path_factory.mktemp("mr")/"src"; src.mkdir()
    save_volume(src/"abdomen.nii.gz", mr.image, mr.affine, np.int16); save_volume(src/"abdomen_seg.nii.gz", mr.labels, mr.affine, np.uint8)
    (src/"labels.json").write_text(json.dumps({str(k): v for k, v in mr.label_names.items()}))
    return src

@pytest.fixture(scope="module")
def mr_dataset(mr_folder):
    out = mr_folder.parent/"ds"
    assert main(["prepare", str(mr_folder), str(out), "--modality", "mri", "--quiet"]) == 0
    return out

def test_prepare_writes_mri_manifest(mr_dataset):
    man = load_json(mr_dataset/"manifest.json")
    assert man["modality"] == "mri" and man["cases"][0]["modality"] == "mri" and "value_range" in man["cases"][0]
    v = load_case(f"{mr_dataset}#abdomen")
    assert v.modality == "mri" and v.shape == (117, 91, 20) and len(np.unique(v.labels)) == 24
    assert load_manifest(mr_dataset, verify=True).modality == "mri"

def test_prepare_ct_only_settings_fail_in_one_line(mr_folder, tmp_path, capsys):
    err = _one_line(capsys, main(["prepare", str(mr_folder), str(tmp_path/"a"), "--quiet"]), "is it an MRI?")   # forgot --modality
    assert "--modality mri" in err
    _one_line(capsys, main(["prepare", str(mr_folder), str(tmp_path/"b"), "--modality", "mri", "--derive_masks", "--quiet"]),
              "derive_masks (lung and vessels from HU thresholds) is a CT-only setting")
    _one_line(capsys, main(["prepare", str(mr_folder), str(tmp_path/"c"), "--modality", "mri", "--allow_odd_hu", "--quiet"]),
              "allow_odd_hu (the HU plausibility check) is a CT-only setting")
    assert not any((tmp_path/n).exists() for n in "abc")

def test_hu_window_on_mri_fails_in_one_line(mr_dataset):
    cfg = MedLSDMConfig.from_dict({**TINY, "train_samples": [str(mr_dataset)], "hu_window": [-1000., 1000.]})
    with pytest.raises(ValueError) as e: prepare_volume(load_case(f"{mr_dataset}#abdomen"), cfg)
    msg = str(e.value)
    assert "\n" not in msg and "hu_window=[-1000.0, 1000.0] is a CT-only setting" in msg and "leave hu_window unset" in msg, msg
    with pytest.raises(Exception, match="is a CT-only setting"): MedLSDMConfig.from_dict({**TINY, "modality": "mri", "hu_window": [-160, 240]})
    with pytest.raises(ValueError, match="the config says modality 'ct' but its manifest records 'mri'"):
        prepare_volume(load_case(f"{mr_dataset}#abdomen"), MedLSDMConfig.from_dict({**TINY, "modality": "ct"}))

def test_med_lsdm_smoke_on_mri(mr_dataset, tmp_path):
    "The med_lsdm system at tiny size, a few steps, trained and sampled on the prepared MR volume (modality read from the manifest)."
    spec = f"{mr_dataset}#abdomen"
    cfg = MedLSDMConfig.from_dict({**TINY, "train_samples": [str(mr_dataset)], "condition_sample": spec})
    run = train_all(cfg, tmp_path/"run", progress=False)
    assert run.vqgan_trainer.step == 2 and run.ldm.trainer.step == 2 and np.isfinite(run.history[-1][1])
    region = condition_region(load_case(spec, cfg.spacing), cfg)
    prep = prepare_volume(region, cfg)
    assert prep.modality == "mri" and -50 < prep.low < prep.high < 900, (prep.low, prep.high)    # body percentiles, not an HU window
    assert prep.classes.max() == len(LABELS) + 1                                             # the body class, from the MR signal
    x = generate(run.ldm.model, run.vqgan_trainer.model, run.ldm.scale_factor, cfg, prep, progress=False)
    assert x.shape == region.shape == (64, 64, 16) and np.isfinite(x).all()
    assert prep.low - 1e-3 <= x.min() and x.max() <= prep.high + 1e-3                        # back in the MR's signal units
