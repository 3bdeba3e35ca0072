#!/usr/bin/env python3
"""Build the embedded real-CT sample set shipped in `medlord_nb/samples/`.

Three real chest CTs with label maps, cut from two package SOURCE archives on pip's default index
(the wheels do not carry them):

* `cta`   - TotalSegmentator 2.18.0 (Apache-2.0): chest CT angiography `aorta_report/example_ct.nii.gz`
            with model-predicted heart, aorta and pulmonary-artery masks (placed by their affines).
* `lung1`, `lung2` - pyradiomics 3.1.0 (BSD-3-Clause): `data/lung{1,2}_image.nrrd` + `_label.nrrd`
            (label 1 = a lung nodule / tumour, manual).

Lung and pulmonary-vessel labels are derived from HU thresholds (see `derive_lung_vessels`).
Images are resampled with scipy.ndimage (anti-aliased trilinear) onto a coarser grid, cropped to the
body, stored as int16 HU / uint8 labels in gzipped NIfTI with a RAS affine, and described in
`manifest.json`. The output is byte-for-byte deterministic (gzip mtime 0, no file name in the header).

Usage (from the repo root):
    python data_scripts/build_samples.py [--cache data_cache] [--out medlord_nb/samples]
Archives missing from the cache are downloaded from pip's configured default index and checked
against the sha256 below; a mismatch is refused.
"""
from __future__ import annotations
import argparse, gzip, hashlib, html, io, json, os, re, sys, tarfile, tempfile, urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlparse

import numpy as np
import nibabel as nib
import SimpleITK as sitk
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# the HU-derived masks are the library's own (medlord_nb.data), so samples and user data are treated alike
from medlord_nb.data import AIR_HU, BODY_HU, VESSEL_HU, body_mask, outside_air, derive_lung_vessels

REPO = Path(__file__).resolve().parents[1]

LABELS = {0: "background", 1: "lung", 2: "vessels", 3: "nodule", 4: "heart", 5: "aorta", 6: "pulmonary_artery"}
LABEL_DESCRIPTIONS = {
    0: "background (everything else, including air outside the body)",
    1: "lung (derived from HU; includes the trachea and main bronchi where they connect to the lungs)",
    2: "pulmonary vessels (derived: bright voxels inside the lungs)",
    3: "nodule / tumour (manual mask from the source)",
    4: "heart (TotalSegmentator model prediction)",
    5: "aorta (TotalSegmentator model prediction)",
    6: "pulmonary artery (TotalSegmentator model prediction)",
}
# later entries overwrite earlier ones: nodule > aorta/pulmonary_artery/heart > vessels > lung
PRECEDENCE = ["lung", "vessels", "heart", "aorta", "pulmonary_artery", "nodule"]

SOURCES = {
    "totalsegmentator": dict(package="totalsegmentator", version="2.18.0", archive="totalsegmentator-2.18.0.tar.gz",
                             sha256="5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03",
                             licence="Apache-2.0", licence_member="totalsegmentator-2.18.0/LICENSE",
                             attribution="Wasserthal J. et al., TotalSegmentator: robust segmentation of 104 "
                                         "anatomic structures in CT images, Radiology: AI 2023"),
    "pyradiomics": dict(package="pyradiomics", version="3.1.0", archive="pyradiomics-3.1.0.tar.gz",
                        sha256="24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4",
                        licence="BSD-3-Clause", licence_member="pyradiomics-3.1.0/LICENSE.txt",
                        attribution="van Griethuysen J.J.M. et al., Computational Radiomics System to Decode "
                                    "the Radiographic Phenotype, Cancer Research 2017"),
}
TS = "totalsegmentator-2.18.0/tests/reference_files/"
SAMPLES = {
    "cta": dict(source="totalsegmentator", image=TS + "aorta_report/example_ct.nii.gz",
                masks={"heart": TS + "pulmonary_report/models/heart.nii.gz",
                       "aorta": TS + "aorta_report/test_result/models/aorta.nii.gz",
                       "pulmonary_artery": TS + "pulmonary_report/models/pulmonary_artery.nii.gz"},
                spacing=(2.0, 2.0, 2.0),
                description="chest CT angiography (contrast in the aorta and pulmonary arteries)"),
    "lung1": dict(source="pyradiomics", image="pyradiomics-3.1.0/data/lung1_image.nrrd",
                  masks={"nodule": "pyradiomics-3.1.0/data/lung1_label.nrrd"}, spacing=(1.5, 1.5, None),
                  description="chest CT, 5 mm slices, one ~14 mm lung nodule (manual mask)"),
    "lung2": dict(source="pyradiomics", image="pyradiomics-3.1.0/data/lung2_image.nrrd",
                  masks={"nodule": "pyradiomics-3.1.0/data/lung2_label.nrrd"}, spacing=(1.5, 1.5, None),
                  description="chest CT, 5 mm slices, one ~45 mm lung tumour (manual mask)"),
}
# HU thresholds of the derived labels
CROP_MARGIN_MM = 6.0

