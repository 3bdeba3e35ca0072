"""Every library notebook as `nbdev_test` runs it, one pytest case each: cells flagged `#| slow`, `#| cuda` or
`#| notest` are skipped; MEDLORD_NB_FLAGS="slow" (`make slow`) forces the slow ones, "slow cuda" the GPU tier.

Not run by `make test` / CI unless asked for: tests/test_run_all.py executes EVERY cell of the same notebooks in a real
kernel (a superset of these cells), so running both would pay for each notebook twice (measurements in that file's
docstring). Ask for it with `make nbdev-test` (MEDLORD_NBDEV_TEST=1; the quick check while editing a notebook, no
kernel start) or `make slow` (MEDLORD_NB_FLAGS). `test_every_notebook_owns_a_module` always runs.
"""
import os
from pathlib import Path
import pytest
from nbdev.test import test_nb as _run_nb   # aliased so pytest does not collect it
from fastcore.basics import str2bool

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT/"nbs").glob("*.ipynb") if not p.name.startswith("_"))

def _flags():
    from configparser import ConfigParser
    cfg = ConfigParser(delimiters=["="]); cfg.read(ROOT/"settings.ini")
    return cfg["DEFAULT"]["tst_flags"].split()

_ASKED = bool(os.environ.get("MEDLORD_NBDEV_TEST") or os.environ.get("MEDLORD_NB_FLAGS"))

@pytest.mark.skipif(not _ASKED, reason="nbdev_test semantics run on request (`make nbdev-test`, `make slow`); "
                                       "CI runs every cell with tests/test_run_all.py")
@pytest.mark.parametrize("nb", NBS, ids=[p.stem for p in NBS])
def test_notebook(nb):
    force = os.environ.get("MEDLORD_NB_FLAGS", "").split()
    ok, secs = _run_nb(nb, skip_flags=_flags(), force_flags=force, basepath=ROOT)
    assert ok, f"{nb.name} failed (traceback above)"

def test_every_notebook_owns_a_module():
    import json
    exp = set()
    for nb in NBS:
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        srcs = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        if nb.stem == "index": continue
        de = [s for s in srcs if s.startswith("#| default_exp")]
        assert de, f"{nb.name} has no '#| default_exp' cell"
        exp.add(de[0].split()[-1])
    mods = {p.stem for p in (ROOT/"medlord_nb").glob("*.py") if not p.stem.startswith("_")}
    assert mods <= exp, f"modules without a notebook: {sorted(mods - exp)}"
