#!/usr/bin/env python3
"""Train, evaluate and pack a model of the zoo (medlord_nb/pretrained/) from its recipe in configs/zoo/.

    python data_scripts/build_zoo.py NAME [--resume] [--force] [--steps N] [--eval-only | --pack-only] [--no-pack]

NAME is a recipe: segmenter, patch_lung, medlord_small, med_lsdm_small, or baseline (the demo's model
trained 400 steps: the FID yardstick of the quality bar; evaluated, never packed). The recipe trains
into runs/zoo-NAME/ (resumable: --resume continues from the last checkpoint), samples the mask of the
held-out scan lung2 (body from its CT), evaluates the sample against the real lung2 with the same
`evaluation.evaluate_folders` that `medlord evaluate` runs, writes runs/zoo-NAME/quality.json and a
montage, and packs the EMA weights with a model card into pretrained/NAME/ (sha256 in the manifest).
Generators need the segmenter first (its Dice and tile FID measure them): build it first.
"""
from __future__ import annotations
import argparse, datetime, platform, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPES = {  # name -> (kind, config file, shipped)
    "segmenter": ("segmenter", "configs/zoo/segmenter.yaml", True),
    "patch_lung": ("patch", "configs/zoo/patch_lung.yaml", True),
    "medlord_small": ("medlord", "configs/zoo/medlord_small.yaml", True),
    "med_lsdm_small": ("med_lsdm", "configs/zoo/med_lsdm_small.yaml", True),
    "baseline": ("patch", "configs/zoo/baseline.yaml", False),
}
HELD_OUT = "lung2"
LICENCES = {"lung1": "BSD-3 (pyradiomics 3.1.0 test data)", "lung2": "BSD-3 (pyradiomics 3.1.0 test data)",
            "cta": "Apache-2.0 (TotalSegmentator 2.18.0 test data; heart/aorta/pulmonary-artery masks are model predictions)"}
BAR = {  # metric -> (how it is read from quality.json, test, text)
    "texture ratio, lung": (lambda q: q["fidelity"]["per_label"].get("lung", {}).get("texture_ratio"), lambda v: 0.8 <= v <= 1.25, "0.8 .. 1.25"),
    "texture ratio, soft tissue": (lambda q: q["fidelity"]["per_label"].get("soft tissue", {}).get("texture_ratio"), lambda v: 0.8 <= v <= 1.25, "0.8 .. 1.25"),
    "HU W1, lung": (lambda q: q["fidelity"]["per_label"].get("lung", {}).get("wasserstein_hu"), lambda v: v <= 40, "<= 40 HU"),
    "HU W1, soft tissue": (lambda q: q["fidelity"]["per_label"].get("soft tissue", {}).get("wasserstein_hu"), lambda v: v <= 40, "<= 40 HU"),
    "HU W1, tumour": (lambda q: q["fidelity"]["per_label"].get("nodule", {}).get("wasserstein_hu"), lambda v: v <= 100, "<= 100 HU"),
    "fat fraction (rel. diff.)": (lambda q: q["body_composition"]["relative_difference"].get("fat"), lambda v: abs(v) <= 0.25, "within 25 %"),
    "soft-tissue fraction (rel. diff.)": (lambda q: q["body_composition"]["relative_difference"].get("soft tissue"), lambda v: abs(v) <= 0.25, "within 25 %"),
    "bone fraction (rel. diff.)": (lambda q: q["body_composition"]["relative_difference"].get("bone"), lambda v: abs(v) <= 0.25, "within 25 %"),
    "segmenter lung Dice": (lambda q: q["mask_adherence"]["per_label"].get("lung", {}).get("dice_mean"), lambda v: v >= 0.9, ">= 0.9"),
}

def log(msg): print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

def commit() -> str:
    try: return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except Exception: return "unknown"

def device_name() -> str:
    import torch
    if torch.cuda.is_available(): return torch.cuda.get_device_name(0)
    import os
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"

def sample_files(name: str) -> tuple[Path, Path]:
    from medlord_nb.data import sample_manifest, _samples_dir
    e = sample_manifest()["samples"][name]
    return _samples_dir()/e["files"]["image"], _samples_dir()/e["files"]["labels"]

