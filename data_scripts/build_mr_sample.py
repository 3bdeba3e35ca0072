#!/usr/bin/env python3
"""Build the embedded real MRI sample `mr_abdomen` in `medlord_nb/samples/` (and its manifest entry).

The one real MRI with labels found in a package source archive: TotalSegmentator 2.18.0 (Apache-2.0)
ships `tests/reference_files/example_mr_sm.nii.gz` (MR abdomen, T1-like, 117x91x20 at 3 mm) and
`example_seg_mr.nii.gz` (its `total_mr` segmentation: 23 labels, a model prediction, not manual).

What is changed: both arrays are reoriented to RAS (nibabel's canonical orientation, the one
`medlord_nb.data.load_volume` returns), the image is stored as int16 scanner units (the source's own
dtype, values unchanged), the labels as uint8 with TotalSegmentator's `total_mr` values and names.
No resampling, no cropping: the volume is already small (~0.3 MB).

Usage (from the repo root):
    python data_scripts/build_mr_sample.py [--cache data_cache] [--out medlord_nb/samples]
The archive is shared with build_samples.py (same cache, same sha256 check); the script replaces only
the `mr_abdomen` entry of manifest.json and keeps the CT samples as they are. build_samples.py calls it
at its end, so a full rebuild keeps the MRI.
"""
from __future__ import annotations
import argparse, gzip, json, sys
from pathlib import Path
import numpy as np
import nibabel as nib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_samples import SOURCES, REPO, fetch_archive, read_members, nifti_gz_bytes, sha256_bytes, atomic_write

NAME = "mr_abdomen"
MEMBERS = {"image": "totalsegmentator-2.18.0/tests/reference_files/example_mr_sm.nii.gz",
           "labels": "totalsegmentator-2.18.0/tests/reference_files/example_seg_mr.nii.gz"}
# TotalSegmentator 2.18.0, totalsegmentator/map_to_binary.py, class_map["total_mr"] (the values this segmentation uses)
TOTAL_MR = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver", 6: "stomach", 7: "pancreas",
            8: "adrenal_gland_right", 9: "adrenal_gland_left", 10: "lung_left", 11: "lung_right", 12: "esophagus",
            13: "small_bowel", 14: "duodenum", 15: "colon", 16: "urinary_bladder", 17: "prostate", 18: "sacrum",
            19: "vertebrae", 20: "intervertebral_discs", 21: "spinal_cord", 22: "heart", 23: "aorta", 24: "inferior_vena_cava",
            25: "portal_vein_and_splenic_vein", 26: "iliac_artery_left", 27: "iliac_artery_right", 28: "iliac_vena_left",
            29: "iliac_vena_right", 30: "humerus_left", 31: "humerus_right", 32: "scapula_left", 33: "scapula_right",
            34: "clavicula_left", 35: "clavicula_right", 36: "femur_left", 37: "femur_right", 38: "hip_left", 39: "hip_right",
            40: "gluteus_maximus_left", 41: "gluteus_maximus_right", 42: "gluteus_medius_left", 43: "gluteus_medius_right",
            44: "gluteus_minimus_left", 45: "gluteus_minimus_right", 46: "autochthon_left", 47: "autochthon_right",
            48: "iliopsoas_left", 49: "iliopsoas_right", 50: "brain"}

