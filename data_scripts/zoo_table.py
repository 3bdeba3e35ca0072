#!/usr/bin/env python3
"""The quality bar on lung2 for every generator of the zoo side by side, as the README quotes it.

    python data_scripts/zoo_table.py            # reads runs/zoo-*/quality.json written by build_zoo.py

Columns: each generator that has been evaluated (build_zoo.py NAME), the baseline (the demo's model trained 400
steps, the FID yardstick) and a real scan (lung1 measured against lung2 exactly as a sample is).
"""
from __future__ import annotations
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT/"data_scripts"))
from build_zoo import BAR, HELD_OUT, RECIPES                      # noqa: E402
from medlord_nb.core import load_json                              # noqa: E402

def _fmt(v): return "-" if v is None else f"{v:.3g}"

def main() -> int:
    cols = [(n, ROOT/"runs"/f"zoo-{n}"/"quality.json") for n, r in RECIPES.items() if r[0] != "segmenter"]
    cols = [(n, load_json(p)) for n, p in cols if p.is_file()]
    real = ROOT/"runs"/"zoo-real"/"quality.json"
    if real.is_file(): cols.append((f"real lung1", load_json(real)))
    if not cols: print("no runs/zoo-*/quality.json: run `python data_scripts/build_zoo.py NAME` first"); return 2
    base = dict(cols).get("baseline")
    base_fid = (base or {}).get("fid_tiles", {}).get("value") if base else None
    print(f"| measure ({HELD_OUT}) | bar | " + " | ".join(n for n, _ in cols) + " |")
    print("|---|---|" + "---:|" * len(cols))
    for k, (get, ok, text) in BAR.items():
        cells = []
        for _, q in cols:
            try: v = get(q)
            except (KeyError, TypeError): v = None
            cells.append("-" if v is None else f"{_fmt(v)}{'' if ok(v) else ' ✗'}")
        print(f"| {k} | {text} | " + " | ".join(cells) + " |")
    half = None if base_fid is None else base_fid / 2
    cells = []
    for n, q in cols:
        v = (q.get("fid_tiles") or {}).get("value")
        cells.append("-" if v is None else f"{_fmt(v)}{'' if half is None or n == 'baseline' or v <= half else ' ✗'}")
    print(f"| tile FID (shipped segmenter's encoder) | <= {_fmt(half)} (half the baseline's) | " + " | ".join(cells) + " |")
    cells = []
    for _, q in cols:
        m = q.get("memorisation")
        cells.append("-" if not m else f"{m['sample_nn'][0]:.3g} ({m['sample_nn_name'][0]}; real {HELD_OUT} {m['held_out_nn'][0]:.3g})")
    print(f"| distance to the nearest training scan (tile features) | - | " + " | ".join(cells) + " |")
    cells = [f"{q['sampling_seconds']:.0f}" if q.get("sampling_seconds") else "-" for _, q in cols]
    print(f"| seconds to sample {HELD_OUT} (2 CPU cores) | - | " + " | ".join(cells) + " |")
    return 0

if __name__ == "__main__": sys.exit(main())
