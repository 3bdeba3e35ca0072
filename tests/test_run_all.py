"""Run All, as a reader's JupyterLab or papermill does it: every cell of every notebook, one pytest case each.

What it does, per notebook (nbs/*.ipynb except `_`-prefixed scratch, and nbs/experiments/*.ipynb):
- executes EVERY cell with papermill (nbclient underneath) and the venv's own `python3` kernel: nbdev's
  `#| slow`, `#| cuda`, `#| notest` and `#| eval: false` mean nothing here, as they mean nothing to Run All;
- with no GPU visible (CUDA_VISIBLE_DEVICES=""), MPLBACKEND=Agg, and a per-cell timeout
  (MEDLORD_RUN_ALL_TIMEOUT seconds, 900 by default: a guard against hangs, not a speed test);
- in a scratch copy of the working tree (tracked and untracked-but-not-ignored files) whose `nbs/` folder is the
  kernel's cwd, so relative paths behave as in JupyterLab, while nothing a notebook writes (an `nbdev_export()`
  cell, a figure, a run directory) lands in the repository; the copy is first on the kernel's PYTHONPATH, so
  the notebooks import the working copy of the library, as nbdev_test does;
- experiment notebooks get `out_dir` (their runner parameter) pointing under pytest's tmp folder and otherwise run
  at their own defaults, as `medlord run NAME` does; the demo and the utility study, whose defaults are minutes of
  training, run at smoke size here (the demo's defaults run in tests/test_browser.py, see SMOKE);
- fails with the first error output: the cell index and id, `ename: evalue`, the cell's first lines and the end
  of the traceback. Error outputs and stderr streams that carry a Python traceback both count (a widget
  callback that fails prints its traceback to stderr without stopping the run). The executed notebook's path
  is in the message.

How it relates to tests/test_notebooks.py (nbdev's `test_nb`, skipping the `slow cuda notest` cells): Run All
executes a superset of those cells with the same imports, so CI would pay for every library notebook twice. Measured
side by side here (issue 12; 2 shared cores at load 6-12, so CPU seconds of pytest plus its kernel are the fairer
number): over the 17 notebooks 00_core..14_evaluation nbdev_test took 720 CPU-s (1955 s wall), Run All 723 CPU-s
(1828 s wall). A kernel start costs ~4 CPU-s per notebook; the flagged cells add little once a GPU-only cell checks for
the GPU itself. So `make test` / CI runs THIS test, and nbdev_test semantics run on request: `make nbdev-test`
(MEDLORD_NBDEV_TEST=1, the quick check while editing a notebook) and `make slow` (MEDLORD_NB_FLAGS="slow").
"""
import os, re, shutil, subprocess, sys, time
from pathlib import Path
import pytest

pm = pytest.importorskip("papermill", reason="papermill is a core requirement: pip install -e '.[dev]'")
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NBS = (sorted(p for p in (ROOT/"nbs").glob("*.ipynb") if not p.name.startswith("_"))
       + sorted(p for p in (ROOT/"nbs"/"experiments").glob("*.ipynb") if not p.name.startswith("_")))
CELL_TIMEOUT = int(os.environ.get("MEDLORD_RUN_ALL_TIMEOUT", "900"))
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PM_TAGS = {"papermill-error-cell-tag", "injected-parameters"}    # cells papermill adds to the executed copy
_SKIP_DIRS = {".git", ".venv", "runs", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", "build", "dist", "_docs", "_proc"}

def _working_tree(root:Path) -> list[Path]:
    "The files of the working tree: tracked plus untracked-but-not-ignored (git), else everything outside caches."
    try:
        out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=root, capture_output=True, check=True)
        return [Path(p) for p in out.stdout.decode().split("\0") if p and (root/p).is_file()]
    except (OSError, subprocess.CalledProcessError):
        return [p.relative_to(root) for p in root.rglob("*")
                if p.is_file() and not _SKIP_DIRS & set(p.relative_to(root).parts) and not p.name.endswith(".egg-info")]

@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    "A scratch copy of the working tree (13 MB, well under a second) that the notebooks run in and may write into."
    dst = tmp_path_factory.mktemp("run_all")/"repo"
    for rel in _working_tree(ROOT):
        (dst/rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT/rel, dst/rel)
    return dst

def _one_line(s:str, n:int=300) -> str:
    s = " ".join(_ANSI.sub("", s).split())
    return s if len(s) <= n else s[:n] + " ..."

