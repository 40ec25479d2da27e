"""The sd15 spec on a tiny random model with Stable Diffusion 1.5's block structure."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from icportrait.errors import ModelFilesError
from icportrait.specs import assemble_pipeline, get_spec
from icportrait.store import load_base
from support.ldm_format import save_ldm_checkpoint


def sd15_config_dir():
    return get_spec("sd15").config_path()


def load_sd15_pipeline(path, config_dir=None):
    return assemble_pipeline(**load_base(path, "sd15", config_dir))


def _tiny_sd15():
    """SD 1.5's layout (4 blocks, 2 layers each, cross-attention in the first 3) at toy width."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 32, 64, 64), layers_per_block=2,
        cross_attention_dim=32, attention_head_dim=2, norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, norm_num_groups=4,
        sample_size=64, latent_channels=4, scaling_factor=0.18215,
    )
    return unet, vae


@pytest.fixture(scope="module")
def sd15_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd15")
    unet, vae = _tiny_sd15()
    unet.save_pretrained(root / "folder" / "unet")
    vae.save_pretrained(root / "folder" / "vae")
    save_ldm_checkpoint(unet, vae, root / "model.safetensors")
    return root, unet, vae


def _two_steps(pipe):
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(1)
    out = pipe(torch.rand(3, 64, 64, generator=g), torch.rand(3, 64, 64, generator=g),
               num_inference_steps=2,
               generator=torch.Generator().manual_seed(0), output_type="pt")
    assert out.images.shape == (1, 3, 64, 64) and torch.isfinite(out.images).all()
    assert out.flow.shape == (1, 2, 8, 8)
    return out


def test_packaged_sd15_config_is_the_real_layout():
    cfg = UNet2DConditionModel.load_config(sd15_config_dir(), subfolder="unet")
    assert cfg["block_out_channels"] == [320, 640, 1280, 1280] and cfg["cross_attention_dim"] == 768
    vae = AutoencoderKL.load_config(sd15_config_dir(), subfolder="vae")
    assert vae["scaling_factor"] == 0.18215


def test_sd15_from_diffusers_folder(sd15_dirs):
    root, unet, _ = sd15_dirs
    pipe = load_sd15_pipeline(root / "folder")
    assert torch.equal(pipe.unet.conv_in.weight, unet.conv_in.weight)
    # The control nets are copies of its encoder with 4 + 5 input channels.
    assert pipe.matching_net.conv_in.weight.shape[1] == 9
    assert len(pipe.appearance_net.zero_convs) == 12  # SD 1.5's 12 skip connections
    _two_steps(pipe)


def test_sd15_from_single_file(sd15_dirs):
    root, unet, vae = sd15_dirs
    # Architecture from the tiny model's own config folder (the packaged one is full size).
    pipe = load_sd15_pipeline(root / "model.safetensors", config_dir=root / "folder")
    for a, b in ((unet, pipe.unet), (vae, pipe.vae)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    folder_out = _two_steps(load_sd15_pipeline(root / "folder"))
    assert torch.allclose(_two_steps(pipe).images, folder_out.images, atol=1e-5)


def test_sd15_errors_name_what_is_missing(tmp_path, sd15_dirs):
    with pytest.raises(ModelFilesError, match="not found"):
        load_base(tmp_path / "missing")
    (tmp_path / "half" / "vae").mkdir(parents=True)
    with pytest.raises(ModelFilesError, match="missing unet/"):
        load_base(tmp_path / "half")
    bogus = tmp_path / "weights.txt"
    bogus.write_text("x")
    with pytest.raises(ModelFilesError, match=r"expected a \.safetensors"):
        load_base(bogus)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFilesError, match=r"cannot load the SD 1\.5 checkpoint"):
        load_base(junk, config_dir=sd15_dirs[0] / "folder")


def test_sd15_loads_in_half_precision(sd15_dirs):
    root, _, _ = sd15_dirs
    for path, cfg in ((root / "folder", None), (root / "model.safetensors", root / "folder")):
        base = load_base(path, config_dir=cfg, torch_dtype=torch.float16)
        assert base["unet"].dtype == torch.float16 and base["vae"].dtype == torch.float16


def test_sd15_trains_with_the_same_commands(sd15_dirs, tmp_path, capsys):
    """`train matching --base <SD 1.5 folder>`, then `train appearance --lora-rank 4`: the
    LoRA adapters train with the appearance net and are merged into the exported UNet."""
    import json

    from icportrait.cli import main
    from icportrait.pipelines import ICPortraitPipeline
    from icportrait.synth.generate import SynthConfig, generate

    root, unet, _ = sd15_dirs
    data = tmp_path / "data"
    generate(data, SynthConfig(identities=2, views=2, lights=1, size=64, seed=5))
    common = ["--data", str(data), "--steps", "2", "--batch-size", "2", "--json"]
    assert main(["train", "matching", "-o", str(tmp_path / "m"), "--base", str(root / "folder"),
                 *common]) == 0
    assert json.loads(capsys.readouterr().out)["finished"]
    assert main(["train", "appearance", "-o", str(tmp_path / "a"), "--matching",
                 str(tmp_path / "m" / "pipeline"), "--lora-rank", "4", *common]) == 0
    assert json.loads(capsys.readouterr().out)["finished"]
    from safetensors.torch import load_file

    ckpt = load_file(str(tmp_path / "a" / "checkpoints" / "step-000002" / "model.safetensors"))
    assert any(k.startswith("lora.") for k in ckpt)
    assert not any(k.startswith("unet.") for k in ckpt)  # adapters only, not the base
    pipe = ICPortraitPipeline.from_pretrained(tmp_path / "a" / "pipeline")
    merged = pipe.unet.state_dict()
    assert not any("lora" in k for k in merged)
    base = unet.state_dict()
    changed = [k for k in base if "to_q" in k and not torch.equal(base[k], merged[k])]
    assert changed, "the LoRA update was not merged into the exported UNet"
    assert all(torch.equal(base[k], merged[k]) for k in base if "conv_in" in k)
    _two_steps(pipe)
    # LoRA belongs to the appearance stage only
    from icportrait.errors import ICPortraitError
    from icportrait.training.config import TrainConfig

    with pytest.raises(ICPortraitError, match="appearance stage only"):
        TrainConfig(stage="matching", output_dir="x", data=["d"], init="i",
                    lora_rank=4).validate()
