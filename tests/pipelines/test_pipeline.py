"""ICPortraitPipeline on tiny random components (diffusers-style dummy models), on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from icportrait.errors import ICPortraitError, ImageError, ModelFilesError
from icportrait.models.control_net import ICControlNet
from icportrait.pipelines import ICPortraitPipeline
from icportrait.specs import assemble_pipeline, build_components, build_pipeline
from support.models import DUMMY, dummy_pipeline, trained_like


def images(n: int, size: int = 32, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, size, size, generator=g) for _ in range(n)]


def run(pipe, profile=None, template=None, seed=0, **kw):
    kw.setdefault("num_inference_steps", 2)
    kw.setdefault("output_type", "pt")
    gen = kw.pop("generator", torch.Generator().manual_seed(seed))
    return pipe(profile if profile is not None else images(1)[0],
                template if template is not None else images(1, seed=1)[0],
                generator=gen, **kw)


def test_fresh_pipeline_is_exactly_the_base_model():
    pipe = dummy_pipeline()
    out = run(pipe)
    plain = run(pipe, reference_scale=0.0)
    assert torch.equal(out.images, plain.images)
    assert out.flow.shape == (1, 2, 16, 16)  # latent side 16 (VAE factor 2)
    # ...and trained control nets do change it, so the equality above is not vacuous.
    assert not torch.equal(run(trained_like(pipe)).images, plain.images)


def test_seed_reproduces_and_differs():
    pipe = trained_like(dummy_pipeline())
    a, b, c = run(pipe, seed=3), run(pipe, seed=3), run(pipe, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.flow, b.flow)
    assert not torch.equal(a.images, c.images)


def test_batch_of_two_equals_two_singles():
    pipe = trained_like(dummy_pipeline())
    prof = images(1, seed=5)[0]
    tmpls = images(2, seed=6)
    gens = [torch.Generator().manual_seed(s) for s in (10, 11)]
    batch = run(pipe, prof, tmpls, generator=gens)
    singles = [run(pipe, prof, t, seed=s) for t, s in zip(tmpls, (10, 11), strict=True)]
    assert batch.images.shape == (2, 3, 32, 32)
    for i, single in enumerate(singles):
        assert torch.allclose(batch.images[i], single.images[0], atol=1e-5)
        assert torch.equal(batch.flow[i], single.flow[0])


def test_save_load_round_trip_is_exact(tmp_path):
    pipe = trained_like(dummy_pipeline())
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["matching_net"] == ["icportrait.models.control_net", "ICControlNet"]
    assert list((tmp_path / "appearance_net").glob("*.safetensors"))
    loaded = ICPortraitPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    for name in ("unet", "vae", "matching_net", "appearance_net", "null_embedding"):
        a, b = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    # Weights are bit-identical; outputs agree to float rounding (loaded tensors can take
    # other CPU kernel paths: measured differences are ~5e-7).
    assert torch.allclose(run(pipe).images, run(loaded).images, atol=1e-5)


def test_multi_reference_selects_per_location():
    pipe = trained_like(dummy_pipeline())
    out = run(pipe, images(2, seed=7), images(1, seed=8)[0])
    assert out.flow_ref.shape == (1, 16, 16)
    assert set(out.flow_ref.unique().tolist()) <= {0, 1}


def test_flow_cached_vs_per_step_and_appearance_reuse():
    pipe = trained_like(dummy_pipeline())
    cached = run(pipe, num_inference_steps=3)
    per_step = run(pipe, num_inference_steps=3, flow_mode="per_step")
    reuse = run(pipe, num_inference_steps=3, appearance_every=2)
    for out in (cached, per_step, reuse):
        assert torch.isfinite(out.images).all()
    assert not torch.equal(cached.images, reuse.images)


def test_reference_features_once_per_image_when_the_net_was_trained_so():
    pipe = trained_like(dummy_pipeline())
    calls = []
    pipe.appearance_net.register_forward_hook(lambda m, args, out: calls.append(args[0]))
    per_step = run(pipe, num_inference_steps=3)
    assert len(calls) == 3
    pipe.appearance_net.register_to_config(reference_timestep=0)
    calls.clear()
    once = run(pipe, num_inference_steps=3)
    # one call per image, on the clean canvas: its "noisy" channels are the condition's
    assert len(calls) == 1 and not torch.equal(once.images, per_step.images)
    c = pipe.unet.config.in_channels
    assert torch.equal(calls[0][:, :c], calls[0][:, c:2 * c])
    calls.clear()
    again = run(pipe, num_inference_steps=3, reference_once=False)   # the per-step ablation
    assert len(calls) == 3 and torch.equal(again.images, per_step.images)
    calls.clear()
    two = run(pipe, [*images(2)], num_inference_steps=3)   # references batched, not looped
    assert len(calls) == 1 and calls[0].shape[0] == 2 and torch.isfinite(two.images).all()


def test_confidence_gate_weights_the_warp_by_the_match_confidence():
    from icportrait.models.matching import Match, identity_flow

    pipe = trained_like(dummy_pipeline())
    side = pipe.resolution // pipe.vae_scale_factor
    still = identity_flow(1, side, side)
    ref = torch.zeros(1, side, side, dtype=torch.long)

    def flows(score: float) -> dict:
        return {(side, side): Match(still, torch.full((1, side, side), score), ref)}

    ungated = run(pipe, flows=flows(0.0))
    pipe.appearance_net.register_to_config(confidence_gate=True)
    unsure = run(pipe, flows=flows(0.0))
    no_warp = run(pipe, flows=flows(0.0), warp_profile=False)
    assert torch.allclose(unsure.images, no_warp.images, atol=1e-6)  # nothing is trusted
    assert not torch.allclose(unsure.images, ungated.images, atol=1e-4)
    assert torch.allclose(run(pipe, flows=flows(1.0)).images,
                          run(pipe, flows=flows(0.0), use_confidence=False).images, atol=1e-6)


@pytest.mark.parametrize("scheduler_cls", [EulerDiscreteScheduler, DPMSolverMultistepScheduler])
def test_any_scheduler(scheduler_cls):
    pipe = trained_like(dummy_pipeline())
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    out = run(pipe, num_inference_steps=3)
    assert torch.isfinite(out.images).all()


def test_guidance_and_ablations_run():
    pipe = trained_like(dummy_pipeline())
    base = run(pipe)
    assert not torch.equal(run(pipe, guidance_scale=2.0).images, base.images)
    assert not torch.equal(run(pipe, warp_profile=False).images, base.images)
    assert torch.isfinite(run(pipe, match_levels=[(8, 8)]).images).all()


def test_strength_runs_the_last_share_of_the_schedule_from_the_warped_profile(tmp_path):
    pipe = trained_like(dummy_pipeline())
    calls = []
    hook = pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    full = run(pipe, num_inference_steps=10)
    n_full, calls[:] = len(calls), []
    low = run(pipe, num_inference_steps=10, strength=0.3)
    hook.remove()
    assert n_full == 10 and len(calls) == 3
    assert not torch.equal(low.images, full.images)
    # Warp-initialised: without F_ref, the start still comes from the warped profile; the
    # no-matching ablation starts from the template instead.
    same = run(pipe, num_inference_steps=10, strength=0.3, reference_scale=0.0)
    no_warp = run(pipe, num_inference_steps=10, strength=0.3, reference_scale=0.0,
                  warp_profile=False)
    assert not torch.equal(no_warp.images, same.images)
    # The model's own default strength is saved with it and used when none is given.
    pipe.register_to_config(default_strength=0.3)
    pipe.save_pretrained(tmp_path)
    loaded = ICPortraitPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.default_strength == 0.3
    assert torch.allclose(run(loaded, num_inference_steps=10).images, low.images, atol=1e-5)


def test_output_types():
    pipe = dummy_pipeline()
    pil = run(pipe, output_type="pil").images
    arr = run(pipe, output_type="np").images
    assert pil[0].size == (32, 32) and arr.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(np.asarray(pil[0]) / 255.0, arr[0], atol=1 / 255 + 1e-6)


def test_inputs_of_any_size_are_resized():
    pipe = dummy_pipeline()
    g = torch.Generator().manual_seed(0)
    wide = (torch.rand(80, 100, 3, generator=g) * 255).byte().numpy()
    out = run(pipe, wide, torch.rand(3, 64, 64))
    assert out.images.shape == (1, 3, 32, 32)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(profile=torch.rand(4, 32, 32)), ImageError, "profile: a tensor image must be"),
        (dict(template=np.zeros((32, 32, 2), np.uint8)), ImageError, "needs 1, 3 or 4 channels"),
        (dict(profile=[]), ImageError, "no profile image"),
        (dict(mask_ratio=1.0), ICPortraitError, r"mask_ratio must be in \[0, 1\)"),
        (dict(num_inference_steps=0), ICPortraitError, r"integer in \[1, 1000\]"),
        (dict(strength=0.0), ICPortraitError, r"strength must be in \(0, 1\]"),
        (dict(flows={}, flow_mode="per_step"), ICPortraitError, "precomputed flows replace"),
        (dict(mask_patch_size=3), ICPortraitError, "must divide the latent size"),
        (dict(match_levels=[(5, 5)]), ICPortraitError, "not feature sizes"),
        (dict(flow_mode="sometimes"), ICPortraitError, "flow_mode"),
        (dict(prompt="a photo"), ICPortraitError, "no text encoder"),
        (dict(paste_back=True), ICPortraitError, "needs align_faces"),
    ],
)
def test_bad_inputs_are_clear(kwargs, error, match):
    pipe = dummy_pipeline()
    with pytest.raises(error, match=match):
        run(pipe, **kwargs)


def test_missing_components_are_named(tmp_path):
    with pytest.raises(ModelFilesError, match="model folder not found"):
        ICPortraitPipeline.from_pretrained(tmp_path / "nope")
    with pytest.raises(ModelFilesError, match=r"no model_index\.json"):
        ICPortraitPipeline.from_pretrained(tmp_path)
    dummy_pipeline().save_pretrained(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "appearance_net")
    with pytest.raises(ModelFilesError, match=r"lacks component folder.*appearance_net"):
        ICPortraitPipeline.from_pretrained(tmp_path)
    for f in (tmp_path / "unet").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ModelFilesError, match="unet has no weights"):
        ICPortraitPipeline.from_pretrained(tmp_path, appearance_net=ICControlNet())


def test_control_net_refuses_unsupported_bases():
    comps = build_components(DUMMY)
    unet = comps["unet"]
    unet.register_to_config(addition_embed_type="text_time")
    with pytest.raises(ValueError, match="addition_embed_type"):
        ICControlNet.from_unet(unet)


def test_tiny_spec_builds_and_runs():
    pipe = build_pipeline("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.resolution == 128 and pipe.vae_scale_factor == 4
    out = run(pipe, torch.rand(3, 128, 128), torch.rand(3, 128, 128))
    assert out.images.shape == (1, 3, 128, 128)
    assert {k: tuple(v.flow.shape) for k, v in out.flows.items()} == {
        (32, 32): (1, 2, 32, 32), (16, 16): (1, 2, 16, 16), (8, 8): (1, 2, 8, 8)}


def test_real_photos_align_and_paste_back(astronaut, grace_hopper):
    pipe = dummy_pipeline()
    out = pipe(astronaut, grace_hopper, num_inference_steps=2, align_faces=True, paste_back=True,
               generator=torch.Generator().manual_seed(0))
    assert out.images[0].size == (512, 600)  # the template photo's own size
    pasted = np.asarray(out.images[0])
    assert np.abs(pasted[:40, :40].astype(int) - grace_hopper[:40, :40]).max() == 0
    assert np.abs(pasted[250:300, 230:300].astype(int) - grace_hopper[250:300, 230:300]).mean() > 5


def test_components_are_diffusers_models():
    comps = build_components(DUMMY)
    assert isinstance(comps["vae"], AutoencoderKL)
    pipe = assemble_pipeline(**comps)
    assert set(pipe.components) >= {"vae", "unet", "matching_net", "appearance_net", "scheduler"}


def test_control_net_refuses_lcm_and_odd_input_kernels():
    unet = build_components(DUMMY)["unet"]
    unet.register_to_config(time_cond_proj_dim=256)
    with pytest.raises(ValueError, match="time_cond_proj_dim"):
        ICControlNet.from_unet(unet)


def test_restore_detail_adds_back_what_the_autoencoder_loses_of_the_warp_start():
    from icportrait.models.matching import Match, identity_flow

    pipe = trained_like(dummy_pipeline())
    side = pipe.resolution // pipe.vae_scale_factor
    still = {(side, side): Match(identity_flow(1, side, side), torch.ones(1, side, side),
                                 torch.zeros(1, side, side, dtype=torch.long))}
    photo = images(1)[0]
    # The profile is the template and the flow stands still: the warp start is the photo.
    kw = dict(flows=still, strength=0.1, num_inference_steps=10, warp_space="image")
    restored = run(pipe, photo, photo, **kw).images
    plain = run(pipe, photo, photo, restore_detail=False, **kw).images
    error = lambda x: float((x[0] - photo).abs().mean())  # noqa: E731
    assert error(restored) < 0.5 * error(plain)
    # Latents have no pixels to restore; without a warp start there is nothing to add back.
    for other in (dict(warp_space="latent"), dict(warp_profile=False)):
        args = {**kw, **other}
        assert torch.equal(run(pipe, photo, photo, **args).images,
                           run(pipe, photo, photo, restore_detail=False, **args).images)
