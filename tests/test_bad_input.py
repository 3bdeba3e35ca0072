"""Bad input ends in one clear line that says what is wrong and how to fix it (public API)."""
import gzip
from pathlib import Path
import numpy as np
import pytest
import nibabel as nib
import medlord_nb as m
from medlord_nb.core import ConfigError
from medlord_nb.presets import DemoConfig
from medlord_nb.patch_ddpm import PatchDDPMConfig

def _nii(arr, path, affine=np.eye(4)):
    nib.save(nib.Nifti1Image(arr, affine), str(path)); return path

def _one_line(excinfo): assert "\n" not in str(excinfo.value), str(excinfo.value)

@pytest.fixture
def ct(tmp_path):
    return _nii(np.random.default_rng(0).normal(-500, 100, (12, 10, 8)).astype(np.float32), tmp_path/"ct.nii.gz")

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file") as e: m.load_volume(tmp_path/"nope.nii.gz")
    _one_line(e)

def test_corrupt_gzip(tmp_path, ct):
    bad = tmp_path/"trunc.nii.gz"; bad.write_bytes(ct.read_bytes()[:200])
    with pytest.raises(ValueError) as e: m.load_volume(bad)
    assert "trunc.nii.gz" in str(e.value); _one_line(e)

def test_empty_file(tmp_path):
    p = tmp_path/"empty.nii.gz"; p.write_bytes(b"")
    with pytest.raises(ValueError, match="empty") as e: m.load_volume(p)
    _one_line(e)

def test_not_a_volume(tmp_path):
    p = _nii(np.zeros((10, 12), np.float32), tmp_path/"slice.nii.gz")
    with pytest.raises(ValueError, match="3D") as e: m.load_volume(p)
    _one_line(e)

def test_nan_voxels(tmp_path):
    a = np.zeros((6, 6, 6), np.float32); a[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN") as e: m.load_volume(_nii(a, tmp_path/"nan.nii.gz"))
    _one_line(e)

@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_voxels(tmp_path, value):
    a = np.zeros((6, 6, 6), np.float32); a[0, 1, 2] = value; a[3, 3, 3] = value
    with pytest.raises(ValueError, match="2 of 216 voxels are NaN or infinite") as e: m.load_volume(_nii(a, tmp_path/"inf.nii.gz"))
    assert "inf.nii.gz" in str(e.value) and "nan_to_num" in str(e.value); _one_line(e)

def test_inf_in_a_generated_volume(tmp_path):
    "Writing or scoring a volume with inf voxels is refused in one line too."
    from medlord_nb.evaluation import conditioning_report
    from medlord_nb.data import save_volume
    a = np.zeros((6, 6, 6), np.float32); a[2, 2, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or inf") as e: save_volume(tmp_path/"x.nii.gz", a, np.eye(4))
    _one_line(e); assert not (tmp_path/"x.nii.gz").exists()
    with pytest.raises(ValueError, match="NaN or inf") as e: conditioning_report(a, None, np.zeros(a.shape, np.uint8), {0: "bg"}, (1, 1, 1))
    _one_line(e)

def test_mask_on_another_grid(tmp_path, ct):
    small = _nii(np.zeros((12, 10, 6), np.uint8), tmp_path/"mask.nii.gz")
    with pytest.raises(ValueError, match="not on the grid") as e: m.load_image_and_mask(ct, small)
    assert "nearest" in str(e.value); _one_line(e)
    shifted = np.eye(4); shifted[0, 3] = 0.7
    moved = _nii(np.zeros((12, 10, 8), np.uint8), tmp_path/"moved.nii.gz", shifted)
    with pytest.raises(ValueError, match="affines differ") as e: m.load_image_and_mask(ct, moved)
    _one_line(e)

def test_mask_shape_mismatch_in_memory():
    with pytest.raises(ValueError, match=r"labels shape \(4, 4, 3\) != image shape \(4, 4, 4\)") as e:
        m.PatchSampler(np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 3), np.uint8), 2)
    assert "nearest-neighbour" in str(e.value); _one_line(e)

def test_labels_outside_manifest(tmp_path, ct):
    lab = np.zeros((12, 10, 8), np.uint8); lab[2, 2, 2] = 42
    with pytest.raises(ValueError, match=r"\[42\]") as e: m.load_image_and_mask(ct, _nii(lab, tmp_path/"lab.nii.gz"))
    _one_line(e)

def test_unknown_sample():
    with pytest.raises(ValueError, match="lung1") as e: m.load_sample("lung3")
    _one_line(e)

def test_unknown_config_key():
    with pytest.raises(ConfigError, match="did you mean 'patch_size'") as e: DemoConfig.from_dict({"patch_szie": [8, 8, 8]})
    _one_line(e)
    with pytest.raises(ConfigError, match="valid keys") as e: PatchDDPMConfig.from_dict({"learning_rate": 1e-3})
    _one_line(e)

def test_wrong_config_type():
    with pytest.raises(ConfigError, match="expected an int") as e: PatchDDPMConfig.from_dict({"steps": "many"})
    _one_line(e)

def test_condition_does_not_fit():
    from medlord_nb.patch_ddpm import condition
    with pytest.raises(ValueError, match="num_classes") as e: condition(np.full((4, 4, 4), 5), 4)
    _one_line(e)

@pytest.mark.parametrize("scale, what", [(1000, "outside the plausible HU range"), (0, "the volume is constant")])
def test_prepare_refuses_implausible_hu(tmp_path, capsys, scale, what):
    "HU x 1000 (a wrong rescale slope) or a constant volume: `medlord prepare` refuses in one line; --allow-odd-hu imports with a warning."
    from medlord_nb.cli import main
    from medlord_nb.data import make_phantom
    ph = make_phantom((24, 20, 12), seed=0)
    (tmp_path/"src").mkdir()
    _nii((ph.image * scale).astype(np.float32) if scale else np.full(ph.shape, -1000, np.float32), tmp_path/"src"/"a.nii.gz", ph.affine)
    _nii(ph.labels, tmp_path/"src"/"a_mask.nii.gz", ph.affine)
    assert main(["prepare", str(tmp_path/"src"), str(tmp_path/"out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert what in err and "--allow-odd-hu" in err and err.count("\n") == 1, err
    assert not (tmp_path/"out"/"manifest.json").exists()
    with pytest.warns(UserWarning, match="imported anyway"):
        assert main(["prepare", str(tmp_path/"src"), str(tmp_path/"out"), "--quiet", "--allow-odd-hu", "--force"]) == 0
    assert (tmp_path/"out"/"manifest.json").exists()
