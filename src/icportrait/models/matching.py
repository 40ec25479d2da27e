"""Dense matching as pure tensor ops: correlation, 4D cost volume, argmax flow, warping.

**Flow convention.** A flow is ``(B, 2, H, W)`` float: for each *target* pixel ``(y, x)`` it
holds the *source* (profile) pixel it comes from, channel 0 = source column ``x_s``, channel
1 = source row ``y_s``, in the source grid's pixel units with pixel centres at integers (so
the identity flow is ``flow[:, 0, y, x] = x``, ``flow[:, 1, y, x] = y``). With several
references a ``(B, H, W)`` long tensor ``ref`` says which reference each pixel comes from.

**Cost volume.** The 4D volume ``(B, H_t W_t, K H_s W_s)`` of cosine similarities is never
stored whole: it is computed in chunks of target pixels whose size keeps each chunk under
``max_chunk_bytes`` (64 MiB by default), so memory is bounded at any scale. At SD 1.5 scale
(64 x 64 latent per half, one reference) the full fp32 volume would be 4096 x 4096 x 4 B =
64 MiB per image and level; chunking bounds it regardless of the number of references.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

DEFAULT_MAX_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Match:
    flow: torch.Tensor   # (B, 2, H, W) float, source (x, y) per target pixel
    score: torch.Tensor  # (B, H, W) confidence: softmax peak (descriptor nets) or cosine
    ref: torch.Tensor    # (B, H, W) long, which reference the match is in

    @property
    def size(self) -> tuple[int, int]:
        return (self.flow.shape[-2], self.flow.shape[-1])


def _as_refs(source: torch.Tensor) -> torch.Tensor:
    """Accept (B, C, H, W) for one reference or (B, K, C, H, W) for K references."""
    if source.ndim == 4:
        return source.unsqueeze(1)
    if source.ndim != 5:
        raise ValueError(f"source features must be (B, C, H, W) or (B, K, C, H, W), got "
                         f"{tuple(source.shape)}")
    return source


def cost_volume(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The full cosine cost volume ``(B, H_t W_t, K H_s W_s)``: for small sizes and tests."""
    src = _as_refs(source)
    b, _, c = src.shape[:3]
    s = F.normalize(src.float().permute(0, 2, 1, 3, 4).reshape(b, c, -1), dim=1)
    t = F.normalize(target.float().reshape(b, c, -1), dim=1)
    return torch.einsum("bct,bcs->bts", t, s)


def _chunk_size(n_source: int, batch: int, max_chunk_bytes: int) -> int:
    return max(1, max_chunk_bytes // (4 * max(1, n_source) * max(1, batch)))


def displacement_prior(target_size: tuple[int, int], source_size: tuple[int, int],
                       sigma: float, device=None, rows: slice = slice(None)) -> torch.Tensor:
    """Log of a Gaussian prior on where a target cell's match lies: ``(H_t W_t, H_s W_s)``
    (the target cells ``rows`` only), ``-d^2 / (2 sigma^2)`` with ``d`` the distance, in
    source cells, from the target cell's own position (the "no motion" match, right for
    aligned faces)."""
    (ht, wt), (hs, ws) = target_size, source_size

    def grid(h, w, sy, sx):
        ys, xs = torch.meshgrid((torch.arange(h, device=device) + 0.5) * sy - 0.5,
                                (torch.arange(w, device=device) + 0.5) * sx - 0.5,
                                indexing="ij")
        return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).float()

    d2 = torch.cdist(grid(ht, wt, hs / ht, ws / wt)[rows], grid(hs, ws, 1.0, 1.0)) ** 2
    return -d2 / (2 * sigma**2)


