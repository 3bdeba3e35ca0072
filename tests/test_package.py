"""The wheel carries the embedded sample data and the console script, so `pip install .` works offline."""
import os, subprocess, sys, zipfile, json
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def _have_setuptools(minimum=64):
    "True when this interpreter has the setuptools that pyproject.toml's build-system asks for."
    try: import setuptools
    except ImportError: return False
    return int(setuptools.__version__.split(".")[0]) >= minimum

@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    "The wheel `pip install .` would install, built once for this module (no dependencies; offline when the venv has setuptools)."
    d = tmp_path_factory.mktemp("wheel")
    flags = ["--no-build-isolation"] if _have_setuptools() else []     # the venv's setuptools: seconds, offline
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *flags, "-q", "-w", str(d), str(ROOT)],
                   check=True, capture_output=True)
    return next(d.glob("medlord*.whl"))

def test_wheel_contains_samples(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    manifest = json.loads((ROOT/"medlord_nb/samples/manifest.json").read_text(encoding="utf-8"))
    for s in ("lung1", "lung2", "cta"):
        assert s in manifest["samples"], s
        for kind in ("image", "labels"): assert f"medlord_nb/samples/{s}_{kind}.nii.gz" in names, (s, kind)
    assert "medlord_nb/samples/manifest.json" in names
    ep = [n for n in names if n.endswith("entry_points.txt")]
    assert ep and "medlord = medlord_nb.cli:main" in zipfile.ZipFile(wheel).read(ep[0]).decode()

def test_clean_install_loads_a_sample(wheel, tmp_path):
    "Issue 2's acceptance line, automated: install the wheel alone into an empty folder and load lung1 from outside the repo."
    target, elsewhere = tmp_path/"site", tmp_path/"elsewhere"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import medlord_nb as m; s = m.load_sample('lung1'); print(s.image.shape, s.spacing, s.label_names); "
            "print('FROM', m.__file__)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONPATH=str(target), PYTHONNOUSERSITE="1")
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, where = out.stdout.splitlines()[:2]
    assert where.startswith(f"FROM {target}"), where          # the installed copy, not the editable checkout
    assert first.startswith("(195, 149, 48) (1.5, 1.5, 5.0) {0: 'background', 1: 'lung', 2: 'vessels', 3: 'nodule'}"), first

def test_top_level_exports_resolve():
    "Every name `medlord_nb` re-exports lazily exists in the module it points to."
    import importlib, medlord_nb
    for name, mod in medlord_nb._EXPORTS.items():
        assert hasattr(importlib.import_module(f"medlord_nb.{mod}"), name), (name, mod)
    assert "load_sample" in dir(medlord_nb)