def build(archive: Path) -> tuple[dict, dict[str, bytes]]:
    "The manifest entry and the two NIfTI blobs of the MR sample."
    members = read_members(archive, list(MEMBERS.values()))
    img, seg = (nib.Nifti1Image.from_bytes(gzip.decompress(members[MEMBERS[k]])) for k in ("image", "labels"))
    if img.shape != seg.shape or not np.allclose(img.affine, seg.affine, atol=1e-3):
        raise SystemExit("example_mr_sm and example_seg_mr are not on one grid; the archive changed")
    src_codes = "".join(nib.aff2axcodes(img.affine))
    img, seg = nib.as_closest_canonical(img), nib.as_closest_canonical(seg)
    x, lab, aff = np.asanyarray(img.dataobj), np.asanyarray(seg.dataobj).astype(np.uint8), img.affine
    if x.dtype != np.int16 or not np.array_equal(x, np.rint(x)): raise SystemExit(f"expected int16 scanner units, got {x.dtype}")
    present = sorted(int(v) for v in np.unique(lab))
    names = {v: ("background" if v == 0 else TOTAL_MR[v]) for v in present}
    blobs = {"image": nifti_gz_bytes(x, aff, np.int16, f"medlord-nb sample {NAME}: MR signal"),
             "labels": nifti_gz_bytes(lab, aff, np.uint8, f"medlord-nb sample {NAME}: labels")}
    sp = [round(float(s), 6) for s in np.sqrt((aff[:3, :3] ** 2).sum(0))]
    counts = {names[v]: int((lab == v).sum()) for v in present}
    src = SOURCES["totalsegmentator"]
    entry = dict(
        description="MR abdomen (T1-like), TotalSegmentator's MR test case, with its total_mr segmentation (model output)",
        modality="mri", files={"image": f"{NAME}_image.nii.gz", "labels": f"{NAME}_labels.nii.gz"},
        shape=list(x.shape), spacing_mm=sp, affine=[[round(float(v), 6) for v in row] for row in aff],
        axcodes="".join(nib.aff2axcodes(aff)), label_names={str(v): n for v, n in names.items()}, label_voxel_counts=counts,
        label_volume_ml={k: round(c * float(np.prod(sp)) / 1000, 1) for k, c in counts.items()},
        value_range=[int(x.min()), int(x.max())], units="MR signal (arbitrary scanner units, not HU)",
        source=dict(package=src["package"], version=src["version"], archive=src["archive"], archive_sha256=src["sha256"],
                    licence=src["licence"], image_member=MEMBERS["image"], mask_members={"labels": MEMBERS["labels"]},
                    source_shape=list(x.shape), source_spacing_mm=sp, label_map="totalsegmentator.map_to_binary.class_map['total_mr']"),
        derivation=dict(source_axcodes=src_codes, changes="reoriented to RAS; values and grid unchanged", derived=[],
                        from_source=["labels"]),
        sha256={k: sha256_bytes(b) for k, b in blobs.items()}, bytes={k: len(b) for k, b in blobs.items()})
    return entry, blobs

def write(out: Path, archive: Path) -> dict:
    "Write the MR sample's files into `out` and replace its entry in out/manifest.json."
    entry, blobs = build(archive)
    for k, f in entry["files"].items(): atomic_write(out / f, blobs[k])
    man = json.loads((out / "manifest.json").read_text())
    man["samples"][NAME] = entry
    man["description"] = man["description"].replace("Real chest CTs embedded", "Real chest CTs (and one MR abdomen, `mr_abdomen`) embedded") \
        if "mr_abdomen" not in man["description"] else man["description"]
    atomic_write(out / "manifest.json", (json.dumps(man, indent=1) + "\n").encode())
    print(f"{NAME}: shape {entry['shape']} spacing {entry['spacing_mm']} values {entry['value_range']} "
          f"{len(entry['label_names']) - 1} labels; image {entry['bytes']['image']/1e6:.2f} MB labels {entry['bytes']['labels']/1e6:.3f} MB")
    return entry

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=str(REPO / "data_cache"), help="folder holding the source archives")
    ap.add_argument("--out", default=str(REPO / "medlord_nb" / "samples"), help="output folder (holds manifest.json)")
    a = ap.parse_args(argv)
    cache = Path(a.cache); cache.mkdir(parents=True, exist_ok=True)
    write(Path(a.out), fetch_archive(SOURCES["totalsegmentator"], cache))

if __name__ == "__main__":
    main()