def argmax_flow(
    source: torch.Tensor,
    target: torch.Tensor,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    temperature: float | None = None,
    locality: float | None = None,
) -> Match:
    """For each target pixel, the most similar source pixel over all references.

    ``source`` is ``(B, C, H_s, W_s)`` or ``(B, K, C, H_s, W_s)``; ``target`` is
    ``(B, C, H_t, W_t)``. Similarity is cosine (features L2-normalised over channels). With a
    ``temperature`` the logits are ``cos / temperature``, plus, with ``locality`` (the prior's
    standard deviation in source cells), :func:`displacement_prior`; the score is then the
    softmax probability of the chosen match (a confidence in [0, 1]), and the flow is refined
    below a cell by the softmax around the match (:func:`_subcell_offset`); without a
    temperature the score is the cosine and the flow integral.
    """
    src = _as_refs(source)
    b, k, c, hs, ws = src.shape
    if target.ndim != 4 or target.shape[:2] != (b, c):
        raise ValueError(f"target features {tuple(target.shape)} do not match source "
                         f"{tuple(src.shape)}")
    ht, wt = target.shape[-2:]
    s = F.normalize(src.float().permute(0, 2, 1, 3, 4).reshape(b, c, k * hs * ws), dim=1)
    t = F.normalize(target.float().reshape(b, c, ht * wt), dim=1).transpose(1, 2)
    chunk = _chunk_size(k * hs * ws, b, max_chunk_bytes)
    best_score, best_idx, offsets = [], [], []
    for start in range(0, ht * wt, chunk):
        sim = torch.bmm(t[:, start:start + chunk], s)  # (B, chunk, K Hs Ws)
        if temperature is None:
            score, idx = sim.max(dim=2)
        else:
            logits = sim / temperature
            if locality:
                logits = logits + displacement_prior(
                    (ht, wt), (hs, ws), locality, t.device, slice(start, start + chunk)
                ).repeat(1, k)
            top, idx = logits.max(dim=2)
            score = (top - logits.logsumexp(dim=2)).exp()
            offsets.append(_subcell_offset(logits, idx, hs, ws))
        best_score.append(score)
        best_idx.append(idx)
    score = torch.cat(best_score, 1).view(b, ht, wt)
    idx = torch.cat(best_idx, 1).view(b, ht, wt)
    ref = idx // (hs * ws)
    pix = idx % (hs * ws)
    flow = torch.stack([(pix % ws).float(), (pix // ws).float()], dim=1)
    if offsets:
        flow = flow + torch.cat(offsets, 1).view(b, ht, wt, 2).permute(0, 3, 1, 2)
    return Match(flow.to(target.dtype) if target.is_floating_point() else flow, score, ref)


def _subcell_offset(logits: torch.Tensor, idx: torch.Tensor, hs: int, ws: int
                    ) -> torch.Tensor:
    """``(B, n, 2)`` sub-cell refinement (x, y) of argmax matches: the softmax-weighted mean
    offset over the 3 x 3 cells around each match, in its reference (edges clamped)."""
    base = idx - idx % (hs * ws)
    y, x = (idx % (hs * ws)) // ws, idx % ws
    d = torch.tensor([-1, 0, 1], device=idx.device)
    ny = (y[..., None, None] + d[:, None]).clamp(0, hs - 1).expand(*y.shape, 3, 3)
    nx = (x[..., None, None] + d[None, :]).clamp(0, ws - 1).expand(*x.shape, 3, 3)
    near = torch.gather(logits, 2, (base[..., None, None] + ny * ws + nx).flatten(2))
    w = torch.softmax(near, dim=2).view(*idx.shape, 3, 3)
    return torch.stack([(w * (nx - x[..., None, None])).sum((2, 3)),
                        (w * (ny - y[..., None, None])).sum((2, 3))], dim=-1).float()


def mutual_nearest_mask(
    source: torch.Tensor, target: torch.Tensor, match: Match,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> torch.Tensor:
    """``(B, H, W)`` bool: True where the matched source pixel's best target is this pixel."""
    src = _as_refs(source)
    b, k, c, hs, ws = src.shape
    ht, wt = target.shape[-2:]
    # Best target for every source pixel: the same search with the roles swapped, the K
    # references stacked vertically into one (K Hs, Ws) grid.
    stacked = src.permute(0, 2, 1, 3, 4).reshape(b, c, k * hs, ws)
    reverse = argmax_flow(target, stacked, max_chunk_bytes)
    back_x = reverse.flow[:, 0].reshape(b, -1).long()
    back_y = reverse.flow[:, 1].reshape(b, -1).long()
    fx = match.flow[:, 0].round().long().clamp(0, ws - 1)  # refined flows lie between cells
    fy = match.flow[:, 1].round().long().clamp(0, hs - 1)
    src_index = match.ref * hs * ws + fy * ws + fx
    bx = torch.gather(back_x, 1, src_index.view(b, -1)).view(b, ht, wt)
    by = torch.gather(back_y, 1, src_index.view(b, -1)).view(b, ht, wt)
    ys, xs = torch.meshgrid(torch.arange(ht, device=bx.device), torch.arange(wt, device=bx.device),
                            indexing="ij")
    return (bx == xs) & (by == ys)


def identity_flow(batch: int, height: int, width: int, device=None, dtype=torch.float32):
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([xs, ys]).unsqueeze(0).expand(batch, 2, height, width).clone()


def resize_flow(flow: torch.Tensor, size: tuple[int, int], mode: str = "nearest"
                ) -> torch.Tensor:
    """The same flow on another grid: target pixels resampled to ``size`` (``nearest``, or
    ``bilinear`` for a smooth warp of a finer grid, e.g. an image from a latent-grid flow)
    and source coordinates rescaled to a source grid of that size (the halves are equal)."""
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow.float()
    # Resample the *displacement* (smooth) rather than the absolute coordinates, so each
    # fine pixel keeps its own position within a coarse cell; rescale it to the new grid.
    b = flow.shape[0]
    disp = flow.float() - identity_flow(b, h, w, device=flow.device)
    disp = F.interpolate(disp, size=size, mode=mode,
                         **({} if mode == "nearest" else {"align_corners": False}))
    scale = torch.tensor([size[1] / w, size[0] / h], device=flow.device).view(1, 2, 1, 1)
    return identity_flow(b, *size, device=flow.device) + disp * scale


def warp(
    source: torch.Tensor, flow: torch.Tensor, ref: torch.Tensor | None = None,
    mode: str = "nearest",
) -> torch.Tensor:
    """Pull source features to target pixels along ``flow``.

    ``source`` is ``(B, C, H, W)`` or ``(B, K, C, H, W)`` with ``ref`` choosing the reference
    per target pixel. ``nearest`` gathers exactly (argmax flows are integral); ``bilinear``
    interpolates (for ground-truth flows), and is zero outside the source.
    """
    src = _as_refs(source)
    b, k, c, hs, ws = src.shape
    ht, wt = flow.shape[-2:]
    if ref is None:
        if k != 1:
            raise ValueError("several references need `ref` to choose between them")
        ref = torch.zeros(b, ht, wt, dtype=torch.long, device=flow.device)
    if mode == "nearest":
        x = flow[:, 0].round().long().clamp(0, ws - 1)
        y = flow[:, 1].round().long().clamp(0, hs - 1)
        index = (ref * hs * ws + y * ws + x).view(b, 1, ht * wt).expand(b, c, ht * wt)
        flat = src.permute(0, 2, 1, 3, 4).reshape(b, c, k * hs * ws)
        return torch.gather(flat, 2, index).view(b, c, ht, wt)
    if mode != "bilinear":
        raise ValueError(f"unknown warp mode {mode!r}: use 'nearest' or 'bilinear'")
    out = torch.zeros(b, c, ht, wt, dtype=src.dtype, device=src.device)
    for r in range(k):
        grid = torch.stack([flow[:, 0] / max(ws - 1, 1) * 2 - 1,
                            flow[:, 1] / max(hs - 1, 1) * 2 - 1], dim=-1).to(src.dtype)
        warped = F.grid_sample(src[:, r], grid, mode="bilinear", padding_mode="zeros",
                               align_corners=True)
        out = torch.where((ref == r).unsqueeze(1), warped, out)
    return out


def flow_to_color(flow: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Render a flow as an RGB image ``(B, 3, H, W)`` in [0, 1], like the paper's figure.

    The colour encodes *where in the source* each target pixel comes from (hue = angle and
    saturation = distance from the source centre), so a correct flow paints the target with
    the same colour layout as the source's own coordinate map; ``valid`` False is black.
    """
    h, w = flow.shape[-2:]
    cx, cy = (w - 1) / 2, (h - 1) / 2
    dx = (flow[:, 0].float() - cx) / max(cx, 1)
    dy = (flow[:, 1].float() - cy) / max(cy, 1)
    hue = (torch.atan2(dy, dx) / (2 * torch.pi)) % 1.0
    sat = torch.clamp(torch.sqrt(dx**2 + dy**2) / 1.4143, 0, 1)
    val = torch.ones_like(sat)
    rgb = _hsv_to_rgb(hue, sat, val)
    if valid is not None:
        rgb = rgb * valid.unsqueeze(1).to(rgb)
    return rgb


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    i = torch.floor(h * 6) % 6
    f = h * 6 - torch.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros(*h.shape, 3, dtype=h.dtype, device=h.device)
    for k, (r, g, b_) in enumerate(table):
        m = (i == k).unsqueeze(-1)
        out = torch.where(m, torch.stack([r, g, b_], -1), out)
    return out.permute(0, 3, 1, 2)


def pixel_flows(flow: torch.Tensor, valid: torch.Tensor, side: int) -> dict:
    """A known flow in pixels (``(B, 2, S, S)``, target -> profile, and where it is known
    ``(B, S, S)``) as matching flows on a ``side`` x ``side`` latent grid: no motion where
    it is unknown, confidence 1 where it is known (ground-truth flows for teacher forcing and
    for the evaluation's ``gt-flow`` ablation)."""
    b = flow.shape[0]
    cells = resize_flow(flow.float(), (side, side))
    known = F.interpolate(valid[:, None].float(), size=(side, side), mode="nearest")[:, 0]
    cells = torch.where(known[:, None] > 0.5, cells,
                        identity_flow(b, side, side, flow.device))
    ref = torch.zeros(b, side, side, dtype=torch.long, device=flow.device)
    return {(side, side): Match(cells, known, ref)}
