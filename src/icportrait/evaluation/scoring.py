"""Per-sample metrics of one method's output (definitions in docs/evaluation.md).

Face metrics use the face toolkit on copies enlarged to at least 256 px
(:func:`~icportrait.faces.detect.enlarge_small`: the synthetic suites are 128 px; detectors
and dlib's descriptor want larger faces).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from icportrait.errors import FaceError, MissingDependencyError
from icportrait.evaluation import image_metrics as im
from icportrait.evaluation.suites import Sample

PCK_FACE_WIDTH = 0.5   # synthetic renders: the face spans about half the image width
PCK_THRESHOLD = 0.05   # PCK at 5% of the face width


@dataclass(frozen=True)
class FaceReading:
    embedding: np.ndarray
    pose: tuple[float, float, float] | None   # yaw, pitch, roll (degrees)


def read_face(image: np.ndarray) -> FaceReading | None:
    """Largest face's dlib descriptor and head pose, or None when no face is found."""
    from icportrait.faces import describe_face, detect_faces, face_embedding, select_face
    from icportrait.faces.detect import enlarge_small

    image, _ = enlarge_small(image)
    try:
        box = select_face(detect_faces(image))
    except FaceError:
        return None
    face = describe_face(image, box)
    pose = None if face.pose is None else (face.pose.yaw, face.pose.pitch, face.pose.roll)
    return FaceReading(face_embedding(image, box), pose)


def mean_embedding(readings: list[FaceReading | None]) -> np.ndarray | None:
    found = [r.embedding for r in readings if r is not None]
    return np.mean(found, axis=0) if found else None


