"""The committed tree is in sync: notebooks are clean, medlord_nb/ is what the notebooks export, and
README.md is what nbs/index.ipynb renders to. Each check runs on a copy, so it never edits the tree."""
import shutil, subprocess, sys, filecmp
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def _copy(tmp):
    for name in ("nbs", "medlord_nb", ".ci"):
        shutil.copytree(ROOT/name, tmp/name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    for name in ("settings.ini", "README.md"): shutil.copy(ROOT/name, tmp/name)
    return tmp

def _diff(a, b, pattern):
    bad = []
    for p in sorted(a.rglob(pattern)):
        if "__pycache__" in p.parts or ".ipynb_checkpoints" in p.parts: continue
        q = b/p.relative_to(a)
        if not q.exists() or not filecmp.cmp(p, q, shallow=False): bad.append(str(p.relative_to(a)))
    return bad

def test_notebooks_are_clean(tmp_path):
    t = _copy(tmp_path)
    subprocess.run([BIN/"nbdev_clean"], cwd=t, check=True, capture_output=True)
    subprocess.run([BIN/"nbdev_clean", "--fname", "nbs/experiments"], cwd=t, check=True, capture_output=True)
    bad = _diff(ROOT/"nbs", t/"nbs", "*.ipynb")
    assert not bad, f"notebooks not clean (run `make export` and commit): {bad}"

def test_library_matches_notebooks(tmp_path):
    t = _copy(tmp_path)
    subprocess.run([BIN/"nbdev_export"], cwd=t, check=True, capture_output=True)
    bad = _diff(t/"medlord_nb", ROOT/"medlord_nb", "*.py") + _diff(ROOT/"medlord_nb", t/"medlord_nb", "*.py")
    assert not bad, f"medlord_nb/ out of sync with nbs/ (run `make export` and commit): {sorted(set(bad))}"

def test_readme_matches_index(tmp_path):
    t = _copy(tmp_path)
    subprocess.run([sys.executable, ".ci/make_readme.py"], cwd=t, check=True, capture_output=True)
    assert (t/"README.md").read_text(encoding="utf-8") == (ROOT/"README.md").read_text(encoding="utf-8"), \
        "README.md is not what nbs/index.ipynb renders to: run `make export` (or python .ci/make_readme.py) and commit"
