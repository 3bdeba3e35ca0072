"""Med-LSDM's own networks (lsdm_nets): shapes in 2D and 3D, SPADE GroupNorm against a per-sample version,
guidance trained with condition dropout, the codebook latent scaling, the VQ-GAN losses, and a few training steps."""
import math
import pytest
import torch
import torch.nn.functional as F
from fastcore.test import test_close as close, test_eq as eq, test_fail as fails
from medlord_nb.conditioning import SPADEGroupNorm, ConditionDropout, CFGDenoiser, null_condition
from medlord_nb.schedules import NoiseSchedule
from medlord_nb.vqgan import EMAQuantizer
from medlord_nb.lsdm_nets import LSDMUNet, LSDMVQGAN, LSDMVQLoss, CodebookScaler, DepthAttention

TINY = dict(base_channels=8, channel_mults=(1, 2), attn_heads=2, attn_head_channels=4, spade_hidden=4, norm_num_groups=4)
SHAPES = {2: (2, 4, 8, 8), 3: (2, 4, 8, 8, 4)}

def _onehot(shape, k=3):
    return F.one_hot(torch.randint(0, k, shape), k).movedim(-1, 1).float()

@pytest.mark.parametrize("sd", [2, 3])
def test_unet_shapes(sd):
    torch.manual_seed(0)
    shape = SHAPES[sd]
    net = LSDMUNet(sd, 4, label_channels=3, **TINY)
    eq(net(torch.randn(shape), torch.tensor([1, 300]), _onehot((2,) + tuple(4 * s for s in shape[2:]))).shape, shape)
    eq(any(isinstance(m, DepthAttention) for m in net.modules()), sd == 3)
    plain = LSDMUNet(sd, 4, label_channels=0, **TINY)
    eq(plain(torch.randn(shape), 7).shape, shape)
    fails(lambda: net(torch.randn(shape), 7), contains="cond has shape")

