#!/usr/bin/env python3
"""Turn a folder of your own CT scans (+ masks) into a medlord dataset (NIfTI, RAS, manifest.json).

    python data_scripts/import_folder.py SRC OUT [--derive-masks] [--force]

SRC holds NAME.nii.gz / .nii / .nrrd / .nhdr / .mha / .mhd files and/or DICOM series folders; masks are
NAME_mask.nii.gz (or _seg, _label, _labels, any of those formats) next to the image, or masks/NAME.nii.gz.
Label values follow medlord_nb.data.LABELS unless SRC/labels.json says otherwise. This is
`medlord_nb.datasets.prepare` (also `medlord prepare`); see data_scripts/README.md.
"""
from __future__ import annotations
import argparse, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="folder of scans: NIfTI/NRRD/MHA/MHD files and/or DICOM series folders, masks as NAME_mask.* or masks/NAME.*")
    ap.add_argument("out", help="dataset folder to create (must not exist or be empty, unless --force)")
    ap.add_argument("--derive-masks", action="store_true", help="derive lung/vessel labels from HU for cases whose mask has none")
    ap.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    from medlord_nb.datasets import prepare, summarize
    try: man = prepare(a.src, a.out, derive_masks=a.derive_masks, force=a.force, progress=not a.no_progress)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr); return 1
    print(summarize(man)); return 0

if __name__ == "__main__": sys.exit(main())
