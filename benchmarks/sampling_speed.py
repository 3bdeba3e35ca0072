"""Seconds per sampling step on a CPU: our one pass and windows against MONAI's SlidingWindowInferer, in one run.

The issue: 10 DDIM steps of the tiny patch DDPM (widths 8, 16) over a 512x512x64 grid took 272 s, with 250 s of
system time beside 250 s of user time. The system time was the kernel zeroing fresh pages: glibc hands every block
above 32 MiB out as a new mmap, and the network's activations at this size are all above it. The fix is
`fullres.reusing_heap`, which `fullres.sample_volume` uses whenever the model runs on the CPU.

One process, one run, the variants interleaved (repeat r runs every variant once, in a rotated order) on the same
network weights, condition (lung1's class map resampled onto the grid, with its body class from HU) and starting noise:

| variant | what runs |
|---|---|
| one pass, plain U-Net (before / after) | `sample_volume(window=None)` with the U-Net's plain ops; `reuse_heap=False` / `True` |
| one pass, lean U-Net (before / after) | the same with `lean.make_lean` (what `patch_ddpm.build_model` ships) |
| windows, ours (before / after) | `sample_volume(window=W)` (MONAI's `sliding_window_inference` inside `fullres.windowed_fn`) |
| windows, MONAI stock (and + reusing_heap) | `samplers.sample_loop` driving MONAI's `SlidingWindowInferer(W, overlap, mode="gaussian")` |

For each: seconds per step (median over steps and repeats; every step is timed, the first included), user and
system CPU seconds per step, minor page faults (GiB of fresh pages), peak RSS (VmHWM, reset before each variant
through /proc/self/clear_refs) and the max |difference| of the final sample from MONAI's stock windows. Writes
`<out>/sampling-cpu-<date>.json` with the CPU, its cores, torch threads and the load average at start and end.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/sampling_speed.py                      # 512x512x64, 2 steps, 128x128x64 windows
    python benchmarks/sampling_speed.py --shape 128x128x64 --window 64x64x32 --variants one_pass_lean_before one_pass_lean_after
    python benchmarks/sampling_speed.py --dry_run                                     # print the resolved settings, run nothing
"""
from __future__ import annotations
import argparse, datetime, os, platform, resource, statistics, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))

import numpy as np
import torch
import torch.nn.functional as F
import monai
from monai.inferers import SlidingWindowInferer
from medlord_nb.core import save_json
from medlord_nb.data import load_sample, class_map
from medlord_nb.samplers import DDIMSampler, sample_loop
from medlord_nb.fullres import sample_volume, reusing_heap
from medlord_nb import patch_ddpm as pd

VARIANTS = {  # name: (label, route, lean U-Net, reuse heap)
    "one_pass_plain_before": ("one pass, plain U-Net, before", "one_pass", False, False),
    "one_pass_plain_after": ("one pass, plain U-Net, after (reusing_heap)", "one_pass", False, True),
    "one_pass_lean_before": ("one pass, lean U-Net, before (the issue's setting)", "one_pass", True, False),
    "one_pass_lean_after": ("one pass, lean U-Net, after (reusing_heap)", "one_pass", True, True),
    "windows_ours_before": ("windows, ours, before", "ours", True, False),
    "windows_ours_after": ("windows, ours, after (reusing_heap)", "ours", True, True),
    "windows_monai": ("windows, MONAI SlidingWindowInferer", "monai", True, False),
    "windows_monai_heap": ("windows, MONAI SlidingWindowInferer + reusing_heap", "monai", True, True),
}


def _shape(s:str) -> tuple[int, ...]:
    v = tuple(int(a) for a in s.lower().split("x"))
    if len(v) != 3 or min(v) < 1: raise argparse.ArgumentTypeError(f"shape {s!r}: write it like 512x512x64")
    return v


def _status(key:str) -> int:
    "A byte count from /proc/self/status (VmRSS, VmHWM)."
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"): return int(line.split()[1]) * 1024
    return 0


def _reset_peak():
    "Reset VmHWM to the current RSS (Linux >= 4.0), so each variant's peak is its own."
    with open("/proc/self/clear_refs", "w") as f: f.write("5")


def device_info() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), None)
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "mem_total_bytes": mem,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "monai": monai.__version__,
            "python": platform.python_version(), "libc": "-".join(platform.libc_ver()), "kernel": platform.release(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "shared": "the cores were shared with other busy jobs: wall times are noisy and long; user + system CPU seconds "
                      "and page faults are the steadier measures (see load_average_start / load_average_end)"}


