"""`--method svd` (Effort's orthogonal subspace decomposition) on the tiny open_clip model with random weights:
init equals the base, the merged change is confined to the targets with rank <= 2r per block, counts from shapes
(and Effort's published ViT-L/14 figure), the losses against Effort's own formulas, save/load and merge."""

from __future__ import annotations

import re
from types import SimpleNamespace

import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clipforensics.core.errors import UserError
from clipforensics.extract.encoders import load_model
from clipforensics.extract.settings import ModelSettings
from clipforensics.lora.methods.base import METHODS
from clipforensics.lora.methods.svd import Residual, SvdResidual

TINY_MODEL = ModelSettings(model="tiny-vit", pretrained="none")
RANK = 2
SVD = METHODS.get("svd")
# the weights each target set reaches, with how many row blocks Effort decomposes separately (q, k, v)
ATTN = {r"\.attn\.in_proj_weight": 3, r"\.attn\.out_proj\.weight": 1}
MLP = {r"\.mlp\.c_fc\.weight": 1, r"\.mlp\.c_proj\.weight": 1}
TARGETS = {"attn": ATTN, "mlp": MLP, "attn+mlp": {**ATTN, **MLP}}


def settings(targets: str = "attn+mlp", rank: int = RANK, **weights: float) -> SimpleNamespace:
    return SimpleNamespace(rank=rank, targets=targets, **weights)


def base() -> nn.Module:
    return load_model(TINY_MODEL, "cpu", "fp32").model


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def targeted_weights(state: dict[str, torch.Tensor], targets: str) -> dict[str, int]:
    """Independently of the method: image-tower weight names of the target set, with their block counts."""
    out = {}
    for name in state:
        for suffix, blocks in TARGETS[targets].items():
            if re.fullmatch(r"visual\.transformer\.resblocks\.\d+" + suffix, name):
                out[name] = blocks
    return out


def train(adapted: nn.Module, s: SimpleNamespace, steps: int = 3) -> None:
    """A few Adam steps of cross-entropy on two embedding dimensions plus the method's losses; every factor must get
    a gradient on the first step (out_proj too: MHA reads its weight without calling out_proj.forward)."""
    params = SVD.trainable(adapted)
    optimizer = torch.optim.Adam(params.values(), lr=1e-2)
    x, labels = images(), torch.tensor([0, 1, 0, 1])
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        embeddings = adapted.encode_image(x)
        loss = F.cross_entropy(embeddings[:, :2], labels) + SVD.extra_loss(adapted, embeddings, labels, s)
        loss.backward()
        if step == 0:
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())
        optimizer.step()


def residuals(adapted: nn.Module) -> list[tuple[nn.Module, Residual]]:
    return [(m, m[0]) for m in adapted.modules() if isinstance(m, nn.ModuleList) and m and isinstance(m[0], Residual)]


@pytest.mark.parametrize("targets", list(TARGETS))
def test_at_init_the_tower_equals_the_base(targets):
    x = images()
    reference = base()
    adapted = SVD.attach(base(), settings(targets))
    with torch.no_grad():
        assert torch.equal(adapted.encode_image(x), reference.encode_image(x))  # W0 + (R0 - R0), exactly
    # with gradients on, MHA leaves its fused fast path: same weights, other rounding
    assert torch.allclose(adapted.encode_image(x), reference.encode_image(x), atol=1e-5)


@pytest.mark.parametrize("targets", list(TARGETS))
def test_training_changes_only_the_targets_each_block_by_rank_at_most_2r(targets):
    reference = base().state_dict()
    s = settings(targets)
    merged = SVD.merge(train_and_return(s)).state_dict()
    assert list(merged) == list(reference)
    changed = {name for name in reference if not torch.equal(merged[name], reference[name])}
    expected = targeted_weights(reference, targets)
    assert changed == set(expected)
    for name, blocks in expected.items():
        for delta in (merged[name].double() - reference[name].double()).chunk(blocks, dim=0):
            rank = torch.linalg.matrix_rank(delta, rtol=1e-4)
            assert 1 <= rank <= 2 * RANK, (name, int(rank))


def train_and_return(s: SimpleNamespace) -> nn.Module:
    adapted = SVD.attach(base(), s)
    train(adapted, s)
    return adapted


@pytest.mark.parametrize("targets", list(TARGETS))
def test_trainable_count_equals_the_count_from_shapes(targets):
    """Effort trains U (d_out x r), S (r) and V (r x d_in) per matrix; biases and the main weight stay frozen."""
    reference = base().state_dict()
    expected = 0
    for name, blocks in targeted_weights(reference, targets).items():
        d_out, d_in = reference[name].shape[0] // blocks, reference[name].shape[1]
        expected += blocks * (RANK * (d_out + d_in) + RANK)
    adapted = SVD.attach(base(), settings(targets))
    assert sum(p.numel() for p in SVD.trainable(adapted).values()) == expected
    assert all(re.search(r"\.parametrizations\.\w+\.0\.[USV]$", n) for n in SVD.trainable(adapted))


