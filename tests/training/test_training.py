"""Training stages on tiny random models and tiny synthetic data (CPU, a few steps each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from icportrait.cli import main
from icportrait.data.pairs import collate
from icportrait.errors import ICPortraitError
from icportrait.pipelines import ICPortraitPipeline
from icportrait.specs import build_pipeline
from icportrait.synth.generate import SynthConfig, generate
from icportrait.training.config import TrainConfig
from icportrait.training.stages import Stage
from icportrait.training.trainer import Trainer
from support.models import DUMMY


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    generate(root / "data", SynthConfig(identities=2, views=2, lights=2, size=32, seed=3))
    build_pipeline(DUMMY, seed=0).save_pretrained(root / "init")
    return root


def _cfg(setup, tmp_path, stage, **kw) -> TrainConfig:
    base = dict(stage=stage, output_dir=str(tmp_path / stage), data=[str(setup / "data")],
                init=str(setup / "init"), steps=2, batch_size=2, checkpoint_every=2, seed=1)
    return TrainConfig(**{**base, **kw})


def _run(cfg, resume=False, stop_after=None):
    return Trainer(cfg, Stage(cfg, "cpu")).run(resume, stop_after=stop_after)


@pytest.mark.parametrize("stage", ["vae", "base", "matching", "appearance"])
def test_each_stage_trains_and_exports(setup, tmp_path, stage):
    kw = {"correspondence_loss": 0.5} if stage == "matching" else {}
    cfg = _cfg(setup, tmp_path, stage, val_data=str(setup / "data"), validate_every=2, **kw)
    before = ICPortraitPipeline.from_pretrained(setup / "init")
    result = _run(cfg)
    assert result["finished"] and result["end_step"] == 2 and result["world_size"] == 1
    out = tmp_path / stage
    assert (out / "checkpoints" / "step-000002" / "state.json").is_file()
    assert "loss" in (out / "log.csv").read_text()
    metrics = json.loads((out / "validation" / "step-000002.json").read_text())
    assert metrics
    after = ICPortraitPipeline.from_pretrained(out / "pipeline")
    trained = {"vae": "vae", "base": "unet", "matching": "matching_net",
               "appearance": "appearance_net"}[stage]
    a, b = getattr(before, trained).state_dict(), getattr(after, trained).state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a), "nothing was trained"
    frozen = "unet" if stage in ("matching", "appearance") else "appearance_net"
    if stage != "base":  # base re-creates the control nets from the trained UNet
        fa, fb = getattr(before, frozen).state_dict(), getattr(after, frozen).state_dict()
        assert all(torch.equal(fa[k], fb[k]) for k in fa)


def test_resume_matches_an_uninterrupted_run(setup, tmp_path):
    kw = dict(steps=4, checkpoint_every=2, ema_decay=0.9, warmup_steps=3)
    straight = _cfg(setup, tmp_path / "a", "matching", **kw)
    _run(straight)
    resumed = _cfg(setup, tmp_path / "b", "matching", **kw)
    first = _run(resumed, stop_after=2)
    assert not first["finished"] and not (tmp_path / "b" / "matching" / "pipeline").exists()
    ckpt = tmp_path / "b" / "matching" / "checkpoints" / "step-000002"
    assert {p.name for p in ckpt.iterdir()} == {"model.safetensors", "ema.safetensors",
                                                "optimizer.pt", "scheduler.pt", "state.json"}
    second = _run(resumed, resume=True)
    assert second["start_step"] == 2 and second["finished"]
    a = ICPortraitPipeline.from_pretrained(tmp_path / "a" / "matching" / "pipeline")
    b = ICPortraitPipeline.from_pretrained(tmp_path / "b" / "matching" / "pipeline")
    sa, sb = a.matching_net.state_dict(), b.matching_net.state_dict()
    # Same data, noise and optimiser state: equal up to float rounding (stated: 1e-6).
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)
    rows = (tmp_path / "b" / "matching" / "log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4"]


def test_existing_run_needs_resume_and_matching_stage(setup, tmp_path):
    cfg = _cfg(setup, tmp_path, "matching")
    _run(cfg)
    with pytest.raises(ICPortraitError, match=r"--resume"):
        _run(cfg)
    other = _cfg(setup, tmp_path, "appearance", output_dir=str(tmp_path / "matching"), steps=4)
    with pytest.raises(ICPortraitError, match="is a matching checkpoint"):
        _run(other, resume=True)


def test_bad_training_inputs(setup, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ICPortraitError, match=r"no <identity>/views\.json"):
        Stage(_cfg(setup, tmp_path, "matching", data=[str(empty)]), "cpu")
    with pytest.raises(ICPortraitError, match="not found"):
        Stage(_cfg(setup, tmp_path, "matching", data=[str(tmp_path / "nope")]), "cpu")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "manifest.json").write_text('{"kind": "something else"}')
    with pytest.raises(ICPortraitError, match="not an icportrait synthetic dataset"):
        Stage(_cfg(setup, tmp_path, "matching", data=[str(tmp_path / "junk")]), "cpu")
    with pytest.raises(ICPortraitError, match="--init"):
        Stage(_cfg(setup, tmp_path, "matching", init=str(tmp_path / "nope")), "cpu")
    tiny_init = tmp_path / "tiny"
    build_pipeline("tiny").save_pretrained(tiny_init)
    with pytest.raises(ICPortraitError, match=r"works at 128 px but .* holds 32x32 px"):
        Stage(_cfg(setup, tmp_path, "matching", init=str(tiny_init)), "cpu")
    with pytest.raises(ICPortraitError, match="no training data"):
        _cfg(setup, tmp_path, "matching", data=[]).validate()
    with pytest.raises(ICPortraitError, match="unknown stage"):
        _cfg(setup, tmp_path, "lighting").validate()
    with pytest.raises(ICPortraitError, match="device must be auto, cpu or cuda"):
        _cfg(setup, tmp_path, "matching", device="tpu").validate()
    if not torch.cuda.is_available():
        from icportrait.training.trainer import make_accelerator

        with pytest.raises(ICPortraitError, match="--device cuda: no CUDA device"):
            make_accelerator(_cfg(setup, tmp_path, "matching", device="cuda"))


def test_cli_train_matching(setup, tmp_path, capsys):
    code = main(["train", "matching", "--data", str(setup / "data"), "-o", str(tmp_path / "m"),
                 "--base", str(setup / "init"), "--steps", "2", "--batch-size", "2", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["finished"] is True
    assert main(["train", "matching", "--data", str(setup / "data"), "-o", str(tmp_path / "m"),
                 "--base", str(setup / "init"), "--steps", "2"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_two_process_cpu_run(setup, tmp_path):
    """Two processes over gloo (torchrun; `accelerate launch --cpu` would start only one)."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29517", "-m", "icportrait", "train", "matching",
           "--data", str(setup / "data"), "-o", str(out), "--base", str(setup / "init"),
           "--steps", "2", "--batch-size", "1", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = json.loads((out / "checkpoints" / "step-000002" / "state.json").read_text())
    assert state["world_size"] == 2
    assert (out / "pipeline" / "matching_net").is_dir()


