"""Peak memory of our pipelines against MONAI stock at the same configuration, in one run.

For every volume shape and phase it records our peak and MONAI's, estimated without a device (fake tensors,
`medlord_nb.memory.estimate_peak`) and, where the device allows, measured (CUDA: torch.cuda.max_memory_allocated
and seconds per step; CPU: peak RSS growth of a fresh subprocess, at small shapes only). Writes
`<out>/<device>-<date>.json` and a log-log plot of peak memory against voxels next to it.

    python benchmarks/memory.py                     # CPU: estimates for all shapes, measured at the small ones
    python benchmarks/memory.py --device cuda       # GPU: estimates and measurements at every shape
    python benchmarks/memory.py --quick --out /tmp  # tiny widths, one shape, estimates: the smoke test (tests/test_memory_bench.py)

What is compared (widths and settings from BRIEF.md, System A and System B; see benchmarks/README.md):

| pipeline / phase | ours | MONAI stock |
|---|---|---|
| latent train   | our UNet, bf16 autocast, chunked GroupNorm, gradient checkpointing, EMA in host memory | DiffusionModelUNet, bf16 autocast (no checkpointing option) |
| latent denoise | our UNet, one pass over the whole latent, frozen bf16 weights | DiffusionModelUNet, one pass |
| latent decode  | our VQGAN, tiled decode (halos), bf16 weights, tiles to host memory | VQVAE.decode, one pass |
| latent sample  | the peak of denoise and decode (what sampling a volume needs); seconds = 50 denoising steps + decode | the same of MONAI's |
| pixel denoise  | our patch UNet (additive skips, no attention), sliding windows, volume in host memory, bf16 weights | DiffusionModelUNet, SlidingWindowInferer, same windows |
"""
from __future__ import annotations
import argparse, dataclasses, datetime, json, math, os, platform, re, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))

import torch
from medlord_nb.core import format_size, save_json
from medlord_nb.memory import ModelSpec, Spec, TrainStep, DenoiseStep, DecodeStep, estimate_peak
from medlord_nb.memtrack import measure_peaks
from medlord_nb import patch_ddpm as pd, latent_diffusion as ld
from medlord_nb.presets import load_config

FULL_SHAPES = [(64, 64, 64), (128, 128, 128), (256, 256, 128), (256, 256, 256), (512, 512, 256), (512, 512, 512)]
PIXEL_MAX_VOXELS = 512 * 512 * 256           # the pixel pipeline stops at 512x512x256 (512^3 is for the latent pipeline)
CPU_MEASURED = [(64, 64, 64), (96, 96, 64)]  # shapes measured on the CPU (fp32)
QUICK_SHAPE = (64, 64, 32)


@dataclasses.dataclass
class Setup:
    "Everything that defines one comparison: our systems' configs (their own phases) and the peer's models."
    latent: object                # MedLoRDConfig: its train / denoise / decode phases are ours
    decode_tile: tuple            # our decode tile, latent voxels (clipped to the latent)
    pixel_window: tuple           # sliding window of the pixel pipeline (voxels), ours and MONAI's
    pixel_cfg: object             # PatchDDPMConfig of the pixel pipeline
    monai_unet_latent: ModelSpec
    monai_vqvae: ModelSpec
    monai_unet_pixel: ModelSpec


