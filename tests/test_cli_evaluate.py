"""`medlord evaluate`: two identical folders report FID ~0 and Dice 1 (issue acceptance); --reference/--samples/--masks/--training
with several paths, masks paired by stem, held-out cases from the references, --out never overwritten without --force."""
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

def _crop(s, x0, y0):
    sl = (slice(x0, x0 + 32), slice(y0, y0 + 32), slice(8, 16))       # 8 slices: too thin for 5-scale MS-SSIM
    lab = s.labels[sl].copy(); lab[(lab == 0) & (s.image[sl] > -500)] = 255   # the body outline `medlord sample` reads
    return s.image[sl], lab

def test_flags_masks_training_tiny(tmp_path, capsys):
    "--reference/--samples/--masks with several paths, masks paired by stem, --training: held-out = references not trained on."
    s = load_sample("lung1")
    crops = [_crop(s, x0, y0) for x0, y0 in ((40, 30), (100, 60), (70, 80), (60, 40), (90, 50), (50, 70))]
    for i in range(4):                                                       # 4 real cases with masks, 2 trained on
        save_volume(tmp_path/"real"/f"r{i}.nii.gz", crops[i][0], s.affine)
        save_volume(tmp_path/"real_masks"/f"r{i}_mask.nii.gz", crops[i][1], s.affine, dtype=np.uint8)
        if i < 2: save_volume(tmp_path/"train"/f"r{i}.nii.gz", crops[i][0], s.affine)
    # samples as `medlord sample` names them: caseA_000 is a copy of a training case
    for f, k in (("caseA_000", 0), ("caseA_001", 4), ("caseB_000", 5)):
        save_volume(tmp_path/("gen" if f != "caseB_000" else "gen2")/f"{f}.nii.gz", crops[k][0], s.affine)
    save_volume(tmp_path/"masks"/"caseA.nii.gz", crops[0][1], s.affine, dtype=np.uint8)
    save_volume(tmp_path/"masks"/"caseB.nii.gz", crops[5][1], s.affine, dtype=np.uint8)
    out = tmp_path/"m.json"
    rc = main(["evaluate", "--reference", str(tmp_path/"real"), "--samples", str(tmp_path/"gen"), str(tmp_path/"gen2"/"caseB_000.nii.gz"),
               "--masks", str(tmp_path/"masks"), "--reference_masks", str(tmp_path/"real_masks"), "--training", str(tmp_path/"train"),
               "--segmenter", "none", "--out", str(out)])          # the model-free protocols, whatever segmenter the package ships
    o = capsys.readouterr()
    assert rc == 0, o.err
    m = load_json(out)
    assert m["inputs"]["mask_pairing"] == "file stem"
    assert [Path(p).name for p in m["inputs"]["masks"]] == ["caseA.nii.gz", "caseA.nii.gz", "caseB.nii.gz"]
    assert m["mask_adherence"]["protocol"] == "mask-adherence-hu-v1" and m["mask_adherence"]["n_samples"] == 3
    assert m["fidelity"]["protocol"] == "fidelity-structure-v2" and "body" in m["fidelity"]["per_label"]
    assert "relative_volume" not in m["fidelity"]["per_label"]["lung"] and "soft tissue" in m["fidelity"]["per_label"]
    d = m["diversity"]["protocol_details"]
    assert (d["scales"], d["kernel_size"], d["scale_sides"]) == (2, 3, [8, 4])
    mem = m["memorisation"]
    assert mem["protocol_details"]["held_out_source"].startswith("the references that are not training cases")
    assert "2 of 4" in mem["protocol_details"]["held_out_source"] and mem["protocol_details"]["n_held_out"] == 2
    assert mem["flagged"] == [True, False, False], mem
    assert "--medicalnet" in m["skipped"]["fid"] and "--segmenter" in m["skipped"]["fid"]
    assert "skipped fid: no feature extractor: pass --medicalnet" in o.out and "memorisation 1 of 3 flagged" in o.out, o.out
    # --out is never overwritten without --force
    before = out.read_bytes()
    rc = main(["evaluate", "--reference", str(tmp_path/"real"), "--samples", str(tmp_path/"gen"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "exists; pass --force" in err, err
    assert out.read_bytes() == before
    rc = main(["evaluate", "--reference", str(tmp_path/"real"), "--samples", str(tmp_path/"gen"), "--out", str(out), "--force"])
    assert rc == 0 and load_json(out)["inputs"]["masks"] is None

def test_mask_pairing_fallback_and_mismatch(tmp_path, capsys):
    s = load_sample("lung1")
    for i, (n, mname) in enumerate((("x", "m2"), ("y", "m1"))):
        img, lab = _crop(s, 40 + 30 * i, 30)
        save_volume(tmp_path/"gen"/f"{n}.nii.gz", img, s.affine); save_volume(tmp_path/"masks"/f"{mname}.nii.gz", lab, s.affine, dtype=np.uint8)
    rc = main(["evaluate", "--reference", str(tmp_path/"gen"), "--samples", str(tmp_path/"gen"), "--masks", str(tmp_path/"masks"),
               "--out", str(tmp_path/"m.json")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert err.startswith("medlord evaluate: warning: ") and "sorted order" in err and err.count("\n") == 1, err
    assert load_json(tmp_path/"m.json")["inputs"]["mask_pairing"].startswith("sorted order")
    rc = main(["evaluate", "--reference", str(tmp_path/"gen"), "--samples", str(tmp_path/"gen"), "--masks", str(tmp_path/"masks"/"m1.nii.gz"),
               "--out", str(tmp_path/"m2.json")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no mask of the same file stem" in err, err
    assert not (tmp_path/"m2.json").exists()

def test_positional_alias_and_help(tmp_path, capsys):
    rc = main(["evaluate", str(tmp_path/"a"), str(tmp_path/"b"), "--masks", str(tmp_path/"m"), "--dry_run"])
    out = capsys.readouterr().out
    import yaml
    d = yaml.safe_load(out)
    assert rc == 0 and d["reference"] == [str(tmp_path/"a")] and d["samples"] == [str(tmp_path/"b")] and d["masks"] == [str(tmp_path/"m")]
    rc = main(["evaluate", "--reference", "r1", "r2", "--reference", "r3", "--samples", "s", "--dry_run"])
    assert rc == 0 and yaml.safe_load(capsys.readouterr().out)["reference"] == ["r1", "r2", "r3"]
    rc = main(["evaluate", "a", "b", "--samples", "c"])
    err = capsys.readouterr().err
    assert rc == 2 and "not both" in err and err.count("\n") == 1, err
    rc = main(["evaluate", "--reference", str(tmp_path/"nope"), "--samples", str(tmp_path/"nope"), "--out", str(tmp_path/"x.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "no such file or folder" in err and err.count("\n") == 1, err
    assert main(["evaluate", "--help"]) == 0
    h = capsys.readouterr().out
    assert "--reference PATHS --samples PATHS [--masks PATHS]" in h and "REFERENCE SAMPLES" in h and "--force" in h, h

# --- issue 14 item 4: sample metrics by default (tile FID, regional volumes, texture, soft tissue, composition, SSIM/PSNR) ---
import pytest
from scipy import ndimage
import medlord_nb.evaluation as evaluation
from medlord_nb.segmentation import SegConfig, train_segmenter

def _chest(s, x0=50, y0=0, z0=12):
    "A 64 x 64 x 16 chest crop (lung, vessels, chest wall, spine) with the body drawn as label 255, as `medlord sample` reads it."
    sl = (slice(x0, x0 + 64), slice(y0, y0 + 64), slice(z0, z0 + 16))
    lab = s.labels[sl].copy(); lab[(lab == 0) & (s.image[sl] > -500)] = 255
    return s.image[sl].copy(), lab

@pytest.fixture(scope="module")
def tiny_segmenter(tmp_path_factory):
    "A 3-step 3D segmenter checkpoint: a weak but valid encoder for tile FID (the shipped one may not exist)."
    p = tmp_path_factory.mktemp("seg")/"seg.pt"
    train_segmenter([load_sample("lung1")], SegConfig(steps=3, channels=(4, 8), patch_size=(16, 16, 16)), ckpt_path=p)
    return p

def _case(tmp_path, name, sample, real, lab, s, extra=()):
    "medlord evaluate on one sample against one real scan, its mask given; the metrics written."
    for d, img in (("real", real), ("gen", sample)): save_volume(tmp_path/name/d/"case.nii.gz", img, s.affine)
    save_volume(tmp_path/name/"masks"/"case.nii.gz", lab, s.affine, dtype=np.uint8)
    out = tmp_path/name/"m.json"
    rc = main(["evaluate", "--reference", str(tmp_path/name/"real"), "--samples", str(tmp_path/name/"gen"),
               "--masks", str(tmp_path/name/"masks"), "--out", str(out), *extra])
    assert rc == 0
    return load_json(out)

def test_constructed_cases(tmp_path, tiny_segmenter):
    "Identical, noisy, blurred and +100 HU samples of a real chest crop: each sample metric moves the way it must."
    s = load_sample("lung1"); real, lab = _chest(s)
    noisy = real + np.random.default_rng(0).normal(0, 50, real.shape).astype(np.float32)
    cases = {"identical": real, "noise": noisy, "blur": ndimage.gaussian_filter(real, (1, 1, 0)), "shift": real + 100}
    m = {k: _case(tmp_path, k, v, real, lab, s, ("--segmenter", str(tiny_segmenter))) for k, v in cases.items()}
    same = m["identical"]
    assert same["inputs"]["segmenter"].startswith("given: ")
    assert same["fid_tiles"]["protocol"] == "fid-selfseg-tiles-v1" and same["fid_tiles"]["n_tiles"]["samples"] >= 2
    assert same["fid_tiles"]["value"] < 1e-6 * m["noise"]["fid_tiles"]["value"], (same["fid_tiles"], m["noise"]["fid_tiles"])
    assert "not with published FIDs" in same["fid_tiles"]["protocol_details"]["comparable"]
    assert "fid_tiles works with one of each" in same["skipped"]["fid"]
    assert same["paired_similarity"]["protocol"] == "paired-ssim-psnr-v1"
    assert abs(same["paired_similarity"]["ssim"][0] - 1) < 1e-6 and same["paired_similarity"]["n_identical"] == 1
    assert same["fidelity"]["protocol"] == "fidelity-structure-v2"
    for k, v in same["fidelity"]["per_label"].items(): assert (v["wasserstein_hu"], v["texture_ratio"]) == (0.0, 1.0), (k, v)
    assert same["fidelity"]["protocol_details"]["soft_tissue_body"]["samples"] == "the mask's label 255 voxels"
    assert same["body_composition"]["protocol"] == "body-composition-hu-v1"
    assert set(same["body_composition"]["relative_difference"].values()) <= {0.0, None}
    ad = same["mask_adherence"]
    assert ad["protocol"] == "mask-adherence-segmenter-v1" and "relative_volume" in ad["protocol_details"]
    for k, v in ad["per_label"].items(): assert v["relative_volume"] == ad["reference"][k]["relative_volume"], k   # sample == real scan
    for region in ("lung", "soft tissue"):
        assert m["noise"]["fidelity"]["per_label"][region]["texture_ratio"] > 1.3, m["noise"]["fidelity"]["per_label"][region]
        assert m["blur"]["fidelity"]["per_label"][region]["texture_ratio"] < 0.9, m["blur"]["fidelity"]["per_label"][region]
    for k, v in m["shift"]["fidelity"]["per_label"].items():
        assert abs(v["wasserstein_hu"] - 100) < 1e-6 * 100 and abs(v["texture_ratio"] - 1) < 1e-9, (k, v)   # integer HU + 100: exact
    assert m["shift"]["body_composition"]["relative_difference"]["fat"] < -0.5
    ps = m["noise"]["paired_similarity"]
    assert 0 < ps["ssim"][0] < 1 and ps["psnr_db"][0] is not None

def test_shipped_segmenter_by_default(tmp_path, tiny_segmenter, monkeypatch):
    "No --segmenter: the shipped segmenter (core.pretrained_file) gives tile FID and adherence; '--segmenter none' turns it off."
    monkeypatch.setattr(evaluation, "pretrained_file", lambda name, role="weights": tiny_segmenter)
    s = load_sample("lung1"); real, lab = _chest(s)
    m = _case(tmp_path, "default", real + np.random.default_rng(1).normal(0, 30, real.shape).astype(np.float32), real, lab, s)
    assert m["inputs"]["segmenter"].startswith("shipped: seg.pt")
    assert m["fid_tiles"]["value"] > 0 and m["mask_adherence"]["protocol"] == "mask-adherence-segmenter-v1"
    for k in ("paired_similarity", "fidelity", "body_composition"): assert k in m, k
    off = _case(tmp_path, "off", real, real, lab, s, ("--segmenter", "none"))
    assert off["inputs"]["segmenter"].startswith("none (disabled") and "fid_tiles" in off["skipped"]
    assert off["mask_adherence"]["protocol"] == "mask-adherence-hu-v1"
    assert off["mask_adherence"]["per_label"]["lung"]["relative_volume"][0] > 0

def test_no_shipped_segmenter_falls_back(tmp_path, monkeypatch):
    "A package that ships no segmenter: the model-free metrics still run, and the skip reason says why."
    def none(name, role="weights"): raise FileNotFoundError(f"no pretrained model {name!r} ships with this medlord_nb; available: none")
    monkeypatch.setattr(evaluation, "pretrained_file", none)
    s = load_sample("lung1"); real, lab = _chest(s)
    m = _case(tmp_path, "none", real, real, lab, s)
    why = m["skipped"]["fid_tiles"]
    assert why.startswith("no segmenter: pass --segmenter") and "no pretrained model 'segmenter' ships" in why, why
    assert m["inputs"]["segmenter"].startswith("none: no pretrained model")
    assert m["mask_adherence"]["protocol"] == "mask-adherence-hu-v1"
    for k in ("paired_similarity", "fidelity", "body_composition"): assert k in m, k