def test_release_stores_fp16_and_keeps_notes(setup, tmp_path, capsys):
    out = tmp_path / "release"
    out.mkdir()
    (out / "RECIPE.md").write_text("how it was made\n")
    assert main(["train", "release", "--pipeline", str(setup / "init"), "--out", str(out),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dtype"] == "fp16" and summary["size_mb"] < 0.6 * summary["source_size_mb"]
    assert summary["psnr_vs_fp32_db"] >= 40
    assert (out / "RECIPE.md").read_text() == "how it was made\n"
    pipe = ICPortraitPipeline.from_pretrained(out)  # stored fp16, computed fp32 by default
    assert pipe.unet.dtype == torch.float32
    from safetensors import safe_open

    with safe_open(str(out / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16
    # the release sets the shipped sampling defaults, and says so
    assert main(["train", "release", "--pipeline", str(setup / "init"), "--out", str(out),
                 "--strength", "0.3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["default_strength"] == 0.3
    assert ICPortraitPipeline.from_pretrained(out).config.default_strength == 0.3
    assert main(["train", "release", "--pipeline", str(setup / "init"), "--out", str(out),
                 "--match-locality", "0.02"]) == 2
    assert "has none" in capsys.readouterr().err


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_denoising_target_follows_the_schedulers_parameterisation(setup, tmp_path,
                                                                   prediction_type):
    pipe = ICPortraitPipeline.from_pretrained(setup / "init")
    pipe.scheduler.register_to_config(prediction_type=prediction_type)
    pipe.save_pretrained(tmp_path / "init")
    stage = Stage(_cfg(setup, tmp_path, "base", init=str(tmp_path / "init")), "cpu")
    x0 = torch.randn(3, 4, 8, 16)
    noisy, target, t = stage.module._noise(x0, torch.Generator().manual_seed(0))
    a = pipe.scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    noise = (noisy - a.sqrt() * x0) / (1 - a).sqrt()
    expected = a.sqrt() * noise - (1 - a).sqrt() * x0 if prediction_type == "v_prediction" \
        else noise
    torch.testing.assert_close(target, expected, atol=1e-4, rtol=1e-4)
    # ... and the clean latents a prediction implies (the warp-start loss reads them)
    torch.testing.assert_close(stage.module._predicted_clean(noisy, target, t), x0, atol=1e-4,
                               rtol=1e-4)
    # A model of either kind trains, exports its kind, and samples.
    result = _run(_cfg(setup, tmp_path, "base", init=str(tmp_path / "init")))
    assert result["finished"]
    out = ICPortraitPipeline.from_pretrained(tmp_path / "base" / "pipeline")
    assert out.scheduler.config.prediction_type == prediction_type
    image = out(torch.rand(3, 32, 32), torch.rand(3, 32, 32), num_inference_steps=2,
                output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert np.isfinite(image).all()


def test_max_timestep_trains_low_noise_only_and_sets_the_models_strength(setup, tmp_path):
    stage = Stage(_cfg(setup, tmp_path, "base", max_timestep=300), "cpu")
    ts = torch.cat([stage.module._noise(torch.randn(64, 4, 8, 16),
                                        torch.Generator().manual_seed(s))[2] for s in range(4)])
    assert ts.max() < 300 and ts.min() >= 0 and len(ts.unique()) > 100
    assert _run(_cfg(setup, tmp_path, "base", max_timestep=300))["finished"]
    out = ICPortraitPipeline.from_pretrained(tmp_path / "base" / "pipeline")
    assert out.config.default_strength == 0.3
    with pytest.raises(ICPortraitError, match=r"--max-timestep must be in \[1, 1000\]"):
        _cfg(setup, tmp_path, "base", max_timestep=0).validate()


def test_unsupported_parameterisation_is_refused(setup, tmp_path):
    pipe = ICPortraitPipeline.from_pretrained(setup / "init")
    pipe.scheduler.register_to_config(prediction_type="sample")
    pipe.save_pretrained(tmp_path / "init")
    with pytest.raises(ICPortraitError, match="training supports epsilon, v_prediction "
                                              "models, this one predicts 'sample'"):
        Stage(_cfg(setup, tmp_path, "base", init=str(tmp_path / "init")), "cpu")


def test_descriptor_matching_net_learns(setup, tmp_path):
    """A few steps on the same easy pairs lower the descriptor loss and raise flow PCK."""
    from icportrait.training.validation import matching_pck

    cfg = _cfg(setup, tmp_path, "matching", steps=25, lr=2e-3, batch_size=4,
               checkpoint_every=25)
    stage = Stage(cfg, "cpu")
    items = [stage.dataset[i] for i in range(min(8, len(stage.dataset)))]
    batch = stage.collate(items[:4])

    def measure(module):
        with torch.no_grad():
            loss = float(module(batch, torch.Generator().manual_seed(0))[0])
        return loss, matching_pck(module.pipe, module.net, items)["pck10"]

    loss0, pck0 = measure(stage.module)
    Trainer(cfg, stage).run(False)
    loss1, pck1 = measure(stage.module)
    assert loss1 < loss0 - 0.3, (loss0, loss1)
    assert pck1 > pck0, (pck0, pck1)


def _shared_views_data(tmp_path):
    """Two identities rendered in the same views and lights: cross-identity pairs."""
    data = tmp_path / "shared"
    generate(data, SynthConfig(identities=2, views=2, lights=2, size=32, seed=3,
                               extra={"shared_views": True}))
    return data


def test_matching_trains_on_cross_identity_pairs(setup, tmp_path):
    data = _shared_views_data(tmp_path)
    cfg = _cfg(setup, tmp_path, "matching", data=[str(data)], cross_identity=1.0)
    stage = Stage(cfg, "cpu")
    item = stage.dataset[0]
    assert item["template_identity"] != item["identity"]
    # the loss reads template -> profile across the two heads, not the truth's own flow
    assert not torch.equal(item["template_flow"], item["flow"])
    assert _run(cfg)["finished"]


def test_appearance_trains_for_features_once_gated_and_teacher_forced(setup, tmp_path):
    data = _shared_views_data(tmp_path)
    cfg = _cfg(setup, tmp_path, "appearance", data=[str(data)], cross_identity=1.0,
               reference_timestep=0, confidence_gate=True, teacher_forcing=1.0)
    stage = Stage(cfg, "cpu")
    item = stage.dataset[0]   # the ground truth it is forced with: template -> profile
    assert "template_flow" in item and not torch.equal(item["template_flow"], item["flow"])
    loss, logs = stage.module(collate([item, stage.dataset[1]]), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and logs["teacher_forced"] == 1.0
    assert _run(cfg)["finished"]
    net = ICPortraitPipeline.from_pretrained(tmp_path / "appearance" / "pipeline").appearance_net
    assert net.config.reference_timestep == 0 and net.config.confidence_gate
    with pytest.raises(ICPortraitError, match="teacher-forcing"):
        _cfg(setup, tmp_path, "appearance", teacher_forcing=2.0).validate()


def test_appearance_trains_on_cross_identity_triplets(setup, tmp_path):
    data = _shared_views_data(tmp_path)
    cfg = _cfg(setup, tmp_path, "appearance", data=[str(data)], cross_identity=1.0)
    stage = Stage(cfg, "cpu")
    item = stage.dataset[0]
    assert item["template_identity"] != item["identity"]
    assert not torch.equal(item["template"], item["target"])
    assert _run(cfg)["finished"]


def test_attention_free_appearance_net_learns_its_teachers_reference_features(setup,
                                                                             tmp_path):
    from support.models import trained_like

    teacher = trained_like(ICPortraitPipeline.from_pretrained(setup / "init"))
    teacher.appearance_net.register_to_config(reference_timestep=0, confidence_gate=True)
    teacher.save_pretrained(tmp_path / "teacher")
    cfg = _cfg(setup, tmp_path, "appearance", init=str(tmp_path / "teacher"),
               attention_free=True, distill=True, steps=30, lr=3e-3, batch_size=4)
    stage = Stage(cfg, "cpu")
    batch = collate([stage.dataset[i] for i in range(4)])

    def loss() -> float:
        with torch.no_grad():
            return float(stage.module(batch, torch.Generator().manual_seed(0))[0])

    before = loss()
    assert before > 0
    Trainer(cfg, stage).run(False)
    after = loss()
    assert after < 0.7 * before, (before, after)
    net = ICPortraitPipeline.from_pretrained(tmp_path / "appearance" / "pipeline").appearance_net
    assert not net.has_attention
    assert net.config.reference_timestep == 0 and net.config.confidence_gate  # the teacher's
    with pytest.raises(ICPortraitError, match="untrained"):
        Stage(_cfg(setup, tmp_path, "appearance", attention_free=True, distill=True), "cpu")
    with pytest.raises(ICPortraitError, match="attention-free"):
        _cfg(setup, tmp_path, "appearance", distill=True).validate()
    with pytest.raises(ICPortraitError, match="appearance"):
        _cfg(setup, tmp_path, "matching", attention_free=True).validate()


def test_warp_start_noises_the_start_and_scores_against_the_truth(setup, tmp_path):
    cfg = _cfg(setup, tmp_path, "appearance", warp_start=True, reference_timestep=0)
    stage = Stage(cfg, "cpu")
    module, sched = stage.module, stage.module.frozen.train_scheduler
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 8, 16, generator=g)
    start = torch.randn(3, 4, 8, 16, generator=g)
    noisy, target, t = module._noise(x0, g, start)
    # the noise is the start's, the regression target the truth's
    noise = (noisy - sched.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1) * start) / \
        (1 - sched.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    v = sched.config.prediction_type == "v_prediction"
    assert torch.allclose(target, sched.get_velocity(x0, noise, t) if v else noise, atol=1e-4)
    item = collate([stage.dataset[0], stage.dataset[1]])
    loss, _ = module(item, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    assert _run(cfg)["finished"]
    with pytest.raises(ICPortraitError, match="choose one"):
        _cfg(setup, tmp_path, "appearance", warp_start=True, distill=True,
             attention_free=True).validate()