def test_effort_published_vit_l14_configuration_counts_0_19_m():
    """Effort: r_main = 1024 - 1 on q, k, v, out of 24 blocks = a rank-1 residual (`--rank 1 --targets attn`).
    Built on the meta device: shapes only, no weights, no memory."""
    with torch.device("meta"):
        clip = open_clip.create_model("ViT-L-14", pretrained=None, device="meta")
    clip.requires_grad_(False)
    count = sum(p.numel() for p in SVD.trainable(SVD.attach(clip, settings("attn", rank=1))).values())
    assert count == 24 * 4 * (1024 + 1024 + 1) == 196_704
    assert 0.19e6 <= count < 0.20e6  # the paper's "0.19 M" (0.197 M; 0.188 Mi)


def effort_orthogonal(w0: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Effort's compute_orthogonal_loss on one square block, with U_r, V_r from this test's own SVD of W0."""
    keep = w0.shape[0] - u.shape[1]
    u_svd, _, vh_svd = torch.linalg.svd(w0.double())
    u_full = torch.cat([u_svd[:, :keep], u.double()], dim=1)
    v_full = torch.cat([vh_svd[:keep], v.double()], dim=0)
    eye = torch.eye(w0.shape[0], dtype=torch.float64)
    return 0.5 * torch.norm(u_full @ u_full.t() - eye) + 0.5 * torch.norm(v_full @ v_full.t() - eye)


def test_losses_are_zero_at_init_and_match_efforts_formulas_after_a_perturbation():
    adapted = SVD.attach(base(), settings("attn"))
    pairs = residuals(adapted)
    for plist, residual in pairs:
        assert residual.orthogonal_loss().max() < 1e-5
        assert torch.equal(residual.keep_sv_loss(plist.original), torch.zeros(residual.S.shape[0]))
    with torch.no_grad():
        for i, p in enumerate(SVD.trainable(adapted).values()):
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(i)))
    orth, keep = [], []
    for plist, residual in pairs:
        ours_orth, ours_keep = residual.orthogonal_loss(), residual.keep_sv_loss(plist.original)
        for b, w0 in enumerate(residual.blocks(plist.original)):
            current = w0.double() + residual.delta()[b].double()
            effort_keep = (torch.norm(current) ** 2 - torch.norm(w0.double()) ** 2).abs()
            effort_orth = effort_orthogonal(w0, residual.U[b].detach(), residual.V[b].detach())
            assert effort_orth > 0.01 and effort_keep > 0
            assert torch.allclose(ours_orth[b].double(), effort_orth, rtol=1e-4)
            assert torch.allclose(ours_keep[b].double(), effort_keep, rtol=1e-3)
            orth.append(effort_orth)
            keep.append(effort_keep)
    # Effort's commented get_losses: lambda * sum over modules of (orth + keepsv) / number of modules
    weighted = settings("attn", svd_orth_weight=0.5, svd_sv_weight=2.0)
    total = SVD.extra_loss(adapted, torch.zeros(1), torch.zeros(1), weighted)
    expected = (0.5 * torch.stack(orth) + 2.0 * torch.stack(keep)).mean()
    assert torch.allclose(total.double(), expected, rtol=1e-4)
    assert SVD.extra_loss(adapted, torch.zeros(1), torch.zeros(1),
                          settings("attn", svd_orth_weight=0, svd_sv_weight=0)) is None


def test_save_then_load_on_a_fresh_base_gives_identical_outputs_without_an_svd(tmp_path, monkeypatch):
    s = settings()
    adapted = train_and_return(s)
    SVD.save(adapted, tmp_path, s)
    x = images(seed=1)
    with torch.no_grad():
        before = adapted.encode_image(x)

    def no_lapack(*args, **kwargs):
        raise AssertionError("load must not decompose")
    monkeypatch.setattr(torch.linalg, "svd", no_lapack)
    reloaded = SVD.load(base(), tmp_path, s)
    with torch.no_grad():
        assert torch.equal(reloaded.encode_image(x), before)
    assert all(torch.equal(v, SVD.state(adapted)[k]) for k, v in SVD.state(reloaded).items())
    with pytest.raises(UserError, match="targets or rank"):
        SVD.load(base(), tmp_path, settings(rank=RANK + 1))


def test_merge_gives_a_plain_open_clip_state_dict_that_loads_into_open_clip():
    adapted = train_and_return(settings())
    x = images(seed=2)
    with torch.no_grad():
        before = adapted.encode_image(x)
    merged = SVD.merge(adapted)
    fresh = base()
    assert not any(isinstance(m, Residual) or "parametrizations" in n for n, m in merged.named_modules())
    assert type(merged.visual.transformer.resblocks[0].attn) is nn.MultiheadAttention
    assert list(merged.state_dict()) == list(fresh.state_dict())
    fresh.load_state_dict(merged.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(fresh.encode_image(x), before, atol=1e-5)


def test_a_rank_beyond_the_blocks_and_negative_loss_weights_are_one_line_errors():
    with pytest.raises(UserError, match="--rank 129 is larger than svd allows"):
        SVD.attach(base(), settings("attn", rank=129))
    with pytest.raises(UserError, match="--svd-sv-weight -1.0 must be non-negative"):
        SVD.check_settings(settings(svd_sv_weight=-1.0))
    assert isinstance(SVD, SvdResidual) and "rank" in SVD.takes and "targets" in SVD.takes
