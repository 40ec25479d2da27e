"""The portrait pasted back at the template photo's own resolution, with the warp start's
detail above the model's resolution.

A 128 px model's face pasted into a photo where the face spans 300 px is an upscaled blur.
The warp start (the mesh-warped, relit profile) is cheap to make at any size. So each
template's face is re-cut from its photo at the photo's own scale, the profile photos at
the same size, and the mesh flows are computed on that pixel grid. Then what the start has
above the model's resolution (the start minus the start resized to model size and back) is
added to the upscaled portrait's face, by the share of the start the sample keeps.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# The largest crop side the detail is computed at: beyond it a face is pasted from 512 px.
FULL_RESOLUTION_MAX = 512


def native_size(aligned, model_size: int, largest: int = FULL_RESOLUTION_MAX) -> int:
    """The crop side at which one crop pixel is one photo pixel, within
    ``[model_size, largest]``."""
    return int(np.clip(round(aligned.size / aligned.scale), model_size, largest))


def _rescaled(prepared, photo: np.ndarray, size: int):
    """A prepared face's crop, mesh and face mask, cut again from ``photo`` at ``size``."""
    from icportrait.faces import apply_affine, face_mask
    from icportrait.faces.align import crop_rescale, resize_aligned

    aligned = resize_aligned(prepared.aligned, photo, size)
    mesh = apply_affine(crop_rescale(size / prepared.aligned.size), prepared.mesh)
    return aligned, mesh, face_mask(mesh, (size, size))


def paste_full_resolution(portrait: np.ndarray, template, template_photo: np.ndarray,
                          profiles: list, profile_photos: list[np.ndarray], keep: float,
                          use_confidence: bool, profile_tone: bool,
                          photo_fill: bool = False, mirror_fill: bool = False
                          ) -> np.ndarray:
    """``portrait`` (the model's crop, ``(S, S, 3)`` float in [0, 1]) pasted back into
    ``template_photo`` at the photo's own scale, its face given the warp start's detail above
    the model's resolution times ``keep`` (the share of the start the sample keeps).
    ``template``, ``profiles``: the pipeline's prepared faces of the photos."""
    from icportrait.faces import paste_back
    from icportrait.models.reference import warp_init
    from icportrait.pipelines.image_inputs import to_model_batch
    from icportrait.pipelines.mesh_flows import fill_flows, mesh_flows

    model_size = portrait.shape[0]
    size = native_size(template.aligned, model_size)
    aligned, mesh, mask = _rescaled(template, template_photo, size)
    refs = [_rescaled(p, photo, size) for p, photo in zip(profiles, profile_photos, strict=True)]
    meshes = [m for _, m, _ in refs]
    flows = mesh_flows([mesh], meshes, (size, size), size)
    fill = fill_flows([mesh], meshes, (size, size), size, photos=photo_fill,
                      mirror=mirror_fill)
    region = torch.from_numpy(mask)[None, None]

    def pixels(images: list[np.ndarray]) -> torch.Tensor:
        return to_model_batch(images, size, "cpu", torch.float32)

    start = warp_init(pixels([a.image for a, _, _ in refs]), pixels([aligned.image]), flows,
                      len(refs), region, use_confidence=use_confidence,
                      profile_tone=profile_tone, fill=fill).clamp(-1, 1)

    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)

    above = start - up(F.interpolate(start, size=(model_size, model_size), mode="area"))
    crop = up(torch.from_numpy(np.ascontiguousarray(portrait)).permute(2, 0, 1)[None].float())
    crop = (crop + keep * region * above / 2).clamp(0, 1)
    crop = (crop[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return paste_back(aligned, crop, template_photo, mask=mask)
