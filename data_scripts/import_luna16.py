#!/usr/bin/env python3
"""Import LUNA16 (MetaImage CTs, world-mm nodule annotations, lung masks) as a medlord dataset.

    python data_scripts/import_luna16.py SRC OUT [--subsets 0 1] [--skip-missing] [--lungs seg-lungs|derive]
                                         [--trachea-label 1] [--no-vessels] [--limit N] [--force]

SRC is the LUNA16 root: subset0..subset9/<seriesuid>.mhd + .raw, annotations.csv and
seg-lungs-LUNA16/<seriesuid>.mhd + .zraw. Labels: 1 lung (LUNA16 masks 3, 4 and the trachea 5),
2 vessels (HU inside the lungs), 3 nodule (spheres of diameter_mm at the annotated world coordinates).
This is `medlord_nb.datasets.import_luna16`; see data_scripts/README.md.
"""
from __future__ import annotations
import argparse, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="LUNA16 root folder (subset0..9/, annotations.csv, seg-lungs-LUNA16/)")
    ap.add_argument("out", help="dataset folder to create (must not exist or be empty, unless --force)")
    ap.add_argument("--subsets", type=int, nargs="+", help="only these subsets, e.g. --subsets 0 1 (default: all present)")
    ap.add_argument("--annotations", help="annotations.csv (default SRC/annotations.csv)")
    ap.add_argument("--seg-lungs", help="lung-mask folder (default SRC/seg-lungs-LUNA16)")
    ap.add_argument("--lungs", choices=["seg-lungs", "derive"], default="seg-lungs", help="LUNA16's lung masks, or derive lungs from HU")
    ap.add_argument("--skip-missing", action="store_true", help="ignore annotated series whose subset is not present (default: refuse)")
    ap.add_argument("--trachea-label", type=int, default=1, help="label for the trachea of seg-lungs: 1 joins the lung, 0 drops it")
    ap.add_argument("--no-vessels", action="store_true", help="do not derive vessel labels (2) from HU")
    ap.add_argument("--limit", type=int, help="import at most N series (a quick trial)")
    ap.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    from medlord_nb.datasets import import_luna16, summarize
    try:
        man = import_luna16(a.src, a.out, subsets=a.subsets, annotations=a.annotations, seg_lungs=a.seg_lungs, lung_masks=a.lungs,
                            missing="skip" if a.skip_missing else "error", trachea_label=a.trachea_label,
                            derive_vessels=not a.no_vessels, limit=a.limit, force=a.force, progress=not a.no_progress)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr); return 1
    print(summarize(man)); return 0

if __name__ == "__main__": sys.exit(main())