def _dist(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None:
        return None
    return round(float(np.linalg.norm(np.asarray(a, np.float64) - b)), 4)


def face_scores(out: FaceReading | None, profile: np.ndarray | None,
                template: FaceReading | None, truth: FaceReading | None) -> dict:
    """Identity distances (to the profile's mean descriptor, the ground truth and the template
    person) and pose error against the template."""
    scores: dict = {"face_detected": out is not None}
    emb = None if out is None else out.embedding
    scores["id_to_profile"] = _dist(emb, profile)
    scores["id_to_template"] = _dist(emb, None if template is None else template.embedding)
    scores["id_to_truth"] = _dist(emb, None if truth is None else truth.embedding)
    if out is not None and out.pose is not None and template is not None and template.pose:
        err = [abs(a - b) for a, b in zip(out.pose, template.pose, strict=True)]
        scores.update(yaw_error=round(err[0], 2), pitch_error=round(err[1], 2),
                      roll_error=round(err[2], 2))
    return scores


def image_scores(image: np.ndarray, sample: Sample) -> dict:
    """Ground-truth image and lighting metrics (synthetic) and BRISQUE."""
    scores: dict = {}
    if sample.synthetic:
        scores["psnr"] = _decibels(im.psnr(image, sample.truth))
        scores["ssim"] = round(im.ssim(image, sample.truth), 4)
        ms = im.ms_ssim(image, sample.truth)
        scores["ms_ssim"] = None if ms is None else round(ms, 4)
        region = sample.face_region & np.isfinite(sample.normals).all(-1)
        scores["face_psnr"] = _decibels(im.psnr(image, sample.truth, mask=region))
        scores["light_direction_error"] = round(
            im.light_direction_error(image, sample.truth, sample.normals, region), 2)
        scores["shading_error"] = round(im.shading_error(image, sample.truth, region), 4)
    try:
        scores["brisque"] = round(im.brisque(image), 2)
    except MissingDependencyError:  # BRISQUE needs Debian's opencv-data
        scores["brisque"] = None
    return scores


def _decibels(value: float) -> float | None:
    """A PSNR for results.json: None for the truth itself (infinite; JSON has no infinity)."""
    return round(value, 3) if np.isfinite(value) else None


def flow_scores(flow: torch.Tensor, flow_ref: torch.Tensor | None, sample: Sample,
                confidence: torch.Tensor | None = None) -> dict:
    """PCK at 5% and 10% of the face width and end-point error of the model's finest flow
    (latent cells, template -> profile[0]) against the ground truth (the same point of the
    face on both heads), at cell centres visible in both views and matched to the first
    reference; the same for the "no motion" flow. With the matching confidence: its mean on
    those cells and on the template's head cells that the profile does not show."""
    if not sample.synthetic or flow is None:
        return {}
    from icportrait.models.matching import identity_flow

    ours = _synthetic_flow_scores(flow, flow_ref, sample)
    still = _synthetic_flow_scores(identity_flow(1, *flow.shape[-2:])[0], None, sample)
    out = {**ours, **{f"{k}_no_motion": v for k, v in still.items() if k != "flow_epe"}}
    if confidence is not None:
        out.update(_confidence_split(confidence, sample))
    return out


def _cells(sample: Sample, lh: int, lw: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The pixel rows and columns of the latent cells' centres, and pixels per cell."""
    size = sample.template_flow.shape[-1]
    scale = size / lw
    ys = ((np.arange(lh) + 0.5) * scale - 0.5).round().astype(int)
    xs = ((np.arange(lw) + 0.5) * scale - 0.5).round().astype(int)
    return ys, xs, scale


def _confidence_split(confidence: torch.Tensor, sample: Sample) -> dict:
    conf = confidence.float().numpy().reshape(confidence.shape[-2:])
    ys, xs, _ = _cells(sample, *conf.shape)
    seen = sample.template_valid[ys][:, xs]
    hidden = sample.template_head[ys][:, xs] & ~seen

    def mean(m: np.ndarray) -> float | None:
        return round(float(conf[m].mean()), 4) if m.any() else None

    return {"flow_confidence_visible": mean(seen), "flow_confidence_occluded": mean(hidden)}


def _synthetic_flow_scores(flow: torch.Tensor, flow_ref: torch.Tensor | None,
                           sample: Sample) -> dict:
    size = sample.template_flow.shape[-1]
    ys, xs, scale = _cells(sample, *flow.shape[-2:])
    gt = sample.template_flow[:, ys][:, :, xs]
    ok = sample.template_valid[ys][:, xs]
    if flow_ref is not None:
        ok = ok & (flow_ref.numpy() == 0)
    pred = (flow.float().numpy() + 0.5) * scale - 0.5
    err = np.linalg.norm(pred - gt, axis=0)[ok]
    if err.size == 0:
        return {"flow_pck": None, "flow_pck10": None, "flow_epe": None}
    px = PCK_THRESHOLD * PCK_FACE_WIDTH * size
    return {"flow_pck": round(float(np.mean(err <= px)), 4),
            "flow_pck10": round(float(np.mean(err <= 2 * px)), 4),
            "flow_epe": round(float(err.mean()), 3)}


def landmark_flow_scores(flow: torch.Tensor, sample: Sample, size: int) -> dict:
    """Real pairs: a flow (latent cells of the ``size`` px aligned crops, template ->
    profile[0]) read at the template's 478 mesh points, against the profile's same points.

    Each point moves by its cell's displacement; it is correct within 5% (10%) of the
    profile face's width (the mesh's horizontal extent). Reported for the model's flow
    (``landmark_pck5``, ``landmark_pck10``) and for the baselines "no motion" (every point
    stays) and "mesh" (the meshes' piecewise-affine map, what the classical swap uses).
    Empty when a face is not found."""
    if sample.synthetic or flow is None:
        return {}
    from icportrait.errors import FaceError
    from icportrait.faces import prepare_face
    from icportrait.faces.correspondence import mesh_flow
    from icportrait.models.matching import identity_flow

    try:
        tmpl = prepare_face(sample.template, size=size).mesh[:, :2]
        prof = prepare_face(sample.profile[0], size=size).mesh[:, :2]
    except FaceError:
        return {}
    grid = tuple(flow.shape[-2:])
    flows = {"": flow.float().numpy(), "_no_motion": identity_flow(1, *grid)[0].numpy(),
             "_mesh": mesh_flow(tmpl, prof, grid, size)}
    width = float(np.ptp(prof[:, 0]))
    out = {}
    for name, f in flows.items():
        err = _landmark_errors(f, tmpl, prof, size) / max(width, 1e-6)
        out[f"landmark_pck5{name}"] = round(float(np.mean(err <= 0.05)), 4)
        out[f"landmark_pck10{name}"] = round(float(np.mean(err <= 0.10)), 4)
    return out


def _landmark_errors(flow: np.ndarray, template_pts: np.ndarray, profile_pts: np.ndarray,
                     size: int) -> np.ndarray:
    """Pixel distance between each template point moved by its cell's displacement and the
    profile's same point."""
    h, w = flow.shape[-2:]
    sy, sx = size / h, size / w
    cx = np.clip((template_pts[:, 0] / sx).astype(int), 0, w - 1)
    cy = np.clip((template_pts[:, 1] / sy).astype(int), 0, h - 1)
    disp = np.stack([(flow[0, cy, cx] - cx) * sx, (flow[1, cy, cx] - cy) * sy], 1)
    return np.linalg.norm(template_pts + disp - profile_pts, axis=1)