def make_setup(quick:bool) -> Setup:
    if quick:
        lat = load_config("medlord", "medlord", dict(channels=(8, 16), num_res_blocks=1, attention_levels=(False, True), num_head_channels=8,
                                                     norm_num_groups=4, vqgan_channels=(8, 16), vqgan_num_res_blocks=1, num_embeddings=64))
        pix = load_config("patch", "smoke", dict(channels=(8, 16), attention_levels=(False, False), norm_num_groups=4, num_head_channels=8))
        tile, window = (8, 8, 8), (32, 32, 16)
    else:
        lat, pix, tile, window = load_config("medlord", "medlord"), load_config("patch", "patch_ddpm_lung"), (32, 32, 16), (128, 128, 64)
    u = lat
    mu = ModelSpec.from_target("monai.networks.nets:DiffusionModelUNet", spatial_dims=3, in_channels=u.latent_channels,
                               out_channels=u.latent_channels, channels=u.channels, num_res_blocks=u.num_res_blocks,
                               attention_levels=u.attention_levels, num_head_channels=u.num_head_channels,
                               norm_num_groups=u.norm_num_groups, use_flash_attention=True)
    n = len(u.vqgan_channels)
    vq = ModelSpec.from_target("monai.networks.nets:VQVAE", spatial_dims=3, in_channels=1, out_channels=1, channels=u.vqgan_channels,
                               num_res_layers=u.vqgan_num_res_blocks, num_res_channels=u.vqgan_channels,
                               downsample_parameters=((2, 4, 1, 1),) * n, upsample_parameters=((2, 4, 1, 1, 0),) * n,
                               num_embeddings=u.num_embeddings, embedding_dim=u.latent_channels)
    mp = ModelSpec.from_target("monai.networks.nets:DiffusionModelUNet", spatial_dims=3, in_channels=1 + pix.cond_channels, out_channels=1,
                               channels=pix.channels, num_res_blocks=pix.num_res_blocks, attention_levels=pix.attention_levels,
                               num_head_channels=pix.num_head_channels, norm_num_groups=pix.norm_num_groups, use_flash_attention=True)
    return Setup(lat, tile, window, pix, mu, vq, mp)


def phases_for(s:Setup, pipeline:str, shape, precision:str) -> dict:
    "phase name -> (ours, peer, description of ours, description of the peer); ours are the systems' own phases."
    if pipeline == "latent":
        w = "bf16" if precision == "bf16" else "fp32"             # bf16 weights under bf16 autocast; fp32 measurements keep fp32
        c = s.latent.replace(use_checkpointing=True, ema_device="cpu" if w == "bf16" else None, host_skips=w == "bf16")
        z = (1, c.latent_channels, *ld.latent_shape(c, shape))
        tile = tuple(min(t, n) for t, n in zip(s.decode_tile, z[2:]))
        peer_train = c.train_config().replace(ema_device=None)
        return {
            "train": (dataclasses.replace(ld.train_phase(c, shape, precision), name="ours-train"),
                      TrainStep(s.monai_unet_latent, z, 0, precision, train=peer_train, schedule=c.noise_schedule(), name="monai-train"),
                      "UNet, whole latent, slab-wise norm+conv, gradient checkpointing" + (", EMA in host memory" if w == "bf16" else ""),
                      "DiffusionModelUNet, whole latent"),
            "denoise": (dataclasses.replace(ld.denoise_phase(c, shape, precision), name="ours-denoise"),
                        DenoiseStep(s.monai_unet_latent, z, 0, precision, inferer="monai", name="monai-denoise",
                                    sampler=Spec.of(ld.make_sampler, cfg=c)),
                        f"UNet, one pass over the latent, full-size blocks streamed slab by slab, frozen {w} weights"
                        + (", skips in host memory" if w == "bf16" else ""), "DiffusionModelUNet, one pass"),
            "decode": (dataclasses.replace(ld.decode_phase(c, shape, precision, decode_tile=tile), name="ours-decode"),
                       DecodeStep(s.monai_vqvae, z, precision, inferer="monai", name="monai-decode"),
                       f"VQGAN tiled decode, {'x'.join(map(str, tile))} latent tiles, {w} weights, output in host memory", "VQVAE.decode, one pass"),
        }
    p = s.pixel_cfg
    win = tuple(min(w, n) for w, n in zip(s.pixel_window, shape))
    win = None if win == tuple(shape) else win
    how = "one pass" if win is None else f"{'x'.join(map(str, win))} windows"
    lean = precision == "bf16"                                        # what a GPU runs; the CPU's fp32 measurements count host memory too
    hv, w = lean and win is not None, ("bf16" if lean else "fp32")
    return {"denoise": (dataclasses.replace(pd.denoise_phase(p, shape, precision, win, host_volume=hv), name="ours-pixel-denoise"),
                        DenoiseStep(s.monai_unet_pixel, (1, 1, *shape), p.cond_channels, precision, win, 0.25, inferer="monai",
                                    name="monai-pixel-denoise", sampler=Spec.of(pd.make_sampler, cfg=p)),
                        f"patch UNet (additive skips, no attention), {how}, {w} weights" + (", volume in host memory" if hv else ""),
                        f"DiffusionModelUNet, {'SlidingWindowInferer ' + how if win else 'one pass'}")}


