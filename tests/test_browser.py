"""Notebooks in a real browser, as a reader sees them: JupyterLab + headless Chromium (Debian's `chromium`, driven by
the `playwright` Python package; playwright never downloads a browser of its own here).

For the viz lesson (nbs/02_viz.ipynb) and the demo (nbs/experiments/demo.ipynb, at its defaults: ~3 min on 2 CPU
cores) the test opens the notebook with `?reset`, runs Run All from the menu, waits until every code cell has run,
and asserts: no error output in the page (no traceback on stderr, no "Error displaying widget"), the slice-browser
widget rendered (`.medlord-slice-browser`, an ipywidgets box), and moving its slider with the keyboard changes the
image it shows (the PNG bytes behind the <img>).

JupyterLab runs on a free port, token-less, on a scratch copy of the two notebooks (plus settings.ini, so the
demo's `runs/` lands in the copy and autosave never touches the repository), with every Jupyter/IPython folder in a
tmp dir and `windowingMode: none` in an overrides.json there, so every cell is in the DOM. The kernel imports the
working copy of the library, like nbdev_test.

Missing Chromium or playwright skips with one line; `make browser-deps` (run by `make test`) installs both where it
can (apt as root, pip from the dev extras).
"""
import json, os, re, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("MEDLORD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
NOTEBOOKS = {"viz": ("nbs/02_viz.ipynb", 600), "demo": ("nbs/experiments/demo.ipynb", 1800)}   # name: (path, hang guard s)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions"]

def _requirements() -> str|None:
    "Why this machine cannot run the test, in one line, or None."
    try: import playwright.sync_api  # noqa: F401
    except ImportError: return "playwright is not installed (pip install -e '.[dev]'; `make browser-deps`)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium as root; `make browser-deps`; or set MEDLORD_CHROMIUM)"
    return None

_why = _requirements()
pytestmark = pytest.mark.skipif(_why is not None, reason=f"browser test skipped: {_why}")

BROKEN = "nbs/_broken.ipynb"         # the check itself: a notebook whose second cell fails

def _broken_notebook() -> dict:
    cell = lambda i, src: {"cell_type": "code", "execution_count": None, "id": f"cell{i}", "metadata": {}, "outputs": [], "source": src}
    return {"cells": [cell(1, "print('fine')"), cell(2, "raise ValueError('deliberately broken')"), cell(3, "print('never runs')")],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    "A token-less JupyterLab on a free port over a scratch copy of the notebooks; yields its base URL and the copy."
    tmp = tmp_path_factory.mktemp("lab")
    tree = tmp/"repo"
    for rel in ["settings.ini", *(p for p, _ in NOTEBOOKS.values())]:
        (tree/rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT/rel, tree/rel)
    (tree/BROKEN).write_text(json.dumps(_broken_notebook()), encoding="utf-8")
    app_settings = tmp/"lab-settings"              # JupyterLab's app settings dir: overrides.json lives here
    default = Path(sys.prefix)/"share"/"jupyter"/"lab"/"settings"
    if default.is_dir(): shutil.copytree(default, app_settings)
    app_settings.mkdir(exist_ok=True)
    (app_settings/"overrides.json").write_text(json.dumps(
        {"@jupyterlab/notebook-extension:tracker": {"windowingMode": "none",          # every cell in the DOM
                                                    "autoStartDefaultKernel": True},  # no "Select Kernel" dialog
         "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
         "@jupyterlab/docmanager-extension:plugin": {"autosave": False}}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items()                       # a reader's kernel: a live front end
           if k not in ("CI", "MEDLORD_NB_HEADLESS", "IN_TEST", "PAPERMILL_EXECUTION", "MPLBACKEND", "JPY_SESSION_NAME")}
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTERLAB_SETTINGS_DIR", "user-settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                     ("IPYTHONDIR", "ipython")):
        env[var] = str(tmp/sub)                                      # nothing written into the user's home
    env.update(CUDA_VISIBLE_DEVICES="", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    port = _free_port()
    log = open(tmp/"jupyter.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                             "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
                             "--allow-root", f"--ServerApp.root_dir={tree}", f"--LabApp.app_settings_dir={app_settings}",
                             "--LabApp.news_url=", "--ServerApp.open_browser=False"],
                            cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if proc.poll() is not None: break
            try:
                urllib.request.urlopen(f"{base}/api/status", timeout=2); break
            except OSError: time.sleep(0.5)
        else: pytest.fail(f"JupyterLab did not answer on {base} in 60 s; log: {tmp/'jupyter.log'}")
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited ({proc.returncode}):\n{(tmp/'jupyter.log').read_text()[-3000:]}")
        yield base, tree, tmp/"jupyter.log"
    finally:
        proc.terminate()
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()

@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try: yield b
        finally: b.close()

_STATE_JS = r"""() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!nb) return null;
  const prompts = [...nb.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent.trim());
  const errors = [...nb.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
      .map(e => e.textContent).filter(t => /Traceback \(most recent call last\)|^\s*\w*(Error|Exception)\b[^\n]*:/m.test(t));
  const widgetErrors = [...nb.querySelectorAll('.jp-OutputArea-output')].map(e => e.textContent)
      .filter(t => t.includes('Error displaying widget') || t.includes('Error rendering output'));
  const idle = [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(e => /\| Idle$/.test(e.textContent.trim()));
  return {prompts, errors: errors.concat(widgetErrors), status: idle ? 'idle' : 'busy'};
}"""

_IDLE_JS = r"""() => [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(e => /\| Idle$/.test(e.textContent.trim()))"""

def _menu(page, top:str, item:str):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{top}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).first.click()

def run_all(page, base:str, rel:str, budget:int) -> dict:
    "Open `rel` in JupyterLab, Run All from the menu, wait until every code cell ran (or an error shows); the final state."
    page.goto(f"{base}/lab/tree/{rel}?reset")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-CodeCell", timeout=60_000)
    page.wait_for_function(_IDLE_JS, timeout=60_000)           # the kernel is up
    dialog = page.locator(".jp-Dialog button.jp-mod-accept")   # a kernel dialog, should one still come: accept the python3 kernel
    if dialog.count(): dialog.first.click()
    _menu(page, "Run", "Run All Cells")
    t0, st = time.time(), None
    while time.time() - t0 < budget:
        st = page.evaluate(_STATE_JS)
        if st and st["errors"]: return st
        if st and st["prompts"] and all(re.fullmatch(r"\[\d+\]:", p) for p in st["prompts"]) and st["status"] == "idle": return st
        page.wait_for_timeout(1000)
    raise AssertionError(f"{rel}: Run All did not finish in {budget} s; prompts {st and st['prompts']}")

def _img_bytes(img) -> list:
    "Length and a hash of the bytes behind an <img> (its blob: or data: URL), read by the page itself."
    return img.evaluate("""async (el) => { const b = new Uint8Array(await (await fetch(el.src)).arrayBuffer());
                             let h = 0; for (const x of b) h = (h * 31 + x) >>> 0; return [b.length, h]; }""")

def check_slice_browser(page, rel:str):
    "The first slice browser rendered as a widget; the keyboard moves its slider; the image changes with it."
    box = page.locator(".jp-OutputArea-output .jupyter-widgets.medlord-slice-browser").first
    box.wait_for(state="visible", timeout=30_000)
    box.scroll_into_view_if_needed()
    img, readout = box.locator("img.medlord-slice-image"), box.locator(".widget-readout").first
    img.wait_for(state="visible", timeout=30_000)
    page.wait_for_function("(el) => el.complete && el.naturalWidth > 0", arg=img.element_handle(), timeout=30_000)
    before, value = _img_bytes(img), readout.inner_text().strip()
    shot = img.screenshot()
    handle = box.locator(".noUi-handle").first
    handle.focus()
    for _ in range(3): page.keyboard.press("ArrowRight")
    page.wait_for_function("([el, v]) => el.textContent.trim() !== v", arg=[readout.element_handle(), value], timeout=15_000)
    for _ in range(60):                                        # the kernel redraws, the new PNG comes back
        if _img_bytes(img) != before: break
        page.wait_for_timeout(500)
    after = _img_bytes(img)
    assert after != before, f"{rel}: slider moved {value} -> {readout.inner_text().strip()} but the image did not change"
    assert img.screenshot() != shot, f"{rel}: the image bytes changed but the rendered picture did not"
    return value, readout.inner_text().strip()

@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_run_all_in_jupyterlab(name, lab, browser):
    base, tree, log = lab
    rel, budget = NOTEBOOKS[name]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        t0 = time.time()
        st = run_all(page, base, rel, budget)
        assert not st["errors"], f"{rel}: error output in JupyterLab after {time.time() - t0:.0f} s:\n" + "\n---\n".join(
            e[-1500:] for e in st["errors"][:2])
        n = page.locator(".jp-OutputArea-output .jupyter-widgets.medlord-slice-browser").count()
        assert n >= 1, f"{rel}: no slice browser (.medlord-slice-browser) rendered"
        moved = check_slice_browser(page, rel)
        page.locator(".medlord-slice-browser").first.screenshot(path=str(log.parent/f"{name}-slice-browser.png"))
        print(f"{rel}: Run All {time.time() - t0:.0f} s, {n} slice browser(s), slider {moved[0]} -> {moved[1]}")
    except Exception:
        page.screenshot(path=str(log.parent/f"{name}-failure.png"), full_page=True)
        raise
    finally:
        page.close()

def test_error_output_is_caught(lab, browser):
    "A notebook that raises: Run All stops there and the test sees the error output (so a clean run above means something)."
    base, _, _ = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        st = run_all(page, base, BROKEN, 120)
        assert st["errors"] and "deliberately broken" in st["errors"][0], st
        for _ in range(60):                      # the error shows first; JupyterLab then clears the queued cell's "[*]:"
            if st["status"] == "idle" and "[*]:" not in st["prompts"]: break
            page.wait_for_timeout(500); st = page.evaluate(_STATE_JS)
        assert st["prompts"][0] == "[1]:" and st["prompts"][2] == "[ ]:", st["prompts"]    # Run All stopped at the error
    finally:
        page.close()
