__version__ = "0.1.0"
"""medlord-nb: synthetic 3D CT conditioned on segmentation masks, at full resolution on small GPUs.

The stable entry points are re-exported here and imported lazily, so `import medlord_nb` stays fast.
"""

_EXPORTS = {
    "load_sample": "data", "list_samples": "data", "load_volume": "data", "load_image_and_mask": "data",
    "CTVolume": "data", "LABELS": "data", "hu_to_unit": "data", "unit_to_hu": "data", "to_unit": "data",
    "PatchSampler": "data", "global_coords": "data",
    "seed_everything": "core", "make_run_dir": "core",
    "montage": "viz", "orthoslices": "viz", "slice_browser": "viz", "view3d": "viz",
    "run_experiment": "runner",
    "fid": "evaluation", "evaluate_folders": "evaluation", "conditioning_report": "evaluation",
    "train_segmenter": "segmentation", "segment": "segmentation", "VQGAN": "vqgan", "tiled_decode": "vqgan",
    "UNet": "unet", "NoiseSchedule": "schedules", "Trainer": "training", "load_weights": "training",
    "ControlNetLite": "conditioning", "ControlledUNet": "conditioning", "SPADEUNet": "conditioning", "CFGDenoiser": "conditioning",
    "LSDMUNet": "lsdm_nets", "LSDMVQGAN": "lsdm_nets",
    "LatentDiffusion": "latents", "encode_dataset": "latents",
    "PatchDDPMConfig": "patch_ddpm", "MedLoRDConfig": "latent_diffusion", "MedLSDMConfig": "latent_diffusion",
    "plan": "memory", "PlanError": "memory", "estimate_peak": "memory",
    "prepare": "datasets", "load_manifest": "datasets", "ManifestDataset": "datasets",
    "make_report": "report",
    "load_pretrained": "zoo", "list_pretrained": "zoo",
}

def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(f"medlord_nb.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'medlord_nb' has no attribute {name!r}")

def __dir__(): return sorted(list(globals()) + list(_EXPORTS))