SAMPLE_STEPS = 50   # denoising steps of the end-to-end sampling figure (the "50 steps + decode")


def sample_records(records:list) -> list:
    "Latent 'sample' records: the peak of denoising and decoding (what sampling one volume needs), seconds for 50 steps + decode."
    out = []
    for r in records:
        if (r["pipeline"], r["phase"]) != ("latent", "denoise"): continue
        d = next((q for q in records if (q["pipeline"], q["phase"], q["shape"], q["precision"]) == ("latent", "decode", r["shape"], r["precision"])), None)
        if d is None: continue
        both = lambda k: max(r[k], d[k]) if r[k] and d[k] else None
        secs = lambda k: SAMPLE_STEPS * r[k] + d[k] if r[k] is not None and d[k] is not None else None
        s = dict(r, phase="sample", ours=f"{r['ours']}; then {d['ours']}", peer=f"{r['peer']}; then {d['peer']}",
                 peak_bytes_estimated=max(r["peak_bytes_estimated"], d["peak_bytes_estimated"]),
                 peer_peak_bytes_estimated=max(r["peer_peak_bytes_estimated"], d["peer_peak_bytes_estimated"]),
                 peak_bytes_measured=both("peak_bytes_measured"), peer_peak_bytes=both("peer_peak_bytes"),
                 seconds=secs("seconds"), peer_seconds=secs("peer_seconds"), steps=SAMPLE_STEPS if secs("seconds") is not None else 0,
                 note=f"derived: max(denoise, decode) peak; seconds = {SAMPLE_STEPS} x denoise step + decode")
        s["ratio_estimated"] = s["peak_bytes_estimated"] / s["peer_peak_bytes_estimated"]
        mo, mp = s["peak_bytes_measured"], s["peer_peak_bytes"]
        s.update(ratio=mo / mp, ratio_basis="measured") if mo and mp else s.update(ratio=s["ratio_estimated"], ratio_basis="estimated")
        s["estimate_over_measured"] = s["peak_bytes_estimated"] / mo if mo else None
        s["peer_estimate_over_measured"] = s["peer_peak_bytes_estimated"] / mp if mp else None
        out.append(s)
    return out


def device_name(dev:torch.device) -> str:
    if dev.type == "cuda": return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def slug(dev:torch.device) -> str:
    if dev.type != "cuda": return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(dev).lower()).strip("-")


