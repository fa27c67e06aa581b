"""Effort's orthogonal subspace decomposition (`--method svd`): each targeted weight split by SVD, the principal
subspace frozen, a residual of rank `--rank` trained, with Effort's orthogonality and singular-value losses.

Source: YZY-stack/Effort-AIGI-Detection (ICML 2025), DeepfakeBench/training/detectors/effort_detector.py at 96f5dea:
- `replace_with_svd_residual`: SVD of the weight, W = U diag(S) Vh; the top r_main triplets give the frozen
  `weight_main` = U_r diag(S_r) Vh_r; the rest initialise the trainable `U_residual`, `S_residual`, `V_residual`
  (Vh's rows); the bias stays frozen. `SVDResidualLinear.forward`: weight_main + U_residual diag(S_residual) V_residual.
- `EffortDetector.build_backbone`: `apply_svd_residual_to_self_attn(vision_model, r=1024-1)` on CLIP ViT-L/14, i.e.
  q, k, v and out projections (1024 x 1024) of all 24 blocks, r_main = 1023: a residual of rank d - r_main = 1.
  That is `--rank 1 --targets attn` here: 96 matrices x (1024 + 1024 + 1) = 196,704 trainable values, the paper's
  "0.19 M" (0.197 M, or 0.188 Mi; tests/test_method_svd.py counts it).
- `compute_orthogonal_loss`: 0.5 ||[U_r, U_res][U_r, U_res]^T - I||_F + 0.5 ||[V_r; V_res][V_r; V_res]^T - I||_F
  (norms, not squared). `compute_keepsv_loss`: | ||W_current||_F^2 - ||W_original||_F^2 |.
- The (commented-out) `get_losses`: loss += lambda_reg * sum over modules of (orthogonal + keepsv) / num_modules,
  lambda_reg = 1.0. The released `get_losses` adds neither term (cross-entropy only): `--svd-orth-weight 0
  --svd-sv-weight 0` trains as released; the defaults (1, 1) follow the commented form. SCLBD/DeepfakeBench's copy
  (8a4a7bf) has an older orthogonality loss on U_res U_res^T alone (not 0 at init) with lambda 0.1: not followed.

Here, as parametrizations of the weight tensors (torch.nn.utils.parametrize), because open_clip's attention is an
`nn.MultiheadAttention` whose forward reads `in_proj_weight` and `out_proj.weight` directly:
- The fused in-projection (3d x d) is decomposed as its three d x d blocks q, k, v, each with its own residual, as
  Effort decomposes q_proj, k_proj, v_proj; out_proj and MLP linears are one block each.
- W = W0 + (U diag(S) V - U0 diag(S0) V0), W0 the base weight, (U0, S0, V0) the initial residual: Effort's
  W_main = W0 - U0 diag(S0) V0 in exact arithmetic, but the model equals the base bit for bit at init, and the
  merged delta of each block has rank <= 2r. `state` keeps (U0, S0, V0): a reload rebuilds W_main from the base
  without an SVD.
- Orthogonality in the Gram form, ||B^T B - I|| for U and V^T: equal to Effort's form on square blocks (all of
  Effort's, all attention blocks here) and 0 at init on any shape. With the frozen block exactly orthonormal, its
  cross term ||U_r^T U|| is ||U - U0 U0^T U|| on a square side; on the tall side of a non-square MLP matrix that
  also counts the unused complement (an upper bound of Effort's term).
- Keep-sv as 2 <W0, D> + ||D||^2 = ||W0 + D||^2 - ||W0||^2 (D the delta): exactly 0 at init, where Effort's
  difference of two rounded norms is not.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from clipforensics.core.errors import UserError
from clipforensics.lora.methods.base import METHODS, Method
from clipforensics.lora.targets import TARGET_SETS

ORTH_WEIGHT = ("svd_orth_weight", 1.0)
SV_WEIGHT = ("svd_sv_weight", 1.0)

Tensors = Callable[[nn.Module], tuple[tuple[nn.Module, str, int], ...]]
TENSORS: dict[type[nn.Module], Tensors] = {
    nn.MultiheadAttention: lambda m: ((m, "in_proj_weight", 3), (m.out_proj, "weight", 1)),
    nn.Linear: lambda m: ((m, "weight", 1),),
}
"""Per targeted module type: its weight tensors as (owner, tensor name, row blocks decomposed separately)."""


class Residual(nn.Module):
    """The parametrization of one weight: W0 -> W0 + U diag(S) V - U0 diag(S0) V0, per row block."""

    def __init__(self, blocks: int, d_out: int, d_in: int, rank: int, like: torch.Tensor) -> None:
        super().__init__()
        kw = {"dtype": torch.promote_types(like.dtype, torch.float32), "device": like.device}
        self.U = nn.Parameter(torch.zeros(blocks, d_out, rank, **kw))
        self.S = nn.Parameter(torch.zeros(blocks, rank, **kw))
        self.V = nn.Parameter(torch.zeros(blocks, rank, d_in, **kw))
        self.register_buffer("U0", torch.zeros(blocks, d_out, rank, **kw))
        self.register_buffer("S0", torch.zeros(blocks, rank, **kw))
        self.register_buffer("V0", torch.zeros(blocks, rank, d_in, **kw))
        self.order: tuple[str, ...] = ()
        """The owner's parameter names before parametrizing: merge puts them back in this order."""

    @torch.no_grad()
    def decompose(self, weight: torch.Tensor) -> None:
        """Effort's split: the `rank` smallest singular triplets of each block become the residual. In float64, so
        that a rerun on other threads or another LAPACK rounds to the same factors (up to signs, which the model and
        the losses do not see): a resumed run re-decomposes (the checkpoint keeps trainable tensors only)."""
        rank = self.S.shape[1]
        u, s, vh = torch.linalg.svd(self.blocks(weight).double(), full_matrices=False)
        for trained, fixed, value in ((self.U, self.U0, u[..., -rank:]), (self.S, self.S0, s[..., -rank:]),
                                      (self.V, self.V0, vh[..., -rank:, :])):
            trained.copy_(value)
            fixed.copy_(value)

    def blocks(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.reshape(self.U.shape[0], self.U.shape[1], self.V.shape[2])

    def delta(self) -> torch.Tensor:
        """U diag(S) V - U0 diag(S0) V0 per block: two products, so that it is exactly 0 while U, S, V are U0, S0, V0."""
        return (self.U * self.S.unsqueeze(1)) @ self.V - (self.U0 * self.S0.unsqueeze(1)) @ self.V0

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta().reshape(weight.shape).to(weight.dtype)

    def orthogonal_loss(self) -> torch.Tensor:
        """Effort's 0.5 ||U_full - orthonormal|| + 0.5 ||V_full - orthonormal|| per block (module docstring)."""
        return 0.5 * gram_distance(self.U, self.U0) + 0.5 * gram_distance(self.V.mT, self.V0.mT)

    def keep_sv_loss(self, weight: torch.Tensor) -> torch.Tensor:
        """Effort's | ||W||_F^2 - ||W0||_F^2 | per block, as |2 <W0, D> + ||D||^2|."""
        d = self.delta()
        return (2 * (self.blocks(weight).to(d.dtype) * d).sum((1, 2)) + d.square().sum((1, 2))).abs()


def gram_distance(x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """||[F, X]^T [F, X] - I||_F per block for the trained columns X beside the frozen orthonormal F, F spanning what
    the initial X0 leaves (block F^T F - I taken as its exact 0): sqrt(2 ||F^T X||^2 + ||X^T X - I||^2)."""
    outside = x - x0 @ (x0.mT @ x)
    gram = x.mT @ x - torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    return torch.cat([math.sqrt(2.0) * outside.flatten(1), gram.flatten(1)], dim=1).norm(dim=1)


def targeted(clip: nn.Module, targets: str) -> list[tuple[str, nn.Module, str, int]]:
    """(name, owner, tensor name, blocks) of every weight the target set reaches in the image tower."""
    patterns = TARGET_SETS.get(targets)
    found = []
    for name, module in clip.named_modules():
        if any(re.fullmatch(p, name) for p in patterns):
            tensors = next((f for kind, f in TENSORS.items() if isinstance(module, kind)), None)
            if tensors is None:
                raise UserError(f"svd cannot decompose {name} ({type(module).__name__}); it takes "
                                f"{', '.join(k.__name__ for k in TENSORS)}")
            found += [(name, owner, tensor, blocks) for owner, tensor, blocks in tensors(module)]
    if not found:
        raise UserError(f"target set {targets!r} matches no module of this model")
    return found


def add_residuals(clip: nn.Module, rank: int, targets: str, decompose: bool) -> nn.Module:
    """Parametrize every targeted weight; `decompose` runs the SVD (attach), else the residual stays zero until a saved
    state is copied in (load: no LAPACK)."""
    for name, owner, tensor, blocks in targeted(clip, targets):
        weight = getattr(owner, tensor)
        d_out, d_in = weight.shape[0] // blocks, weight.shape[1]
        if rank > min(d_out, d_in):
            raise UserError(f"--rank {rank} is larger than svd allows on {name}'s {d_out}x{d_in} blocks "
                            f"(at most {min(d_out, d_in)})")
        residual = Residual(blocks, d_out, d_in, rank, weight)
        residual.order = tuple(owner._parameters)
        if decompose:
            residual.decompose(weight)
        parametrize.register_parametrization(owner, tensor, residual)
    return clip


def parametrized(adapted: nn.Module) -> Iterator[tuple[nn.Module, str]]:
    """(owner, tensor name) of every weight carrying a Residual."""
    for module in list(adapted.modules()):
        if parametrize.is_parametrized(module):
            for tensor in list(module.parametrizations):
                if isinstance(module.parametrizations[tensor][0], Residual):
                    yield module, tensor


def weight_of(settings: Any, field: tuple[str, float]) -> float:
    """A loss weight from the settings, or its default where LoraSettings has no such field (yet)."""
    return float(getattr(settings, field[0], field[1]))


class SvdResidual(Method):
    """Effort: frozen principal subspace, trained rank-r residual, orthogonality and keep-singular-value losses."""

    name = "svd"
    title = "SVD residual (Effort)"
    takes = ("rank", "targets", ORTH_WEIGHT[0], SV_WEIGHT[0])

    def check_settings(self, settings: Any) -> None:
        for field in (ORTH_WEIGHT, SV_WEIGHT):
            if not weight_of(settings, field) >= 0:
                raise UserError(f"--{field[0].replace('_', '-')} {weight_of(settings, field)} must be non-negative")

    def describe(self, settings: Any) -> str:
        return f"SVD residual (Effort) of rank {settings.rank} on {settings.targets}"

    def attach(self, clip: nn.Module, settings: Any) -> nn.Module:
        return add_residuals(clip, settings.rank, settings.targets, decompose=True)

    def load(self, clip: nn.Module, run: Path, settings: Any) -> nn.Module:
        """Rebuilt from the saved factors on the base weights alone: no SVD, so no dependence on LAPACK."""
        import safetensors.torch
        adapted = add_residuals(clip, settings.rank, settings.targets, decompose=False)
        self.load_state(adapted, safetensors.torch.load_file(str(run / self.change_file)))
        return adapted

    def extra_loss(self, adapted: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor,
                   settings: Any) -> torch.Tensor | None:
        """(w_orth * sum of orthogonality + w_sv * sum of keep-sv) / number of blocks, in fp32 outside autocast."""
        w_orth, w_sv = weight_of(settings, ORTH_WEIGHT), weight_of(settings, SV_WEIGHT)
        if w_orth == 0 and w_sv == 0:
            return None
        terms = []
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            for owner, tensor in parametrized(adapted):
                residual = owner.parametrizations[tensor][0]
                original = owner.parametrizations[tensor].original
                terms.append(w_orth * residual.orthogonal_loss() + w_sv * residual.keep_sv_loss(original))
        return torch.cat(terms).mean()

    def state(self, adapted: nn.Module) -> dict[str, torch.Tensor]:
        """U, S, V (trained) and U0, S0, V0 (the initial residual, fixed) of every parametrized weight."""
        return {f"{name}.{key}": value.detach() for name, module in adapted.named_modules()
                if isinstance(module, Residual) for key, value in module.state_dict().items()}

    def load_state(self, adapted: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
        own = self.state(adapted)
        shapes = {k: tuple(v.shape) for k, v in own.items()}
        if shapes != {k: tuple(v.shape) for k, v in state.items()}:
            raise UserError("saved SVD residual does not match this model's targets or rank")
        with torch.no_grad():
            for key, value in own.items():
                value.copy_(state[key])

    def merge(self, adapted: nn.Module) -> nn.Module:
        """W0 + delta written into each weight, the parametrizations removed: open_clip's own parameter names."""
        for owner, tensor in list(parametrized(adapted)):
            order = owner.parametrizations[tensor][0].order
            parametrize.remove_parametrizations(owner, tensor, leave_parametrized=True)
            for name in order:
                owner._parameters[name] = owner._parameters.pop(name)
        return adapted


METHODS.register("svd", SvdResidual())