def first_error(nb) -> str|None:
    "The first error output of an executed notebook (cell index, id, ename: evalue, source head, traceback tail), or None."
    cells = [c for c in nb.cells if not _PM_TAGS & set(c.get("metadata", {}).get("tags", []))]
    for i, c in enumerate(cells):        # numbered as in the source notebook: papermill's own cells left out
        if c.cell_type != "code": continue
        for o in c.get("outputs", []):
            if o.output_type == "error":
                ename, evalue, tb = o.get("ename", "?"), o.get("evalue", ""), o.get("traceback", [])
            elif o.output_type == "stream" and o.get("name") == "stderr" and "Traceback (most recent call last)" in o.get("text", ""):
                text = _ANSI.sub("", o.text).rstrip().splitlines()
                last = next((l for l in reversed(text) if l.strip()), "")
                ename, _, evalue = last.partition(": ")
                ename, tb = f"stderr traceback: {ename}", text
            else: continue
            src = "\n".join("    " + l for l in c.source.splitlines()[:4])
            tail = "\n".join("    " + l for l in _ANSI.sub("", "\n".join(tb)).rstrip().splitlines()[-8:])
            return f"cell {i} (id {c.get('id', '?')}): {ename}: {_one_line(evalue)}\n  source:\n{src}\n  traceback (end):\n{tail}"
    return None

def run_all(nb_path:Path, # the notebook to execute (inside the scratch tree)
            out_path:Path, # where the executed notebook goes
            params:dict|None=None, # papermill parameters (injected after the `parameters` cell)
            timeout:int=CELL_TIMEOUT, # per-cell timeout (s)
           ):
    "Execute every cell as Run All does; returns (executed notebook, the first error or None, seconds)."
    t0 = time.time()
    try:
        pm.execute_notebook(str(nb_path), str(out_path), parameters=params or {}, kernel_name="python3", language="python",
                            cwd=str(nb_path.parent), execution_timeout=timeout, progress_bar=False, log_output=False)
        err = None
    except pm.PapermillExecutionError:
        err = None    # the same error is in the executed notebook's outputs; read it from there (first one wins)
    except Exception as e:   # a kernel that died, a timeout, a notebook papermill cannot read
        err = f"{type(e).__name__}: {_one_line(str(e), 600)}"
    nb = nbformat.read(out_path, as_version=4) if out_path.exists() else None
    err = (first_error(nb) if nb is not None else None) or err
    return nb, err, time.time() - t0

# The one experiment whose defaults are not the CPU smoke size: the demo trains 400 steps (~3 min) by default. Its
# defaults run in tests/test_browser.py (JupyterLab, the reader's path); here it runs at the smoke size that
# tests/test_experiments.py also uses. Every other notebook runs at its own defaults.
SMOKE = {"demo": {"train_steps": 3, "sampler_steps": 2, "pretrained_steps": 2},
         # the study's default is ~6 minutes on 2 cores; here its whole pipeline at few steps (tests/test_utility_study.py runs it on a prepared dataset)
         # (its patch-DDPM path runs in tests/test_utility_study.py on a prepared dataset; here MedLoRD alone generates)
         "utility_study": {"seg_steps": 12, "seg_channels": [4, 8, 16], "seg_patch_size": [64, 64, 48], "generators": ["medlord_small"],
                           "latent_steps": 2, "n_worst": 1, "n_boot": 200, "n_shapes": 2}}

def _params(nb_path:Path, runs:Path) -> dict:
    "Experiment notebooks write their run under `runs` (their `out_dir` parameter); everything else runs as it is."
    names = pm.inspect_notebook(str(nb_path))
    if "out_dir" not in names: return {}
    return {**SMOKE.get(nb_path.stem, {}), "out_dir": str(runs/nb_path.stem)}

@pytest.fixture
def kernel_env(monkeypatch, tree):
    "What the kernel inherits: no GPU, Agg plots, the scratch tree's library first on the path."
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.delenv("MEDLORD_NB_HEADLESS", raising=False)    # the notebooks must cope without being told

@pytest.mark.parametrize("nb", NBS, ids=[str(p.relative_to(ROOT/"nbs").with_suffix("")) for p in NBS])
def test_run_all(nb, tree, kernel_env, tmp_path):
    rel = nb.relative_to(ROOT)
    src = tree/rel
    out = tmp_path/f"{nb.stem}.executed.ipynb"
    _, err, secs = run_all(src, out, _params(src, tmp_path/"runs"))
    if err: pytest.fail(f"{rel}: Run All failed after {secs:.0f} s at {err}\n  executed notebook: {out}", pytrace=False)

def test_catches_a_broken_notebook(tree, kernel_env, tmp_path):
    "The check itself: an error that stops the run and a traceback on stderr that does not are both reported, with the cell."
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("#| cuda\nx = 1"),
                nbformat.v4.new_code_cell("import sys, traceback\ntry: 1/0\nexcept ZeroDivisionError: traceback.print_exc()"),
                nbformat.v4.new_code_cell("raise ValueError('deliberately broken')")]
    p = tmp_path/"broken.ipynb"; nbformat.write(nb, p)
    _, err, _ = run_all(p, tmp_path/"broken.out.ipynb", timeout=60)
    assert err and err.startswith("cell 1 ") and "ZeroDivisionError" in err, err       # stderr traceback, run went on
    nb.cells.pop(1); nbformat.write(nb, p)
    _, err, _ = run_all(p, tmp_path/"broken.out.ipynb", timeout=60)
    assert err and err.startswith("cell 1 ") and "ValueError: deliberately broken" in err, err