@pytest.mark.parametrize("sd", [2, 3])
def test_vqgan_shapes(sd):
    torch.manual_seed(0)
    shape = (1, 1) + (16, 16, 8)[:sd]
    vq = LSDMVQGAN(sd, num_embeddings=32, spade_label_channels=3)
    x = torch.randn(shape)
    eq(vq.encode(x).shape, (1, 8) + tuple(s // 4 for s in shape[2:]))
    eq(vq(x, torch.rand((1, 3) + shape[2:])).recon.shape, shape)

@pytest.mark.parametrize("sd", [2, 3])
def test_spade_groupnorm_matches_per_sample(sd):
    torch.manual_seed(0)
    sp = SPADEGroupNorm(4, 8, 3, hidden=4, spatial_dims=sd, zero_init=False, mode="nearest")
    x = torch.randn((2, 8) + (6, 4, 4)[:sd]); seg = _onehot((2,) + (12, 8, 8)[:sd])
    outs = []
    for b in range(2):                                           # the naive version: one sample, GroupNorm by hand
        g = x[b].reshape(4, -1)
        n = ((g - g.mean(1, keepdim=True)) / torch.sqrt(g.var(1, unbiased=False, keepdim=True) + sp.norm.eps)).reshape(x[b].shape)
        a = sp.shared(F.interpolate(seg[b:b + 1], size=x.shape[2:], mode="nearest"))
        outs.append(n * (1 + sp.gamma(a)[0]) + sp.beta(a)[0])
    close(sp(x, seg), torch.stack(outs), eps=1e-5)

def test_guidance_with_dropout():
    torch.manual_seed(0)
    net = ConditionDropout(LSDMUNet(3, 4, label_channels=3, **TINY), p=0.5, seed=0).eval()
    x, t, c = torch.randn(SHAPES[3]), torch.tensor([5, 400]), _onehot((2, 16, 16, 8))
    u, cc = net(x, t, null_condition(c)), net(x, t, c)
    assert not torch.allclose(u, cc)
    close(CFGDenoiser(net, 0.0, shortcut=False)(x, t, c), u, eps=1e-5)      # the null map: the unconditional branch
    close(CFGDenoiser(net, 1.0, shortcut=False)(x, t, c), cc, eps=1e-5)     # w = 1: the conditional output
    close(CFGDenoiser(net, 1.5)(x, t, c), u + 1.5 * (cc - u), eps=1e-5)
    net.train()                                                  # training mode drops some maps to the null map
    fails(lambda: CFGDenoiser(net, 1.5)(x, t, c), contains="training mode")

def test_codebook_scaling_round_trip():
    torch.manual_seed(0)
    q = EMAQuantizer(32, 8); q.embedding.mul_(2.5).sub_(0.3)
    zq = q(torch.randn(2, 8, 4, 4, 2) * 2, update=False).z_q
    sc = CodebookScaler.from_codebook(q)
    s = sc.scale(zq)
    assert s.min() >= -1 - 1e-6 and s.max() <= 1 + 1e-6
    close(sc.scale(q.embedding).min(), -1.0, eps=1e-6); close(sc.scale(q.embedding).max(), 1.0, eps=1e-6)
    close(sc.unscale(s), zq, eps=1e-5)
    fails(lambda: CodebookScaler.from_codebook(torch.zeros(4, 8)), contains="no range")

def test_vq_losses_tiny():
    torch.manual_seed(0)
    crit = LSDMVQLoss(disc_channels=4, disc_layers=2, disc_start=2, perceptual=lambda a, b: (a - b).abs().mean((1, 2, 3)))
    x = torch.rand(2, 1, 16, 16, 16); xh = torch.rand(2, 1, 16, 16, 16, requires_grad=True)
    early = crit.generator(x, xh, step=0)
    eq(float(early.gan), 0.0); eq(float(early.feature), 0.0)
    close(early.l1, 4 * (xh - x).abs().mean(), eps=1e-6)
    late = crit.generator(x, xh, step=5)
    assert torch.isfinite(late.total) and late.feature > 0
    late.total.backward()
    assert torch.isfinite(xh.grad).all() and xh.grad.abs().sum() > 0
    d = crit.discriminator(x, xh, step=5)
    assert torch.isfinite(d) and d > 0
    eq(float(crit.generator(x, x.clone(), step=5).feature.detach()), 0.0)           # a perfect reconstruction matches every feature

def test_smoke_training_steps():
    torch.manual_seed(0)
    sched = NoiseSchedule("cosine", num_train_timesteps=500)
    model = ConditionDropout(LSDMUNet(3, 4, label_channels=3, **TINY), p=0.1, seed=0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    z0 = torch.rand(SHAPES[3]) * 2 - 1; c = _onehot((2, 32, 32, 16))
    g = torch.Generator().manual_seed(0); losses = []
    for _ in range(5):
        t = torch.randint(0, 500, (2,), generator=g); eps = torch.randn(z0.shape, generator=g)
        loss = F.l1_loss(model(sched.add_noise(z0, eps, t), t, c), eps)            # L1 on epsilon
        opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and len(set(losses)) > 1

def test_med_lsdm_backbone_trains_and_guides_in_the_system(tmp_path):
    "backbone 'lsdm' behind MedLSDMConfig: built by build_denoiser, trained by the stage's Trainer, resumed from its checkpoint, guided."
    from medlord_nb.latent_diffusion import MedLSDMConfig, build_denoiser, LatentBatches, load_weights
    from medlord_nb.training import Trainer
    cfg = MedLSDMConfig.from_dict(dict(backbone="lsdm", latent_channels=4, channels=[8, 16], attention_levels=[False, True],
                                       num_head_channels=4, norm_num_groups=4, spade_hidden=4, steps=3, warmup_steps=1,
                                       crop_size=[32, 32, 16], ckpt_every=3, device="cpu", amp=False))
    torch.manual_seed(0)
    K, f = cfg.num_classes, cfg.downsample_factor
    zs = [torch.randn(4, 8, 8, 4)]; conds = [_onehot((1, 32, 32, 16), K)[0]]
    batches = LatentBatches(zs, conds, 1, (8, 8, 4), f)
    tr = Trainer(build_denoiser(cfg), cfg.noise_schedule(), batches, cfg.train_config(seed=1), "cpu", tmp_path/"ldm", progress=False)
    hist = tr.fit()
    assert len(hist) >= 1 and all(math.isfinite(h[1]) for h in hist)
    den = load_weights(build_denoiser(cfg), tmp_path/"ldm"/"last.pt", ema=True, device="cpu")
    eq(type(den.model), LSDMUNet)
    x, t, c = torch.randn(1, 4, 8, 8, 4), torch.tensor([10]), conds[0][None]
    with torch.no_grad():
        close(den(x, t, c), tr.eval_model(x, t, c), eps=1e-5)
        eq(CFGDenoiser(den, cfg.guidance_scale)(x, t, c).shape, x.shape)