def run(device:str="cpu", shapes=None, quick:bool=False, out:str|Path="benchmarks/results", measure_shapes=None,
        threads:int=1, plot:bool=True, log=print) -> Path:
    "Run the comparison; write <out>/<device>-<date>.json (and .png); return the JSON path."
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    if dev.type == "cuda" and not torch.cuda.is_available(): raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    s = make_setup(quick)
    shapes = [tuple(x) for x in (shapes or ([QUICK_SHAPE] if quick else FULL_SHAPES))]
    if measure_shapes is None: measure_shapes = shapes if dev.type == "cuda" else ([] if quick else CPU_MEASURED)
    measure_shapes = [tuple(x) for x in measure_shapes]
    est_precision = "bf16"                                   # what a GPU runs; on CUDA also what is measured
    mea_precision = "bf16" if dev.type == "cuda" else "fp32"   # CPU kernels: measure fp32 (and estimate fp32 beside it)
    cap = torch.cuda.get_device_properties(dev).total_memory if dev.type == "cuda" else None
    records, t_start = [], time.time()

    def estimate(ph):
        t = time.time(); e = estimate_peak(ph).peak_bytes
        return e, time.time() - t

    jobs = []                                                # (pipeline, phase, shape, precision, ours, peer, desc, pdesc, measure?)
    for shape in sorted(set(shapes) | set(measure_shapes), key=math.prod):
        for pipeline in ("latent", "pixel"):
            if pipeline == "pixel" and math.prod(shape) > PIXEL_MAX_VOXELS: continue
            precs = []
            if shape in shapes: precs.append(est_precision)
            if shape in measure_shapes and mea_precision not in precs: precs.append(mea_precision)
            for prec in precs:
                for phase, (ours, peer, d_o, d_p) in phases_for(s, pipeline, shape, prec).items():
                    meas = shape in measure_shapes and prec == mea_precision
                    # quick: measure one cheap phase only (the pixel U-Net's tiny windows take slow_conv3d: seconds a step)
                    if quick and (pipeline, phase) != ("latent", "denoise"):
                        if prec != est_precision: continue
                        meas = False
                    jobs.append((pipeline, phase, shape, prec, ours, peer, d_o, d_p, meas))

    for pipeline, phase, shape, prec, ours, peer, d_o, d_p, meas in jobs:
        eo, to = estimate(ours); ep, tp = estimate(peer)
        log(f"{pipeline:6s} {phase:7s} {'x'.join(map(str, shape)):12s} {prec:4s}  estimated: ours {format_size(eo):>10s}  "
            f"MONAI {format_size(ep):>10s}  ratio {eo / ep:.3f}   ({to + tp:.1f} s)")
        records.append(dict(device=None, pipeline=pipeline, phase=phase, shape=list(shape), voxels=math.prod(shape), precision=prec,
                            ours=d_o, peak_bytes_estimated=eo, peak_bytes_measured=None, seconds=None, steps=0,
                            peer="MONAI " + d_p, peer_peak_bytes=None, peer_peak_bytes_estimated=ep, peer_seconds=None,
                            ratio=eo / ep, ratio_basis="estimated", ratio_estimated=eo / ep, measure_method=None, note=None,
                            _measure=(ours, peer) if meas else None))
        if pipeline == "pixel" and getattr(ours, "host_volume", False):   # how much of the gap is the offload alone
            ph = dataclasses.replace(peer, host_volume=True, name="monai-pixel-denoise-host")
            records[-1]["peer_host_volume_peak_bytes_estimated"] = estimate(ph)[0]

    todo = [r for r in records if r["_measure"]]
    if todo:
        phases, where = [], []
        for r in todo:
            for side, ph in zip(("ours", "peer"), r["_measure"]):
                est = r["peak_bytes_estimated"] if side == "ours" else r["peer_peak_bytes_estimated"]
                if cap is not None and est > 0.9 * cap:
                    r["note"] = (r["note"] or "") + f"{side} not measured: estimate {format_size(est)} > 90% of the device; "
                    continue
                phases.append(ph); where.append((r, side))
        log(f"measuring {len(phases)} phases on {dev} ...")
        t = time.time()
        if dev.type == "cuda":
            res = []
            for ph in phases:                                    # one at a time: an OOM must not lose the others
                try: res.append(measure_peaks([ph], dev)[0])
                except torch.cuda.OutOfMemoryError: res.append(None); torch.cuda.empty_cache()
        else:
            res = measure_peaks(phases, "cpu", threads=threads, timeout=3600)
        log(f"measured in {time.time() - t:.1f} s")
        for (r, side), m in zip(where, res):
            if m is None: r["note"] = (r["note"] or "") + f"{side}: out of memory; "; continue
            if side == "ours": r.update(peak_bytes_measured=m.peak_bytes, seconds=m.seconds, steps=1, measure_method=m.method)
            else: r.update(peer_peak_bytes=m.peak_bytes, peer_seconds=m.seconds)
    name = device_name(dev)
    for r in records:
        r.pop("_measure"); r["device"] = name
        mo, mp = r["peak_bytes_measured"], r["peer_peak_bytes"]
        if mo and mp: r.update(ratio=mo / mp, ratio_basis="measured")
        r["estimate_over_measured"] = r["peak_bytes_estimated"] / mo if mo else None
        r["peer_estimate_over_measured"] = r["peer_peak_bytes_estimated"] / mp if mp else None
        if mo: log(f"measured {r['pipeline']:6s} {r['phase']:7s} {'x'.join(map(str, r['shape'])):12s} {r['precision']}: "
                   f"ours {format_size(mo)} (estimate/measured {r['estimate_over_measured']:.3f}, {r['seconds']:.2f} s)  "
                   f"MONAI {format_size(mp) if mp else '-'}"
                   + (f" (estimate/measured {r['peer_estimate_over_measured']:.3f}, {r['peer_seconds']:.2f} s)" if mp else ""))

    records += sample_records(records)

    import monai
    doc = {"benchmark": "memory", "protocol": "peak-memory-v1: ours vs MONAI stock at the same widths; estimated = fake-tensor live bytes "
                                              "(no margin); measured = CUDA max_memory_allocated growth or CPU subprocess VmHWM growth",
           "created": datetime.datetime.now().isoformat(timespec="seconds"), "device": name, "quick": quick,
           "torch": torch.__version__, "monai": monai.__version__, "python": platform.python_version(),
           "seconds_total": None,
           "configs": {"latent": {k: v for k, v in s.latent.to_dict().items() if k in ("channels", "num_res_blocks", "attention_levels", "num_head_channels", "norm_num_groups", "latent_channels", "vqgan_channels", "vqgan_num_res_blocks", "num_embeddings", "inference_weights", "sampler", "num_train_timesteps")}, "decode_tile_latent": list(s.decode_tile), "pixel_window": list(s.pixel_window),
                       "pixel": {k: v for k, v in s.pixel_cfg.to_dict().items() if k in ("channels", "num_res_blocks", "attention_levels",
                                                                                        "additive_skips", "norm_num_groups", "labels", "body_class")},
                       "monai_unet_latent": repr(s.monai_unet_latent), "monai_vqvae": repr(s.monai_vqvae),
                       "monai_unet_pixel": repr(s.monai_unet_pixel)},
           "records": records}
    doc["seconds_total"] = round(time.time() - t_start, 1)
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    stem = f"{slug(dev)}-{datetime.date.today().isoformat()}" + ("-quick" if quick else "")
    path = save_json(doc, out/f"{stem}.json")
    if plot: make_plot(doc, out/f"{stem}.png")
    log(f"wrote {path} in {doc['seconds_total']} s")
    return Path(path)


