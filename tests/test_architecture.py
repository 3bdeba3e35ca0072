"""The house of ../shared/ARCHITECTURE.md, held by a test: floors, who may import whom, no circles, no imports
hidden inside functions, notebooks in dependency order, and modules of a readable size."""
import ast, json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT/"medlord_nb"

FLOORS = {  # room -> floor (ARCHITECTURE.md)
    "core": 0,
    "data": 1, "viz": 1,
    "schedules": 2, "samplers": 2, "unet": 2, "lean": 2, "conditioning": 2, "vqgan": 2, "lsdm_nets": 2, "memtrack": 2,
    "training": 3, "fullres": 3, "latents": 3, "segmentation": 3, "datasets": 3,
    "memory": 4, "evaluation": 4,
    "patch_ddpm": 5, "latent_diffusion": 5, "zoo": 5,
    "utility": 6,
    "presets": 7, "runner": 7, "report": 7, "cli": 7,
}
SYSTEMS = {"patch_ddpm", "latent_diffusion", "zoo"}       # a system never imports another system (the zoo loads them all)

def rooms():
    return sorted(p.stem for p in LIB.glob("*.py") if not p.stem.startswith("_"))

def _target(node, module):
    "medlord_nb rooms an import node names."
    out = []
    if isinstance(node, ast.ImportFrom):
        mod = node.module or ""
        if node.level == 1: mod = f"medlord_nb.{mod}" if mod else "medlord_nb"
        if mod == "medlord_nb": out += [a.name for a in node.names if a.name in FLOORS]
        elif mod.startswith("medlord_nb."): out.append(mod.split(".")[1])
    elif isinstance(node, ast.Import):
        out += [a.name.split(".")[1] for a in node.names if a.name.startswith("medlord_nb.") and a.name.split(".")[1] in FLOORS]
    return [r for r in out if r != module and not r.startswith("_")]

def imports(module):
    "(top-level imports, imports inside functions) of a room, as room names."
    tree = ast.parse((LIB/f"{module}.py").read_text(encoding="utf-8"))
    top, inner = set(), []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)): top |= set(_target(node, module))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)): inner += [(node.name, r) for r in _target(sub, module)]
    return top, inner

def test_every_room_has_a_floor():
    assert set(rooms()) <= set(FLOORS), f"rooms without a floor in ARCHITECTURE.md: {sorted(set(rooms()) - set(FLOORS))}"

@pytest.mark.parametrize("module", rooms())
def test_imports_go_down_or_across(module):
    top, inner = imports(module)
    up = [r for r in top if FLOORS[r] > FLOORS[module]]
    assert not up, f"{module} (floor {FLOORS[module]}) imports from a higher floor: {[(r, FLOORS[r]) for r in up]}"
    assert not inner, f"{module} imports medlord_nb rooms inside functions (to dodge a circle?): {inner}"
    if module in SYSTEMS and module != "zoo":
        assert not (top & (SYSTEMS - {"zoo"})), f"system {module} imports another system: {top & SYSTEMS}"

def test_no_circles():
    graph = {m: imports(m)[0] for m in rooms()}
    seen, stack, cycles = {}, [], []
    def visit(m):
        seen[m] = "open"; stack.append(m)
        for n in graph.get(m, ()):
            if seen.get(n) == "open": cycles.append(stack[stack.index(n):] + [n])
            elif n not in seen: visit(n)
        seen[m] = "done"; stack.pop()
    for m in graph:
        if m not in seen: visit(m)
    assert not cycles, f"import circles: {cycles}"

def test_modules_have_a_readable_size():
    long = {}
    for m in rooms():
        text = (LIB/f"{m}.py").read_text(encoding="utf-8")
        n = text.count("\n")
        if n > 700 and "Why this module is long:" not in text[:3000]: long[m] = n
    assert not long, f"modules over 700 lines without a reason at their top ('Why this module is long:'): {long}"

def _nb_imports(nb:Path) -> set:
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    src = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    rooms = set(re.findall(r"(?m)^\s*(?:from|import)\s+medlord_nb\.(\w+)", src))       # import statements, not strings
    return rooms | {m for line in re.findall(r"(?m)^\s*from medlord_nb import ([\w, ]+)", src) for m in re.split(r"[, ]+", line) if m}

def test_notebooks_in_dependency_order():
    "A reader meets every room after the rooms it uses: each notebook uses only rooms of earlier notebooks (and its own)."
    nbs = sorted(p for p in (ROOT/"nbs").glob("[0-9]*.ipynb"))
    owner, order = {}, {}
    for i, nb in enumerate(nbs):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        de = next("".join(c["source"]).split()[-1] for c in cells if c["cell_type"] == "code" and "".join(c["source"]).startswith("#| default_exp"))
        owner[nb.name], order[de] = de, i
    late = []
    for i, nb in enumerate(nbs):
        for r in _nb_imports(nb):
            if r in order and order[r] > i: late.append((nb.name, r))
    assert not late, f"notebooks that use a room taught later: {late}"

def test_models_stand_alone():
    "A model module (floor 2) imports neither data nor training: it takes tensors and returns tensors."
    bad = {m: sorted(imports(m)[0] - {r for r, f in FLOORS.items() if f in (0, 2)}) for m in rooms() if FLOORS[m] == 2}
    assert not {m: r for m, r in bad.items() if r}, f"model modules importing from outside core and the model floor: {bad}"