def train(name: str, a) -> tuple[Path, dict]:
    "Train the recipe into runs/zoo-NAME (resumable); returns the run and its facts for the card."
    from medlord_nb.core import load_yaml, load_json
    kind, cfg_file, _ = RECIPES[name]
    run = ROOT/"runs"/f"zoo-{name}"
    t0 = time.time()
    if kind == "segmenter":
        from medlord_nb.datasets import load_case
        from medlord_nb.segmentation import SegConfig, train_segmenter, SegModel
        d = load_yaml(ROOT/cfg_file); samples = d.pop("train_samples"); d.pop("pipeline", None)
        if a.steps: d["steps"] = a.steps
        ck = run/"segmenter.pt"
        if ck.is_file() and not a.force: log(f"{ck} exists: using it (--force retrains)"); seg = SegModel.load(ck)
        else:
            run.mkdir(parents=True, exist_ok=True)
            seg = train_segmenter([load_case(s) for s in samples], SegConfig.from_dict(d), progress=True, ckpt_path=ck)
            (run/"wall_s.txt").write_text(f"{time.time() - t0:.0f}")
        wall = float((run/"wall_s.txt").read_text()) if (run/"wall_s.txt").is_file() else None
        return run, {"trained_on": list(samples), "steps": seg.cfg.steps, "wall_s": wall}
    from medlord_nb.runner import train_run
    over = {"steps": a.steps} if a.steps else None
    resume = a.resume or ((run/"config.yaml").is_file() and not a.force)
    if not (a.eval_only or a.pack_only):
        train_run(config=str(ROOT/cfg_file), name=run.name, root=run.parent, overrides=over, pipeline=kind, resume=resume,
                  force=a.force, progress=True)
    m = load_json(run/"metrics.json")["train"]
    cfg = load_yaml(run/"config.yaml")
    st = m.get("stages") or {}
    names = {"vqgan": "VQ-GAN", "ldm_base": "base U-Net", "ldm": "ControlNet" if "ldm_base" in st else "latent U-Net"}
    steps = ", ".join(f"{names[k]} {st[k]['steps']}" for k in ("vqgan", "ldm_base", "ldm") if isinstance(st.get(k), dict)) or m["steps"]
    return run, {"trained_on": list(cfg["train_samples"]), "steps": steps, "wall_s": m["seconds"], "resumed": m.get("resumed")}

def evaluate(name: str, run: Path, seg_path: Path|None) -> dict:
    "Sample lung2's mask (generators), evaluate against the real lung2 as `medlord evaluate` does, write quality.json + montages."
    import numpy as np, matplotlib
    matplotlib.use("Agg")
    from medlord_nb.core import save_json, load_json, load_yaml
    from medlord_nb.data import load_volume, load_sample, save_volume
    from medlord_nb.viz import montage, save_figure
    from medlord_nb.segmentation import SegModel
    from medlord_nb.evaluation import evaluate_folders, memorisation, TileExtractor
    from medlord_nb.datasets import load_case
    kind = RECIPES[name][0]
    ev = run/"eval"
    if ev.exists(): shutil.rmtree(ev)
    for sub in ("real", "masks", "samples"): (ev/sub).mkdir(parents=True)
    img, lab = sample_files(HELD_OUT)
    shutil.copyfile(img, ev/"real"/f"{HELD_OUT}.nii.gz"); shutil.copyfile(lab, ev/"masks"/f"{HELD_OUT}.nii.gz")
    seg = SegModel.load(seg_path) if seg_path else None
    real = load_sample(HELD_OUT)
    if kind == "segmenter":                                               # the ceiling: the real scan itself, segmented
        shutil.copyfile(img, ev/"samples"/f"{HELD_OUT}.nii.gz")
        sec = 0.0
    else:
        from medlord_nb.runner import sample_run
        t0 = time.time()
        sample_run(run, [ev/"masks"/f"{HELD_OUT}.nii.gz"], images=[ev/"real"/f"{HELD_OUT}.nii.gz"], out=ev/"gen", progress=True)
        sec = time.time() - t0
        shutil.copyfile(ev/"gen"/f"{HELD_OUT}_000.nii.gz", ev/"samples"/f"{HELD_OUT}.nii.gz")
    q = evaluate_folders(ev/"real", ev/"samples", mask_paths=ev/"masks", segmenter=seg, segmenter_source=str(seg_path))
    q["sampling_seconds"] = round(sec, 1)
    sample = load_volume(ev/"samples"/f"{HELD_OUT}.nii.gz").image
    if kind != "segmenter":
        cfg = load_yaml(run/"config.yaml")
        train_vols = [load_case(s, cfg.get("spacing")) for s in cfg["train_samples"]]
        if seg is not None:
            from medlord_nb.data import CTVolume
            held = CTVolume(real.image, None, real.spacing, real.affine, name=HELD_OUT)
            gen = CTVolume(sample, None, real.spacing, real.affine, name=f"{name} sample")
            q["memorisation"] = memorisation([gen], train_vols, [held], extractor=TileExtractor(seg))
        rows = {f"{HELD_OUT} (real)": (real.image, None), f"{name} sample": (sample, None)}
        for w, tag in (("lung", "lung"), ((40., 400.), "soft")):
            fig = montage(rows, spacing=real.spacing, window=w, overlay=False, n_slices=3, title=f"{name} on {HELD_OUT}'s mask ({tag} window)")
            save_figure(fig, ev/f"montage_{tag}.png")
        _stack([ev/"montage_lung.png", ev/"montage_soft.png"], run/"montage.png")
    save_json(q, run/"quality.json")
    return q