def make_plot(doc:dict, path:Path) -> Path:
    "Log-log peak memory vs voxels: one panel per (pipeline, phase); ours vs MONAI; estimated dashed, measured solid."
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("latent", "train"), ("latent", "denoise"), ("latent", "decode"), ("latent", "sample"), ("pixel", "denoise")]
    fig, axes = plt.subplots(1, 5, figsize=(22, 4.6), sharey=True)
    prec = "bf16" if any(r["precision"] == "bf16" for r in doc["records"]) else "fp32"
    for ax, (pl, ph) in zip(axes, panels):
        for kind, ls, mk in (("estimated", "--", "o"), ("measured", "-", "s")):
            for who, col in (("ours", "C0"), ("MONAI", "C1")):
                key = {("ours", "estimated"): "peak_bytes_estimated", ("ours", "measured"): "peak_bytes_measured",
                       ("MONAI", "estimated"): "peer_peak_bytes_estimated", ("MONAI", "measured"): "peer_peak_bytes"}[who, kind]
                p = prec if kind == "estimated" else None
                rs = sorted((r for r in doc["records"] if r["pipeline"] == pl and r["phase"] == ph and r[key]
                             and (p is None or r["precision"] == p)), key=lambda r: r["voxels"])
                if kind == "measured": rs = [r for r in rs if r["peak_bytes_measured"] or r["peer_peak_bytes"]]
                if rs: ax.plot([r["voxels"] for r in rs], [r[key] / 2**30 for r in rs], ls=ls, marker=mk, color=col,
                               label=f"{who}, {kind}" + (f" ({rs[0]['precision']})" if kind == "measured" else f" ({p})"))
        mp = sorted((r for r in doc["records"] if r["pipeline"] == pl and r["phase"] == ph and r["peak_bytes_measured"]
                     and r["precision"] != prec), key=lambda r: r["voxels"])
        for who, col, key in (("ours", "C0", "peak_bytes_estimated"), ("MONAI", "C1", "peer_peak_bytes_estimated")):
            if mp: ax.plot([r["voxels"] for r in mp], [r[key] / 2**30 for r in mp], ls="none", marker="x", ms=8, color=col,
                           label=f"{who}, estimated ({mp[0]['precision']}, as measured)")
        for gb, txt in ((24e9, "24 GB"), (4e9, "4 GB")):
            ax.axhline(gb / 2**30, color="grey", lw=0.8, ls=":")
            ax.text(0.02, gb / 2**30 * 1.06, txt, fontsize=8, color="grey", transform=ax.get_yaxis_transform())
        ax.set_xscale("log"); ax.set_yscale("log"); ax.set_title(f"{pl} pipeline: {ph}"); ax.set_xlabel("voxels of the volume")
        ax.grid(True, which="both", alpha=0.3); ax.legend(fontsize=7)
    axes[0].set_ylabel("peak memory (GiB)")
    fig.suptitle(f"peak memory vs volume size, ours vs MONAI stock: {doc['device']}" + (" (quick: tiny widths)" if doc["quick"] else ""))
    fig.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig)
    return path


