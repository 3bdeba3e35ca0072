"""Render nbs/index.ipynb to README.md (quarto, and so nbdev_readme, is not available offline).
Links relative to nbs/ are rewritten to be relative to the repository root."""
import re
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

root = Path(__file__).resolve().parents[1]
nb = nbformat.read(root/"nbs"/"index.ipynb", as_version=4)
nb.cells = [c for c in nb.cells if not c.source.lstrip().startswith("#| hide")]
for c in nb.cells:
    if c.cell_type == "code":
        c.source = "\n".join(l for l in c.source.splitlines() if not l.startswith("#|")).strip()
body, _ = MarkdownExporter().from_notebook_node(nb)
body = re.sub(r"\]\((?!https?:|#|/)([^)]+)\)", lambda m: f"](nbs/{m.group(1)})" if not m.group(1).startswith("../") else f"]({m.group(1)[3:]})", body)
body = re.sub(r"\n{3,}", "\n\n", body).strip() + "\n"
header = "<!-- generated from nbs/index.ipynb by .ci/make_readme.py: edit the notebook, not this file -->\n\n"
(root/"README.md").write_text(header + body, encoding="utf-8")
