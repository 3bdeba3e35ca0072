"""The wheel carries the embedded sample data and the console script, so `pip install .` works offline."""
import subprocess, sys, zipfile, json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def test_wheel_contains_samples(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    whl = next(tmp_path.glob("medlord*.whl"))
    names = zipfile.ZipFile(whl).namelist()
    manifest = json.loads((ROOT/"medlord_nb/samples/manifest.json").read_text(encoding="utf-8"))
    for s in ("lung1", "lung2", "cta"):
        for kind in ("image", "labels"): assert f"medlord_nb/samples/{s}_{kind}.nii.gz" in names, (s, kind)
    assert "medlord_nb/samples/manifest.json" in names
    ep = [n for n in names if n.endswith("entry_points.txt")]
    assert ep and "medlord = medlord_nb.cli:main" in zipfile.ZipFile(whl).read(ep[0]).decode()

def test_top_level_exports_resolve():
    "Every name `medlord_nb` re-exports lazily exists in the module it points to."
    import importlib, medlord_nb
    for name, mod in medlord_nb._EXPORTS.items():
        assert hasattr(importlib.import_module(f"medlord_nb.{mod}"), name), (name, mod)
    assert "load_sample" in dir(medlord_nb)
