"""The model zoo as a user meets it: every shipped model is checked against its sha256, loads, runs on the
held-out scan's mask, and is described by a model card; `medlord sample --pretrained` writes a volume with
the mask's affine. Small crops and few sampler steps keep this to seconds per model on a CPU."""
import hashlib, json
from pathlib import Path
import numpy as np
import pytest
import torch
from medlord_nb.core import pretrained_files, pretrained_entry, file_sha256
from medlord_nb.data import load_sample, save_volume, load_volume, body_mask, BODY_LABEL
from medlord_nb.zoo import load_pretrained, list_pretrained, KINDS

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT/"pretrained"/"manifest.json"
SHIPPED = {"segmenter": "segmenter", "patch_lung": "patch", "medlord_small": "medlord", "med_lsdm_small": "med_lsdm"}
CARD_FIELDS = ("trained on", "held out", "training grid", "labels it needs", "recipe", "commit", "steps", "device", "wall time",
               "data licence", "## Data", "## Recipe")

def man(): return json.loads(MANIFEST.read_text(encoding="utf-8"))

def test_the_zoo_ships_every_model_within_60_mb():
    m = man()["models"]
    assert {k: v["kind"] for k, v in m.items()} == SHIPPED
    total = sum(f["bytes"] for e in m.values() for f in e["files"].values())
    assert total <= 60e6, f"the zoo is {total / 1e6:.1f} MB; at most 60 MB ship"

@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_files_match_their_sha256_and_card(name):
    root, e = pretrained_entry(name)
    for role, f in e["files"].items():                                   # recomputed here, not through the cache
        p = root/f["path"]
        assert hashlib.sha256(p.read_bytes()).hexdigest() == f["sha256"] and p.stat().st_size == f["bytes"], (name, role)
    card = (root/e["card"]).read_text(encoding="utf-8")
    missing = [k for k in CARD_FIELDS if k not in card]
    assert not missing, f"{name}'s card lacks {missing}"
    assert e["held_out"] == ["lung2"] and "lung2" not in e["trained_on"]
    assert e["spacing_mm"] == [1.5, 1.5, 5.0]

def test_a_changed_byte_is_refused(tmp_path, monkeypatch):
    "A copy of the zoo with one flipped byte: load_pretrained refuses it with one line."
    import shutil
    from medlord_nb import core
    z = tmp_path/"pretrained"; shutil.copytree(ROOT/"pretrained"/"segmenter", z/"segmenter"); shutil.copy(MANIFEST, z/"manifest.json")
    monkeypatch.setattr(core, "shipped_dirs", lambda kind: [z])
    load_pretrained("segmenter")
    w = z/man()["models"]["segmenter"]["files"]["weights"]["path"]
    b = bytearray(w.read_bytes()); b[len(b) // 2] ^= 1; w.write_bytes(bytes(b))
    with pytest.raises(ValueError, match="sha256 does not match") as e: load_pretrained("segmenter")
    assert "\n" not in str(e.value)

@pytest.fixture(scope="module")
def lung2_crop(tmp_path_factory):
    "A 64 x 64 x 32 crop (the latent models' smallest) of the held-out lung2 through its tumour, mask with the body drawn (255), and its CT."
    d = tmp_path_factory.mktemp("crop")
    s = load_sample("lung2")
    c = [int(round(i.mean())) for i in np.nonzero(s.labels == 3)]
    st = [min(max(ci - n // 2, 0), N - n) for ci, n, N in zip(c, (64, 64, 32), s.shape)]
    sl = tuple(slice(a, a + n) for a, n in zip(st, (64, 64, 32)))
    aff = s.affine.copy(); aff[:3, 3] = s.affine[:3, :3] @ np.array(st, float) + s.affine[:3, 3]
    lab = s.labels[sl].copy(); lab[(lab == 0) & body_mask(s.image)[sl]] = BODY_LABEL
    save_volume(d/"mask.nii.gz", lab, aff); save_volume(d/"ct.nii.gz", s.image[sl], aff)
    return d, s.image[sl], s.labels[sl], aff

def test_segmenter_segments_the_held_out_scan():
    from medlord_nb.segmentation import segment
    from medlord_nb.evaluation import dice
    seg, s = load_pretrained("segmenter").model, load_sample("lung2")
    pred = segment(seg, s.image, spacing=s.spacing)
    d = dice(pred == 1, s.labels == 1)
    assert d > 0.9, d                                                   # the card says 0.95

@pytest.mark.parametrize("name", ["patch_lung", "medlord_small", "med_lsdm_small"])
def test_generators_sample_a_mask(name, lung2_crop):
    "Each generator samples the crop's mask with 2 steps: the volume's shape, finite HU in range, and the seed reproduces it."
    from medlord_nb.runner import get_system
    d, img, lab, aff = lung2_crop
    p = load_pretrained(name)
    S, cfg = get_system(p.kind), p.config.replace(num_inference_steps=2, device="cpu")
    cond = S.classes(cfg, lab, img, "crop")
    a = np.asarray(S.generate(p.model, cfg, cond, seed=3, progress=False))
    assert a.shape == lab.shape and np.isfinite(a).all() and a.min() >= -1024.5 and a.max() <= 3100, (a.shape, a.min(), a.max())
    assert np.array_equal(a, np.asarray(S.generate(p.model, cfg, cond, seed=3, progress=False)))

def test_medlord_sample_pretrained_cli(lung2_crop, tmp_path, monkeypatch, capsys):
    "The one line of the README: medlord sample --pretrained NAME MASK writes a volume with the mask's affine."
    from medlord_nb.cli import main
    d, img, lab, aff = lung2_crop
    monkeypatch.chdir(tmp_path)
    rc = main(["sample", "--pretrained", "patch_lung", str(d/"mask.nii.gz"), "--param", "num_inference_steps=2", "--quiet"])
    err = capsys.readouterr().err                     # the model conditions on bone: without a CT or a label 7 it says what to do
    assert rc == 2 and "bone (label 7)" in err and "--image" in err and len(err.strip().splitlines()) == 1, err
    rc = main(["sample", "--pretrained", "patch_lung", str(d/"mask.nii.gz"), "--image", str(d/"ct.nii.gz"), "--param", "num_inference_steps=2", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    v = load_volume(tmp_path/"samples"/"patch_lung"/"mask_000.nii.gz")
    assert v.shape == lab.shape and np.allclose(v.affine, aff, atol=1e-5)
    rc = main(["pretrained"])
    out = capsys.readouterr().out
    assert rc == 0 and all(n in out for n in SHIPPED), out
