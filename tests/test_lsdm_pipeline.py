"""The med_lsdm system with Med-LSDM's own pieces: its VQ-GAN (`vqgan_kind: lsdm`, trained by vqgan.VQGANTrainer with
its losses swapped in, discriminators from `vqgan_disc_start`), its denoiser (`backbone: lsdm`) and its latent scaling
(`latent_scaling: codebook_minmax`: the codebook's [min, max] mapped onto [-1, 1] by a factor and a shift, recorded next
to the denoiser, fed to training, undone before decoding, restored by load_trained, and kept on resume)."""
import numpy as np
import torch
import torch.nn as nn
from fastcore.test import test_close as close, test_eq as eq
from medlord_nb.core import load_json
from medlord_nb.latent_diffusion import (MedLSDMConfig, train_all, load_trained, sample_latent, prepare_data,
                                         condition_region, prepare, train_vqgan_stage, SCALE_FILE)
from medlord_nb.lsdm_nets import LSDMVQGAN
from medlord_nb.latents import LatentDiffusion, encode_volume, decode_latent
from medlord_nb.datasets import load_case

TINY = dict(train_samples=("lung1",), recon_sample=None, vqgan_channels=(8, 16), latent_channels=4, num_embeddings=32,
            vqgan_patch_size=(16, 16, 8), vqgan_steps=3, adv_warmup_steps=1, disc_channels=4, disc_layers=1, channels=(8, 16),
            attention_levels=(False, True), num_head_channels=4, norm_num_groups=4, steps=2, num_inference_steps=2, device="cpu",
            image_downsample=(4, 4, 2), crop_size=(16, 16, 8), spade_hidden=4, backbone="lsdm", latent_scaling="codebook_minmax",
            vqgan_kind="lsdm", vqgan_disc_start=1,
            ckpt_every=1000, amp=False, warmup_steps=1)

def test_codebook_minmax_through_the_stages(tmp_path):
    cfg = MedLSDMConfig(**TINY)
    r = train_all(cfg, tmp_path, progress=False)
    vq = r.vqgan_trainer.model.eval()
    assert isinstance(vq, LSDMVQGAN) and r.vqgan_trainer.history[-1]["d_loss"] > 0     # Med-LSDM's VQ-GAN, its discriminators on
    e = vq.quantizer.embedding
    rec = load_json(tmp_path/"checkpoints"/"ldm"/SCALE_FILE)
    eq(rec["latent_scaling"], "codebook_minmax")
    close(torch.stack([e.min(), e.max()]) * rec["scale_factor"] + rec["shift"], torch.tensor([-1.0, 1.0]), eps=1e-5)
    eq((r.ldm.scale_factor, r.ldm.scale_shift), (rec["scale_factor"], rec["shift"]))
    # the latents the denoiser learned (codes) lie in [-1, 1]; encode -> decode through the affine map is the VQ-GAN's own
    x = torch.from_numpy(prepare_data(cfg)["lung1"].image).float()[None, None, :16, :16, :8]
    ld = LatentDiffusion(vq, nn.Identity(), cfg.noise_schedule(), r.ldm.scale_factor, shift=r.ldm.scale_shift)
    s = ld.encode(x)
    assert s.min() >= -1 - 1e-5 and s.max() <= 1 + 1e-5
    close(ld.decode(s, x.shape[2:]), decode_latent(vq, encode_volume(vq, x[0]), x.shape[2:], amp=False)[None], eps=1e-5)
    # load_trained restores the factor and the shift; a sample has the region's shape and finite HU
    lm = load_trained(cfg, tmp_path)
    eq((lm.scale_factor, lm.scale_shift), (rec["scale_factor"], rec["shift"]))
    region = condition_region(load_case("lung1"), cfg)
    out = sample_latent(lm, cfg, prepare(region, cfg.labels, cfg.body_class, cfg.image_downsample), progress=False)
    eq(out.shape, region.shape); assert np.isfinite(out).all() and -1000 <= out.min() and out.max() <= 1000
    # resume: more steps continue from the checkpoints with the recorded scale
    r2 = train_all(cfg.replace(steps=3), tmp_path, progress=False)
    eq((r2.ldm.trainer.step, r2.ldm.scale_factor, r2.ldm.scale_shift), (3, rec["scale_factor"], rec["shift"]))


def test_lsdm_vqgan_resumes_exactly(tmp_path):
    cfg = MedLSDMConfig(**TINY)
    data = prepare_data(cfg)
    train_vqgan_stage(cfg.replace(vqgan_steps=2), data, tmp_path/"a", progress=False)     # 2 steps, then resumed to 3
    a = train_vqgan_stage(cfg, data, tmp_path/"a", progress=False)
    b = train_vqgan_stage(cfg, data, tmp_path/"b", progress=False)                          # 3 in one go
    eq(a.step, 3)
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values()): close(v.float(), w.float(), eps=1e-6)
    for v, w in zip(a.disc.state_dict().values(), b.disc.state_dict().values()): close(v.float(), w.float(), eps=1e-6)