def table(doc:dict, precision:str="bf16") -> str:
    "A markdown table of the estimates (and measurements where present)."
    rows = ["| pipeline | phase | shape | ours (est.) | MONAI (est.) | ratio |", "|---|---|---|---:|---:|---:|"]
    for r in doc["records"]:
        if r["precision"] != precision: continue
        rows.append(f"| {r['pipeline']} | {r['phase']} | {'x'.join(map(str, r['shape']))} | {format_size(r['peak_bytes_estimated'])} | "
                    f"{format_size(r['peer_peak_bytes_estimated'])} | {r['ratio_estimated']:.2f} |")
    return "\n".join(rows)


def measured_table(doc:dict) -> str:
    "A markdown table of the measured records: peaks, estimate/measured ratios, ours/MONAI ratio, seconds per step."
    f = lambda v, fmt: "-" if v is None else fmt.format(v)
    rows = ["| pipeline | phase | shape | precision | ours measured | ours est./meas. | MONAI measured | MONAI est./meas. | ours/MONAI | s/step ours | s/step MONAI |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["records"]:
        if not r["peak_bytes_measured"]: continue
        mp = r["peer_peak_bytes"]
        rows.append(f"| {r['pipeline']} | {r['phase']} | {'x'.join(map(str, r['shape']))} | {r['precision']} | "
                    f"{format_size(r['peak_bytes_measured'])} | {f(r['estimate_over_measured'], '{:.3f}')} | {format_size(mp) if mp else '-'} | "
                    f"{f(r['peer_estimate_over_measured'], '{:.3f}')} | {f(r['ratio'] if r['ratio_basis'] == 'measured' else None, '{:.2f}')} | "
                    f"{f(r['seconds'], '{:.2f}')} | {f(r['peer_seconds'], '{:.2f}')} |")
    return "\n".join(rows)


def _shape(s:str) -> tuple:
    v = tuple(int(x) for x in re.split(r"[x,]", s))
    if len(v) == 1: v = v * 3
    if len(v) != 3 or min(v) < 1: raise argparse.ArgumentTypeError(f"shape {s!r}: write it like 512x512x256 (or 64 for 64x64x64)")
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    ap.add_argument("--shapes", nargs="+", type=_shape, default=None, help="volume shapes, e.g. 64 128x128x64 512x512x256 (default 64^3 .. 512^3)")
    ap.add_argument("--measure-shapes", nargs="*", type=_shape, default=None,
                    help="shapes to measure for real (default: all on CUDA; 64^3 and 96x96x64 on the CPU)")
    ap.add_argument("--quick", action="store_true", help="tiny widths, one 64x64x32 shape; on a CPU estimates only unless --measure-shapes is given, and then only the latent denoising step (a smoke test)")
    ap.add_argument("--out", default=str(ROOT/"benchmarks"/"results"), help="folder for <device>-<date>.json and .png")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for CPU measurements")
    ap.add_argument("--no-plot", action="store_true", help="skip the PNG")
    ap.add_argument("--replot", metavar="JSON", help="only redraw the PNG (and print the tables) of an earlier result")
    a = ap.parse_args(argv)
    if a.replot:
        path = Path(a.replot)
        make_plot(json.loads(path.read_text(encoding="utf-8")), path.with_suffix(".png"))
    else: path = run(a.device, a.shapes, a.quick, a.out, a.measure_shapes, a.threads, not a.no_plot)
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    print(); print(table(doc)); print()
    if any(r["peak_bytes_measured"] for r in doc["records"]): print(measured_table(doc))


if __name__ == "__main__":
    main()