# ------------------------------------------------------------------------------------------------ I/O
def sha256_bytes(b: bytes) -> str: return hashlib.sha256(b).hexdigest()

def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""): h.update(chunk)
    return h.hexdigest()

def atomic_write(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f: f.write(data); f.flush(); os.fsync(f.fileno())
        os.chmod(tmp, 0o644)                                             # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp): os.unlink(tmp)
        raise

def index_page_url(package: str) -> str:
    "The package's page on pip's configured default index (no host name is written in this repo)."
    from pip._internal.models.index import PyPI
    return PyPI.simple_url.rstrip("/") + f"/{package}/"

def fetch_archive(src: dict, cache: Path) -> Path:
    "Return the cached source archive, downloading it from pip's default index if missing; check sha256."
    path = cache / src["archive"]
    if path.exists():
        got = sha256_file(path)
        if got != src["sha256"]:
            raise SystemExit(f"{path}: sha256 {got} != expected {src['sha256']}; delete the file and rerun")
        return path
    page = index_page_url(src["package"])
    print(f"downloading {src['archive']} (listed on {src['package']}'s index page) ...", flush=True)
    with urllib.request.urlopen(page, timeout=60) as r: text = r.read().decode("utf-8", "replace")
    url = None
    for href in re.findall(r'href="([^"]+)"', text):
        u = urljoin(page, html.unescape(href))
        if urlparse(u).path.rsplit("/", 1)[-1] == src["archive"]: url = u; break
    if url is None: raise SystemExit(f"no link to {src['archive']} on the index page of {src['package']}")
    with urllib.request.urlopen(url, timeout=600) as r: data = r.read()
    got = sha256_bytes(data)
    if got != src["sha256"]:
        raise SystemExit(f"downloaded {src['archive']} has sha256 {got}, expected {src['sha256']}; refusing it")
    atomic_write(path, data)
    return path

def read_members(archive: Path, members: list[str]) -> dict[str, bytes]:
    "Read only the named members of a .tar.gz into memory."
    out, want = {}, set(members)
    with tarfile.open(archive, "r:gz") as tf:
        for m in tf:
            if m.name in want and m.isfile(): out[m.name] = tf.extractfile(m).read()
    missing = want - set(out)
    if missing: raise SystemExit(f"{archive.name} lacks {sorted(missing)}")
    return out

def itk_to_ras(img: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    "SimpleITK image -> (array with axes X,Y,Z, 4x4 RAS affine). ITK's world is LPS: flip x and y."
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)              # ITK arrays are (z, y, x)
    D = np.array(img.GetDirection(), float).reshape(3, 3)
    aff = np.eye(4); aff[:3, :3] = D @ np.diag(img.GetSpacing()); aff[:3, 3] = img.GetOrigin()
    return arr, np.diag([-1., -1., 1., 1.]) @ aff

def read_volume_bytes(name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    "Decode a NIfTI (.nii.gz, via nibabel) or NRRD (via SimpleITK) member -> (array X,Y,Z, RAS affine)."
    if name.endswith(".nii.gz"):
        img = nib.Nifti1Image.from_bytes(gzip.decompress(data))
        return np.asanyarray(img.dataobj), img.affine.copy()
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / Path(name).name; p.write_bytes(data)
        return itk_to_ras(sitk.ReadImage(str(p)))

def nifti_gz_bytes(arr: np.ndarray, affine: np.ndarray, dtype, descrip: str) -> bytes:
    "Encode a NIfTI-1 image (qform = sform = affine, mm units) as deterministic gzip bytes (mtime 0)."
    img = nib.Nifti1Image(np.asarray(arr, dtype=dtype), affine)
    img.set_qform(affine, code=1); img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm"); img.header["descrip"] = descrip[:79].encode()
    return gzip.compress(img.to_bytes(), compresslevel=9, mtime=0)

# ----------------------------------------------------------------------------------------- resampling
# Why scipy.ndimage and not MONAI `Spacingd` or SimpleITK `Resample`: we define the target grid
# ourselves (voxel corners of the old and new grid coincide at the field-of-view edge), and
# `ndimage.affine_transform` samples exactly at the points the written affine describes, so image,
# labels and cropped source masks share one grid by construction. Downsampling 0.57 -> 1.5 mm with
# plain (tri)linear interpolation aliases (MONAI's grid_sample and ITK's linear resampler do not
# low-pass first), so the image is Gaussian-prefiltered with sigma = (factor - 1) / 2 voxels per axis,
# as skimage's `resize(anti_aliasing=True)` does. Labels use nearest neighbour. scipy is already a
# dependency; the result needs no torch.
def target_grid(shape, affine, new_spacing):
    "Grid with `new_spacing` (None keeps an axis) covering the same field of view; (shape, affine, zoom)."
    sp = np.sqrt((affine[:3, :3] ** 2).sum(0))
    new_sp = np.array([s if n is None else n for s, n in zip(sp, new_spacing)], float)
    zoom = new_sp / sp                                                   # source voxels per target voxel
    new_shape = tuple(int(round(n / z)) for n, z in zip(shape, zoom))
    M = np.eye(4); M[:3, :3] = np.diag(zoom); M[:3, 3] = 0.5 * zoom - 0.5  # target index -> source index
    return new_shape, affine @ M, zoom

def resample_to(arr, src_affine, tgt_affine, tgt_shape, order: int, cval=0.0):
    "Resample `arr` onto the target grid through world coordinates (order 0 = nearest, 1 = linear)."
    M = np.linalg.inv(src_affine) @ tgt_affine                           # target index -> source index
    return ndi.affine_transform(arr, M[:3, :3], offset=M[:3, 3], output_shape=tuple(tgt_shape),
                                order=order, mode="constant" if order == 0 else "nearest", cval=cval)

def resample_image(arr, src_affine, tgt_affine, tgt_shape, zoom):
    sigma = [max(0.0, (z - 1.0) / 2.0) for z in zoom]                  # anti-aliasing before downsampling
    x = arr.astype(np.float32)
    if any(s > 0 for s in sigma): x = ndi.gaussian_filter(x, sigma, mode="nearest", truncate=3.0)
    return resample_to(x, src_affine, tgt_affine, tgt_shape, order=1)

# ----------------------------------------------------------------------------------- derived labels
def to_ras(arr: np.ndarray, aff: np.ndarray):
    "Flip/permute array axes so they run towards R, A, S (nibabel's canonical orientation; lossless)."
    from nibabel.orientations import io_orientation, axcodes2ornt, ornt_transform, apply_orientation, inv_ornt_aff
    t = ornt_transform(io_orientation(aff), axcodes2ornt("RAS"))
    return np.ascontiguousarray(apply_orientation(arr, t)), aff @ inv_ornt_aff(t, arr.shape)

def compose_labels(masks: dict[str, np.ndarray], shape) -> np.ndarray:
    code = {v: k for k, v in LABELS.items()}
    lab = np.zeros(shape, np.uint8)
    for name in PRECEDENCE:
        if name in masks: lab[masks[name].astype(bool)] = code[name]
    return lab

# ------------------------------------------------------------------------------------------- build
def build_sample(name: str, spec: dict, members: dict[str, bytes]):
    src_arr, src_aff = read_volume_bytes(spec["image"], members[spec["image"]])
    D = src_aff[:3, :3] / np.sqrt((src_aff[:3, :3] ** 2).sum(0))
    if not np.allclose(np.abs(D), np.eye(3), atol=1e-4): raise SystemExit(f"{name}: oblique direction not supported")
    shape, aff, zoom = target_grid(src_arr.shape, src_aff, spec["spacing"])
    hu = resample_image(src_arr, src_aff, aff, shape, zoom)
    masks, placement = {}, {}
    for mname, member in spec["masks"].items():
        m, m_aff = read_volume_bytes(member, members[member])
        if m.shape != src_arr.shape or not np.allclose(m_aff, src_aff, atol=1e-3):
            placement[mname] = f"on its own grid {list(m.shape)} (cropped); placed by its affine"
        m_t = resample_to((m > 0).astype(np.uint8), m_aff, aff, shape, order=0) > 0
        masks[mname] = m_t
    # crop in-plane to the body (+ margin), keep every slice
    body = body_mask(hu)
    sp = np.sqrt((aff[:3, :3] ** 2).sum(0))
    margin = np.ceil(CROP_MARGIN_MM / sp).astype(int)
    idx = np.argwhere(body.any(2))
    lo = np.maximum(idx.min(0) - margin[:2], 0); hi = np.minimum(idx.max(0) + 1 + margin[:2], np.array(shape[:2]))
    sl = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(None))
    hu = hu[sl]; body = body[sl]; masks = {k: v[sl] for k, v in masks.items()}
    T = np.eye(4); T[:2, 3] = lo; aff = aff @ T
    hu_i16 = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
    lung, vessels, dinfo = derive_lung_vessels(hu_i16.astype(np.float32), sp, masks.get("nodule"))
    masks.update(lung=lung, vessels=vessels)
    labels = compose_labels(masks, hu_i16.shape)
    src_codes = "".join(nib.aff2axcodes(aff))
    mask_hu = {k: round(float(hu_i16[v].mean()), 1) for k, v in masks.items() if v.any()}   # image and masks on the same grid, before the flip
    (hu_i16, _), (labels, aff) = to_ras(hu_i16, aff), to_ras(labels, aff)
    return hu_i16, labels, aff, dict(source_axcodes=src_codes, placement=placement, derived=dinfo, crop_lo=[int(v) for v in lo],
                                     resampled_shape=list(shape), source_shape=list(src_arr.shape),
                                     source_spacing=[round(float(s), 6) for s in np.sqrt((src_aff[:3, :3] ** 2).sum(0))],
                                     mask_hu=mask_hu)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=str(REPO / "data_cache"), help="folder holding the source archives")
    ap.add_argument("--out", default=str(REPO / "medlord_nb" / "samples"), help="output folder")
    a = ap.parse_args(argv)
    cache, out = Path(a.cache), Path(a.out); cache.mkdir(parents=True, exist_ok=True)
    archives = {k: fetch_archive(s, cache) for k, s in SOURCES.items()}
    manifest = dict(
        description="Real chest CTs embedded in medlord_nb, built by data_scripts/build_samples.py from package "
                    "source archives on pip's default index. Image: int16 HU; labels: uint8; NIfTI-1, RAS affine.",
        label_convention={str(k): v for k, v in LABELS.items()},
        label_descriptions={str(k): v for k, v in LABEL_DESCRIPTIONS.items()},
        precedence="when labels overlap: nodule > aorta / pulmonary_artery / heart > vessels > lung "
                   "(written in the order " + ", ".join(PRECEDENCE) + "; later wins)",
        resampling="scipy.ndimage: image Gaussian-prefiltered (sigma = (zoom-1)/2 voxels) then trilinear; labels "
                   "nearest neighbour through world coordinates; 5 mm slices kept (no z resolution invented); "
                   "cropped in-plane to the body plus a 6 mm margin; array axes flipped to run towards R, A, S "
                   "(nibabel's canonical orientation, the one medlord_nb.data.load_volume returns)",
        derived_labels=dict(
            lung=f"air-like voxels (HU < {AIR_HU:g}) not connected to the in-plane border of their axial slice "
                 f"(i.e. inside the body), the largest 3D connected component plus the second largest if it holds "
                 f">= 15% of the largest and >= 50 mL, closed in-plane (3x3, 2 iterations) and hole-filled slice "
                 f"by slice so vessels inside are inside. Includes the trachea and main bronchi where they "
                 f"connect to the lungs.",
            vessels=f"voxels with HU > {VESSEL_HU:g} inside the lung mask eroded in-plane by one voxel (skips the "
                    f"partial-volume rim), excluding the nodule"),
        sources={k: {kk: vv for kk, vv in s.items()} for k, s in SOURCES.items()},
        samples={})
    for name, spec in SAMPLES.items():
        src = SOURCES[spec["source"]]
        members = read_members(archives[spec["source"]], [spec["image"], *spec["masks"].values()])
        hu, labels, aff, info = build_sample(name, spec, members)
        files = {"image": f"{name}_image.nii.gz", "labels": f"{name}_labels.nii.gz"}
        blobs = {"image": nifti_gz_bytes(hu, aff, np.int16, f"medlord-nb sample {name}: HU"),
                 "labels": nifti_gz_bytes(labels, aff, np.uint8, f"medlord-nb sample {name}: labels")}
        for k in files: atomic_write(out / files[k], blobs[k])
        sp = [round(float(s), 6) for s in np.sqrt((aff[:3, :3] ** 2).sum(0))]
        present = sorted(int(v) for v in np.unique(labels))
        counts = {LABELS[v]: int((labels == v).sum()) for v in present}
        mean_hu = {LABELS[v]: round(float(hu[labels == v].mean()), 1) for v in present}
        manifest["samples"][name] = dict(
            description=spec["description"], files=files, shape=list(hu.shape), spacing_mm=sp,
            affine=[[round(float(v), 6) for v in row] for row in aff], axcodes="".join(nib.aff2axcodes(aff)),
            label_names={str(v): LABELS[v] for v in present}, label_voxel_counts=counts,
            label_volume_ml={k: round(c * float(np.prod(sp)) / 1000, 1) for k, c in counts.items()},
            mean_hu_per_label=mean_hu, hu_range=[int(hu.min()), int(hu.max())],
            source=dict(package=src["package"], version=src["version"], archive=src["archive"],
                        archive_sha256=src["sha256"], licence=src["licence"], image_member=spec["image"],
                        mask_members=spec["masks"], source_shape=info["source_shape"],
                        source_spacing_mm=info["source_spacing"]),
            derivation=dict(source_axcodes=info["source_axcodes"], resampled_shape=info["resampled_shape"], crop_start_in_resampled_source_grid=info["crop_lo"],
                            mask_placement=info["placement"], lung_components=info["derived"],
                            mean_hu_in_full_source_masks=info["mask_hu"],
                            derived=["lung", "vessels"], from_source=list(spec["masks"])),
            sha256={k: sha256_bytes(b) for k, b in blobs.items()},
            bytes={k: len(b) for k, b in blobs.items()})
        print(f"{name}: shape {hu.shape} spacing {sp} HU [{hu.min()}, {hu.max()}] "
              f"image {len(blobs['image'])/1e6:.2f} MB labels {len(blobs['labels'])/1e6:.3f} MB")
        print("   mean HU per label:", mean_hu)
        print("   voxels per label: ", counts, "| lung components (mL):", info["derived"], info["placement"])
    atomic_write(out / "manifest.json", (json.dumps(manifest, indent=1) + "\n").encode())
    from build_mr_sample import write as write_mr                        # the MR sample (same archive) keeps its entry
    write_mr(out, archives["totalsegmentator"])
    total = sum(v for s in manifest["samples"].values() for v in s["bytes"].values())
    print(f"wrote {out} ({total/1e6:.2f} MB of NIfTI)")

if __name__ == "__main__":
    main()
