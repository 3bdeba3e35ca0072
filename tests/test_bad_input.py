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

def test_mask_on_another_grid(tmp_path, ct):
    small = _nii(np.zeros((12, 10, 6), np.uint8), tmp_path/"mask.nii.gz")
    with pytest.raises(ValueError, match="not on the grid") as e: m.load_image_and_mask(ct, small)
    assert "nearest" in str(e.value); _one_line(e)
    shifted = np.eye(4); shifted[0, 3] = 0.7
    moved = _nii(np.zeros((12, 10, 8), np.uint8), tmp_path/"moved.nii.gz", shifted)
    with pytest.raises(ValueError, match="affines differ"): m.load_image_and_mask(ct, moved)

def test_labels_outside_manifest(tmp_path, ct):
    lab = np.zeros((12, 10, 8), np.uint8); lab[2, 2, 2] = 42
    with pytest.raises(ValueError, match=r"\[42\]") as e: m.load_image_and_mask(ct, _nii(lab, tmp_path/"lab.nii.gz"))
    _one_line(e)

def test_unknown_sample():
    with pytest.raises(ValueError, match="lung1") as e: m.load_sample("lung3")
    _one_line(e)

def test_unknown_config_key():
    with pytest.raises(ConfigError, match="did you mean 'patch_size'"): DemoConfig.from_dict({"patch_szie": [8, 8, 8]})
    with pytest.raises(ConfigError, match="valid keys"): PatchDDPMConfig.from_dict({"learning_rate": 1e-3})

def test_wrong_config_type():
    with pytest.raises(ConfigError, match="expected an int"): PatchDDPMConfig.from_dict({"steps": "many"})

def test_condition_does_not_fit():
    import torch
    from medlord_nb.patch_ddpm import condition
    with pytest.raises(ValueError, match="num_classes"): condition(np.full((4, 4, 4), 5), 4)