def _stack(pngs, out):
    "Two montage PNGs, one above the other."
    import matplotlib.pyplot as plt, matplotlib.image as mpimg
    ims = [mpimg.imread(p) for p in pngs]
    fig, axs = plt.subplots(len(ims), 1, figsize=(ims[0].shape[1] / 100, sum(i.shape[0] for i in ims) / 100))
    for ax, im in zip(axs, ims): ax.imshow(im); ax.axis("off")
    fig.subplots_adjust(0, 0, 1, 1, 0, 0); fig.savefig(out, dpi=100); plt.close(fig)

def bar_table(q: dict, baseline_fid: float|None, real_ref: dict|None) -> tuple[str, dict]:
    "The quality bar as a Markdown table and as numbers."
    rows, nums = ["| measure | sample | bar | pass | real lung1 vs lung2 |", "|---|---:|---|---|---:|"], {}
    for k, (get, ok, text) in BAR.items():
        try: v = get(q)
        except (KeyError, TypeError): v = None
        try: r = get(real_ref) if real_ref else None
        except (KeyError, TypeError): r = None
        nums[k] = v
        rows.append(f"| {k} | {'-' if v is None else f'{v:.3g}'} | {text} | {'-' if v is None else ('yes' if ok(v) else 'no')} | "
                    f"{'-' if r is None else f'{r:.3g}'} |")
    ft = (q.get("fid_tiles") or {}).get("value")
    rf = ((real_ref or {}).get("fid_tiles") or {}).get("value")
    nums["tile FID"] = ft
    half = None if baseline_fid is None else baseline_fid / 2
    rows.append(f"| tile FID (shipped segmenter) | {'-' if ft is None else f'{ft:.3g}'} | <= half the 400-step demo model's"
                f"{'' if half is None else f' ({half:.3g})'} | {'-' if ft is None or half is None else ('yes' if ft <= half else 'no')} | "
                f"{'-' if rf is None else f'{rf:.3g}'} |")
    m = q.get("memorisation")
    if m:
        nums["memorisation"] = {"sample_nn": m["sample_nn"][0], "nearest": m["sample_nn_name"][0], "held_out_nn": (m.get("held_out_nn") or [None])[0]}
        rows.append(f"| distance to nearest training scan (tile features) | {m['sample_nn'][0]:.3g} ({m['sample_nn_name'][0]}) | "
                    f"real {HELD_OUT}: {(m.get('held_out_nn') or [float('nan')])[0]:.3g} | - | - |")
    return "\n".join(rows), nums