def make_setup(shape, groups:int, seed:int):
    "The issue's network (widths 8, 16, no attention) with perturbed weights, and lung1's class map resampled onto `shape`."
    cfg = pd.PatchDDPMConfig(channels=(8, 16), attention_levels=(False, False), norm_num_groups=groups)
    v = load_sample("lung1")
    cls = class_map(v.labels, cfg.labels, cfg.body_class, image=v.image, name="lung1")            # body class from HU
    cls = F.interpolate(torch.from_numpy(cls)[None, None].float(), size=tuple(shape), mode="nearest")[0, 0].to(torch.uint8).numpy()
    cond = pd.condition(cls, cfg.num_classes)[None]
    torch.manual_seed(seed)
    model = pd.build_model(cfg).eval()                                                            # lean, as shipped
    with torch.no_grad():                                                                          # zero-initialised convs would make
        for p in model.parameters(): p.add_(torch.randn_like(p) * 0.05)                            # the output trivial
    return cfg, model, cond, np.bincount(cls.ravel(), minlength=cfg.num_classes).tolist()


def run_variant(name, model, cfg, cond, shape, steps, window, overlap, seed):
    "Sample once with one variant; per-step wall, user and system seconds, faults, peak RSS, and the final sample."
    _, route, lean_on, heap = VARIANTS[name]
    lean = model.net.lean
    for m in model.modules():                                                                      # plain or lean U-Net ops
        if hasattr(m, "lean") and m is not model: m.lean = lean if lean_on else None
    sampler = DDIMSampler(cfg.noise_schedule(), num_inference_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    marks = []
    def mark(*_):
        t = os.times(); marks.append((time.perf_counter(), t.user, t.system, resource.getrusage(resource.RUSAGE_SELF).ru_minflt))
    load0, rss0 = os.getloadavg(), _status("VmRSS")
    _reset_peak(); mark()
    try:
        if route == "monai":
            inferer = SlidingWindowInferer(tuple(window), sw_batch_size=1, overlap=overlap, mode="gaussian")
            net = lambda w, t: model(w[:, :1], t.reshape(-1)[:1].expand(w.shape[0]), w[:, 1:])
            fn = lambda x_t, t: inferer(torch.cat([x_t, cond], 1), net, t)
            with reusing_heap(heap):
                x = sample_loop(fn, sampler, shape=(1, 1, *shape), generator=gen, progress=False, callback=mark)
        else:
            x = sample_volume(model, sampler, (1, 1, *shape), cond, window=None if route == "one_pass" else tuple(window), overlap=overlap,
                              generator=gen, device="cpu", progress=False, reuse_heap=heap, callback=mark)
    finally:
        for m in model.modules():
            if hasattr(m, "lean") and m is not model: m.lean = lean
    peak = _status("VmHWM")
    d = [(b[0] - a[0], b[1] - a[1], b[2] - a[2], (b[3] - a[3]) * resource.getpagesize()) for a, b in zip(marks, marks[1:])]
    return x, {"wall_s": [v[0] for v in d], "user_s": [v[1] for v in d], "sys_s": [v[2] for v in d], "faulted_bytes": [v[3] for v in d],
               "peak_rss_bytes": peak, "rss_start_bytes": rss0, "peak_rss_growth_bytes": peak - rss0,
               "load_average_start": load0, "load_average_end": os.getloadavg()}


def summarise(name, runs, diff):
    label, route, lean_on, heap = VARIANTS[name]
    cat = lambda k: [v for r in runs for v in r[k]]
    med = lambda k: statistics.median(cat(k))
    return {"variant": name, "label": label, "route": route, "lean": lean_on, "reuse_heap": heap,
            "s_per_step": med("wall_s"), "user_s_per_step": med("user_s"), "sys_s_per_step": med("sys_s"),
            "faulted_bytes_per_step": med("faulted_bytes"), "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
            "peak_rss_growth_bytes": max(r["peak_rss_growth_bytes"] for r in runs), "max_abs_diff_vs_monai": diff,
            "steps_timed": len(cat("wall_s")), "runs": runs}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", type=_shape, default=(512, 512, 64), help="volume X x Y x Z (default 512x512x64)")
    ap.add_argument("--steps", type=int, default=2, help="DDIM steps per sample (default 2)")
    ap.add_argument("--window", type=_shape, default=(128, 128, 64), help="window of ours and MONAI's (default 128x128x64)")
    ap.add_argument("--overlap", type=float, default=0.25, help="window overlap (default 0.25)")
    ap.add_argument("--repeats", type=int, default=1, help="samples per variant, interleaved (default 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, usually the cores)")
    ap.add_argument("--groups", type=int, default=4, help="GroupNorm groups of the U-Net (default 4)")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="which variants (default all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT/"benchmarks"/"results"), help="folder for sampling-cpu-<date>.json")
    ap.add_argument("--dry_run", action="store_true", help="print the resolved settings and exit")
    a = ap.parse_args(argv)
    if a.steps < 1 or a.repeats < 1: ap.error("--steps and --repeats must be >= 1")
    if not 0 <= a.overlap < 1: ap.error(f"--overlap must be in [0, 1), got {a.overlap}")
    if a.threads: torch.set_num_threads(a.threads)
    config = {"shape": a.shape, "steps": a.steps, "window": a.window, "overlap": a.overlap, "repeats": a.repeats, "groups": a.groups,
              "variants": a.variants, "seed": a.seed, "sampler": "ddim", "channels": (8, 16), "blend": "gaussian", "sw_batch_size": 1}
    print(config, flush=True)
    if a.dry_run: return config
    dev = device_info(); dev["load_average_start"] = os.getloadavg()
    t0 = time.time()
    cfg, model, cond, counts = make_setup(a.shape, a.groups, a.seed)
    config["condition"] = {"sample": "lung1", "resampled_to": a.shape, "class_voxels": counts}
    runs, finals = {n: [] for n in a.variants}, {}
    path = Path(a.out) / f"sampling-cpu-{datetime.date.today().isoformat()}.json"
    with torch.no_grad():
        for r in range(a.repeats):
            order = a.variants[r % len(a.variants):] + a.variants[:r % len(a.variants)]       # rotate: no variant always first
            for n in order:
                x, rec = run_variant(n, model, cfg, cond, a.shape, a.steps, a.window, a.overlap, a.seed)
                runs[n].append(rec); finals[n] = x
                print(f"[{r}] {n:24s} wall/step {[round(v, 1) for v in rec['wall_s']]} user {[round(v, 1) for v in rec['user_s']]} "
                      f"sys {[round(v, 1) for v in rec['sys_s']]} faulted GiB {[round(v / 2**30, 2) for v in rec['faulted_bytes']]} "
                      f"peak RSS {rec['peak_rss_bytes'] / 2**30:.2f} GiB load {rec['load_average_end'][0]:.1f}", flush=True)
            out = _write(path, a, config, dev, runs, finals, t0, r + 1)                          # after every repeat: a kill keeps the data
    for r in out["results"]:
        d = "-" if r["max_abs_diff_vs_monai"] is None else f"{r['max_abs_diff_vs_monai']:.2e}"
        print(f"{r['label']:52s} {r['s_per_step']:8.1f} {r['user_s_per_step']:7.1f} {r['sys_s_per_step']:7.1f} "
              f"{r['faulted_bytes_per_step'] / 2**30:7.2f}Gi {r['peak_rss_bytes'] / 2**30:7.2f}Gi {d:>12s}")
    print(f"load average {dev['load_average_start']} -> {out['device']['load_average_end']}; wrote {path}")
    return out


def _write(path, a, config, dev, runs, finals, t0, repeats_done):
    ref = finals.get("windows_monai")
    results = [summarise(n, runs[n], None if ref is None else float((finals[n] - ref).abs().max())) for n in a.variants if runs[n]]
    dev = {**dev, "load_average_end": os.getloadavg()}
    out = {"benchmark": "sampling_speed", "date": datetime.datetime.now().isoformat(timespec="seconds"), "seconds_total": time.time() - t0,
           "repeats_done": repeats_done, "config": config, "device": dev, "results": results,
           "notes": ["seconds per step: median over every step of every repeat (the first step, where a reused heap grows, included)",
                     "max_abs_diff_vs_monai: final sample minus MONAI stock windows' final sample; one pass differs by design "
                     "(each GroupNorm normalises with the statistics of what it sees: the whole volume or one window)",
                     "peak_rss_bytes: VmHWM after resetting it to the current RSS before the variant; peak_rss_growth_bytes subtracts "
                     "the RSS at that moment (model, condition, earlier samples)"]}
    save_json(out, path)
    print(f"\n{'variant':52s} {'s/step':>8s} {'user':>7s} {'sys':>7s} {'faulted':>9s} {'peak RSS':>9s} {'max|d| MONAI':>12s}")
    return out


if __name__ == "__main__":
    main()
