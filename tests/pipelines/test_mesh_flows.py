"""Flows from the face meshes (``flow_source="mesh"``) and warping in pixels
(``warp_space="image"``): the module on hand-made meshes, the pipeline on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icportrait.errors import FaceError, ICPortraitError, SettingError
from icportrait.models.matching import identity_flow
from icportrait.pipelines import ICPortraitPipeline
from icportrait.pipelines.mesh_flows import closest_reference, crop_mesh, fill_flows, mesh_flows
from support.models import dummy_pipeline, trained_like


def _mesh(seed=0):
    return np.random.default_rng(seed).uniform(20, 108, (80, 3))


def _turned(mesh, angle):
    """The mesh rotated about the vertical axis (a head turned by ``angle`` radians)."""
    out = mesh.copy()
    x, z = mesh[:, 0] - 64, mesh[:, 2] - 64
    out[:, 0] = 64 + x * np.cos(angle) + z * np.sin(angle)
    return out


def test_closest_reference_is_the_nearest_pose_not_the_nearest_place():
    template = _turned(_mesh(), 0.5)
    frontal, turned_and_moved = _mesh(), _turned(_mesh(), 0.45) * 0.8 + 12
    assert closest_reference(template, [frontal, turned_and_moved]) == 1
    assert closest_reference(template, [turned_and_moved, frontal]) == 0


def test_mesh_flows_follow_the_mesh_with_confidence_where_the_profile_shows_it(
        hopper_crop_mesh):
    template = hopper_crop_mesh
    shifted = template + np.array([8.0, 0.0, 0.0])
    lift = np.array([0.0, 0.0, 64.0])  # _turned turns about depth 64
    profiles = [_turned(template + lift, 0.6) - lift, shifted]
    flows = mesh_flows([template], profiles, (16, 16), 128)
    (grid, m), = flows.items()
    assert grid == (16, 16) and m.flow.shape == (1, 2, 16, 16)
    assert torch.equal(m.ref, torch.ones(1, 16, 16).long())   # the shifted copy fits best
    inside = m.score[0] > 0
    assert 0.2 < inside.float().mean() < 1 and m.score.max() == 1 and m.score.min() == 0
    disp = m.flow - identity_flow(1, 16, 16)
    assert torch.allclose(disp[0, 0][inside], torch.tensor(1.0), atol=1e-4)  # 8 px = 1 cell
    assert torch.equal(disp[0][:, ~inside], torch.zeros(2, int((~inside).sum())))
    # A profile turned away shows less of the template's face: lower confidence.
    turned = mesh_flows([template], profiles[:1], (16, 16), 128)[(16, 16)]
    assert turned.score.sum() < 0.9 * m.score.sum()
    # It shows more of the mirror images of what it hides.
    assert fill_flows([template], profiles[:1], (16, 16), 128, photos=True) is None  # no other
    mirror = fill_flows([template], profiles[:1], (16, 16), 128, mirror=True)[(16, 16)]
    hidden = (turned.score < 0.5) & (m.score > 0)
    assert hidden.any() and mirror.score[hidden].mean() > turned.score[hidden].mean() + 0.3


def test_fill_flows_take_what_the_nearest_photo_hides_from_the_photo_that_shows_it(
        hopper_crop_mesh):
    template = hopper_crop_mesh
    lift = np.array([0.0, 0.0, 64.0])  # _turned turns about depth 64

    def turned(angle):
        return _turned(template + lift, angle) - lift

    left, right, near = turned(0.7), turned(-0.7), turned(0.3)
    hides = mesh_flows([template], [near], (16, 16), 128)[(16, 16)]
    # The template's nearest photo is `near`; what it hides comes from another photo.
    assert fill_flows([template], [near, left, right], (16, 16), 128) is None  # not asked
    for others, shows in (([left, right], 2), ([right, left], 1)):
        fill = fill_flows([template], [near, *others], (16, 16), 128, photos=True)[(16, 16)]
        assert fill.flow.shape == (1, 2, 16, 16) and not (fill.ref == 0).any()
        hidden = (hides.score < 0.5) & (fill.score > 0.9)
        assert hidden.sum() >= 4
        # each hidden cell comes from the photo that shows it, along that photo's mesh
        for k, other in enumerate(others, start=1):
            own = mesh_flows([template], [other], (16, 16), 128)[(16, 16)]
            cells = hidden & (fill.ref == k)
            assert torch.allclose(fill.flow[:, :, cells[0]], own.flow[:, :, cells[0]])
            assert torch.equal(fill.score[cells], own.score[cells])
        # `near` hides the side that `right` (turned the other way) shows
        assert set(fill.ref[hidden].tolist()) == {shows}
    # With the mirror images too, a real view still wins where it shows the point squarely.
    both = fill_flows([template], [near, left, right], (16, 16), 128, photos=True,
                      mirror=True)[(16, 16)]
    assert (both.score >= fill.score).all()
    squarely = hidden & (fill.score == 1)
    assert squarely.any() and (both.ref[squarely] > 0).all()


def test_crop_mesh_reads_a_small_crop_and_says_when_there_is_no_face(astronaut):
    import cv2

    crop = cv2.resize(astronaut[40:232, 130:322], (128, 128), interpolation=cv2.INTER_AREA)
    mesh = crop_mesh(crop, "template")
    assert mesh.shape == (478, 3)
    assert 20 < mesh[:, 0].mean() < 108 and 20 < mesh[:, 1].mean() < 108   # in crop pixels
    with pytest.raises(FaceError, match=r"template: .*flow_source='mesh' needs a face mesh"):
        crop_mesh(np.full((128, 128, 3), 128, np.uint8), "template")


def test_mesh_flow_in_the_pipeline_on_real_photos(astronaut, grace_hopper):
    pipe = trained_like(dummy_pipeline())

    def run(**kw):
        return pipe(astronaut, grace_hopper, num_inference_steps=4, strength=0.5,
                    align_faces=True, output_type="pt",
                    generator=torch.Generator().manual_seed(0), **kw)

    net, mesh = run(), run(flow_source="mesh")
    assert not torch.equal(net.images, mesh.images)
    assert not torch.allclose(net.flow, mesh.flow)
    # the pipeline's flow is the meshes' flow of the aligned faces
    from icportrait.faces import prepare_face

    meshes = [prepare_face(im, size=pipe.resolution, policy="clear").mesh
              for im in (grace_hopper, astronaut)]
    expected = mesh_flows(meshes[:1], meshes[1:], tuple(mesh.flow.shape[-2:]), pipe.resolution)
    assert torch.allclose(mesh.flow, next(iter(expected.values())).flow, atol=1e-5)
    assert mesh.flow_score.min() >= 0 and mesh.flow_score.max() <= 1
    assert mesh.flow_score.mean() > 0.2
    image = run(flow_source="mesh", warp_space="image")
    assert not torch.equal(image.images, mesh.images) and torch.isfinite(image.images).all()
    # The options change the warp start only: the portrait, not the flow.
    for option in ("mirror_fill", "profile_tone"):
        other = run(flow_source="mesh", warp_space="image", **{option: True})
        assert not torch.equal(other.images, image.images), option
        assert torch.equal(other.flow, image.flow), option


def test_with_photo_fill_a_second_profile_photo_fills_in_what_the_nearest_one_hides():
    from icportrait.faces import prepare_face
    from icportrait.generation import make_template
    from icportrait.generation.pose_templates import parse_pose

    pipe = trained_like(dummy_pipeline())
    template, near, far = (make_template(pose=parse_pose(f"yaw={y}")) for y in (-15, -40, 40))
    one, two = (pipe(profiles, template, num_inference_steps=4, strength=0.5,
                     align_faces=True, output_type="pt", flow_source="mesh",
                     warp_space="image", photo_fill=True,
                     generator=torch.Generator().manual_seed(0))
                for profiles in ([near], [near, far]))
    # The flow is to the nearest photo, as with it alone.
    assert torch.equal(two.flow_ref, torch.zeros_like(two.flow_ref))
    assert torch.allclose(two.flow, one.flow)
    # The portrait changes where that photo hides the face and the other shows it, far more
    # than where it shows the face itself.
    faces = [prepare_face(im, size=pipe.resolution, policy="clear").mesh
             for im in (template, near, far)]
    grid = (pipe.resolution,) * 2
    shown = mesh_flows(faces[:1], faces[1:2], grid, pipe.resolution)[grid].score[0]
    other = fill_flows(faces[:1], faces[1:], grid, pipe.resolution, photos=True)[grid].score[0]
    change = (two.images - one.images).abs().mean((0, 1))
    filled, kept = (shown < 0.2) & (other > 0.8), shown == 1
    assert filled.sum() >= 20 and kept.sum() >= 100
    assert change[filled].mean() > 3 * change[kept].mean()
    # Off (the default), the second photo does not reach the face's hidden side.
    off = pipe([near, far], template, num_inference_steps=4, strength=0.5, align_faces=True,
               output_type="pt", flow_source="mesh", warp_space="image",
               generator=torch.Generator().manual_seed(0))
    change = (off.images - one.images).abs().mean((0, 1))
    assert change[filled].mean() < 2 * change[kept].mean()


def test_unaligned_inputs_without_a_face_are_refused_in_mesh_mode():
    pipe = dummy_pipeline()
    with pytest.raises(FaceError, match=r"profile: .*needs a face mesh"):
        pipe(torch.rand(3, 32, 32), torch.rand(3, 32, 32), num_inference_steps=2,
             strength=0.5, flow_source="mesh", output_type="pt")


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(warp_space="pixels"), "warp_space must be one of 'latent', 'image'"),
    (dict(flow_source="flow"), "flow_source must be one of 'net', 'mesh'"),
    (dict(flow_source="mesh", flow_mode="per_step"), "mesh flows are computed once"),
])
def test_bad_flow_settings_are_clear(kwargs, match):
    with pytest.raises(ICPortraitError, match=match):
        dummy_pipeline()(torch.rand(3, 32, 32), torch.rand(3, 32, 32), num_inference_steps=2,
                         output_type="pt", **kwargs)


def test_flow_source_and_warp_space_are_saved_with_the_model(tmp_path):
    pipe = dummy_pipeline()
    pipe.register_to_config(flow_source="mesh", warp_space="image")
    pipe.save_pretrained(tmp_path)
    loaded = ICPortraitPipeline.from_pretrained(tmp_path)
    assert (loaded.config.flow_source, loaded.config.warp_space) == ("mesh", "image")
    with pytest.raises(SettingError, match="warp_space must be one of"):
        ICPortraitPipeline(**dict(pipe.components), warp_space="pixels")


def test_pasted_back_the_face_keeps_the_warp_starts_detail_at_the_photos_resolution(
        grace_hopper):
    from icportrait.faces import prepare_face
    from icportrait.pipelines.full_resolution import FULL_RESOLUTION_MAX, native_size

    pipe = trained_like(dummy_pipeline())  # a 32 px model: a pasted face is an upscaled blur

    def pasted(**kw):
        # The profile is the template photo: the warp start is the photo's own face.
        out = pipe(grace_hopper, grace_hopper, num_inference_steps=10, strength=0.1,
                   flow_source="mesh", warp_space="image", align_faces=True, paste_back=True,
                   output_type="np", generator=torch.Generator().manual_seed(0), **kw)
        return out.images[0] * 255

    face = prepare_face(grace_hopper, size=pipe.resolution)
    side = native_size(face.aligned, pipe.resolution)
    assert pipe.resolution < side <= FULL_RESOLUTION_MAX
    x0, y0 = face.aligned.inverse @ np.array([0.35, 0.35, 1 / pipe.resolution]) * pipe.resolution
    x1, y1 = face.aligned.inverse @ np.array([0.65, 0.65, 1 / pipe.resolution]) * pipe.resolution
    inner = (slice(int(y0), int(y1)), slice(int(x0), int(x1)))   # inside the face
    error = lambda x: float(np.abs(x[inner] - grace_hopper[inner]).mean())  # noqa: E731

    def sharpness(x):  # the mean gradient: detail, not only the right colours
        return float(np.abs(np.diff(x[inner].mean(-1), axis=1)).mean())

    restored, plain = pasted(), pasted(restore_detail=False)
    assert error(restored) < 0.5 * error(plain)
    assert sharpness(restored) > 1.5 * sharpness(plain)
    assert sharpness(restored) > 0.6 * sharpness(grace_hopper.astype(np.float64))