def real_reference(seg_path: Path|None) -> dict:
    "The bar's numbers for a real scan: lung1 evaluated against lung2 exactly as a sample is (cached in runs/zoo-real/)."
    from medlord_nb.core import save_json, load_json
    from medlord_nb.segmentation import SegModel
    from medlord_nb.evaluation import evaluate_folders
    out = ROOT/"runs"/"zoo-real"/"quality.json"
    if out.is_file(): return load_json(out)
    ev = out.parent/"eval"
    for sub in ("real", "masks", "samples", "sample_masks"): (ev/sub).mkdir(parents=True, exist_ok=True)
    i2, l2 = sample_files(HELD_OUT); i1, l1 = sample_files("lung1")
    shutil.copyfile(i2, ev/"real"/"lung2.nii.gz"); shutil.copyfile(l2, ev/"masks"/"lung2.nii.gz")
    shutil.copyfile(i1, ev/"samples"/"lung1.nii.gz"); shutil.copyfile(l1, ev/"sample_masks"/"lung1.nii.gz")
    q = evaluate_folders(ev/"real", ev/"samples", mask_paths=ev/"sample_masks", reference_mask_paths=ev/"masks",
                         segmenter=SegModel.load(seg_path) if seg_path else None, segmenter_source=str(seg_path))
    save_json(q, out)
    return q

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=list(RECIPES))
    ap.add_argument("--resume", action="store_true", help="continue training from the run's last checkpoint")
    ap.add_argument("--force", action="store_true", help="retrain from scratch (and replace a packed model of that name)")
    ap.add_argument("--steps", type=int, help="override the recipe's steps (the card records what ran)")
    ap.add_argument("--eval-only", action="store_true", help="do not train: evaluate and pack the finished run")
    ap.add_argument("--no-pack", action="store_true", help="evaluate only; do not write pretrained/")
    ap.add_argument("--pack-only", action="store_true", help="do not train or evaluate: pack the finished run with its quality.json")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
    a = ap.parse_args(argv)
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    from medlord_nb.core import load_json, load_yaml
    from medlord_nb.zoo import pack_pretrained
    kind, cfg_file, shipped = RECIPES[a.name]
    log(f"{a.name}: training ({kind}, {cfg_file})")
    run, facts = train(a.name, a)
    seg_path = run/"segmenter.pt" if kind == "segmenter" else ROOT/"runs"/"zoo-segmenter"/"segmenter.pt"
    if not seg_path.is_file(): log(f"no {seg_path}: segmenter metrics and tile FID are skipped (build the segmenter first)"); seg_path = None
    if a.pack_only and (run/"quality.json").is_file(): log(f"{a.name}: packing with {run/'quality.json'}"); q = load_json(run/"quality.json")
    else: log(f"{a.name}: evaluating on {HELD_OUT}"); q = evaluate(a.name, run, seg_path)
    base = ROOT/"runs"/"zoo-baseline"/"quality.json"
    base_fid = (load_json(base).get("fid_tiles") or {}).get("value") if base.is_file() and a.name != "baseline" else None
    if kind == "segmenter":
        import numpy as np
        from medlord_nb.data import load_sample, LABELS
        present = {int(v) for v in np.unique(load_sample(HELD_OUT).labels)}
        dice = {k: (round(v["dice_mean"], 3) if k in {LABELS[i] for i in present} else None)
                for k, v in q["mask_adherence"]["per_label"].items()}
        nums = {f"dice {k} ({HELD_OUT})": v for k, v in dice.items()}
        table = "\n".join(f"- {k}: {v:.3f}" if v is not None else f"- {k}: - ({HELD_OUT}'s mask has no {k} label)" for k, v in dice.items())
    else: table, nums = bar_table(q, base_fid, real_reference(seg_path))
    print(table)
    if not shipped or a.no_pack: return 0
    cfg_text = (ROOT/cfg_file).read_text(encoding="utf-8")
    sections = {"Data": f"Trained on {', '.join(facts['trained_on'])} (the embedded real CTs, see `medlord samples`), "
                        f"`{HELD_OUT}` held out. That is {len(facts['trained_on'])} scans: a teaching model and a baseline, not a "
                        f"clinical generator; it has seen one patient's anatomy per scan and will reproduce their habits.",
                "Recipe": f"```bash\npython data_scripts/build_zoo.py {a.name}\n```\n\n`{cfg_file}`:\n\n```yaml\n{cfg_text.strip()}\n```",
                f"Quality on {HELD_OUT} (held out)": ("The sample is conditioned on lung2's mask (body from its CT) and compared with the "
                        "real lung2 by `medlord evaluate`'s protocols (`evaluation.evaluate_folders`); the last column is a real scan (lung1) "
                        "measured the same way, so a reader sees which bars even real anatomy misses.\n\n" + table
                        + f"\n\nSampling lung2 (its whole grid) took {q['sampling_seconds']} s on {device_name()}.") if kind != "segmenter" else
                        ("The segmenter on the held-out lung2, against lung2's mask (lung and vessels derived from HU, the "
                         "tumour drawn by hand): Dice per label\n\n" + table + "\n\nOne small nodule (lung1) is all the tumour it saw: it "
                         "misses lung2's 45 mm tumour. Heart, aorta and pulmonary artery come from one contrast CT (cta), so on a "
                         "non-contrast scan they are guesses; `medlord evaluate` uses this model for lung regional volumes, lung Dice "
                         "and, through its encoder, tile FID."),
                **({"Limitations": (f"On lung2 it meets {sum(1 for k, (g, ok, _) in BAR.items() if nums.get(k) is not None and ok(nums[k]))} "
                        f"of the {len(BAR)} bars above (tile FID aside), on one sample. Look at `montage.png` (the real lung2 above this sample, in a lung and "
                        "a soft-tissue window) before trusting any number: two training scans and an hour or two of CPU teach the "
                        "mask's layout and the lung's texture long before the mediastinum's anatomy. Trained on a GPU at the sizes of "
                        "`configs/` it would see far more patches; that run has not been made.")} if kind != "segmenter" else {}),
                "Licence of the data": "; ".join(f"{s}: {LICENCES.get(s, 'see the dataset')}" for s in facts["trained_on"])}
    wall = facts.get("wall_s")
    card = {"title": {"segmenter": "lung / vessel / tumour / heart / great-vessel segmenter (MONAI UNet) and FID feature extractor",
                      "patch": "patch-wise lung DDPM (System B)", "medlord": "MedLoRD at reduced resolution (System A)",
                      "med_lsdm": "Med-LSDM at reduced size (System C)"}[kind],
            "summary": {"segmenter": "Segments lung, vessels, tumour, heart, aorta, pulmonary artery; its encoder is evaluate's tile-FID extractor.",
                        "patch": "Concat-conditioned patch DDPM; samples a whole volume from a mask.",
                        "medlord": "VQ-GAN 4x + latent U-Net + ControlNet-lite, on a 2x2x1-pooled grid.",
                        "med_lsdm": "VQ-GAN 4x + SPADE latent U-Net with classifier-free guidance, whole latents of a 2x2x1-pooled grid."}[kind],
            "trained_on": facts["trained_on"], "held_out": [HELD_OUT], "command": f"python data_scripts/build_zoo.py {a.name}",
            "commit": commit(), "steps": facts["steps"], "device": device_name(),
            "wall_time": (f"{wall / 60:.0f} min" + (" (the last session of a resumed run; earlier sessions not counted)" if facts.get("resumed") else "")) if wall else "-", "licence": "; ".join(LICENCES.get(s, "-") for s in facts["trained_on"]),
            "sections": sections}
    extra = {"montage": run/"montage.png"} if (run/"montage.png").is_file() else None
    src = run/"segmenter.pt" if kind == "segmenter" else run
    e = pack_pretrained(src, a.name, kind, card, metrics=nums, extra_files=extra, force=True)
    log(f"packed pretrained/{a.name}: {sum(f['bytes'] for f in e['files'].values()) / 1e6:.2f} MB")
    return 0

if __name__ == "__main__": sys.exit(main())
