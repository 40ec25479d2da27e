"""PatchAutoencoder: the PCA start is exact, and it speaks AutoencoderKL's interface."""

from __future__ import annotations

import torch

from icportrait.conditioning import vae_decode, vae_encode
from icportrait.models.autoencoder import PatchAutoencoder


def _images(n=6, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth random images: low-resolution noise upsampled, so patches are correlated
    low = torch.rand(n, 3, size // 4, size // 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear")


def _pca_reconstruction(x, k, p=4):
    patches = torch.nn.functional.pixel_unshuffle(x, p).permute(0, 2, 3, 1).reshape(-1, 3 * p * p)
    mu = patches.double().mean(0)
    _, _, vt = torch.linalg.svd(patches.double() - mu, full_matrices=False)
    v = vt[:k]
    rec = (patches.double() - mu) @ v.T @ v + mu
    n, _, h, w = x.shape
    rec = rec.reshape(n, h // p, w // p, 3 * p * p).permute(0, 3, 1, 2).float()
    return torch.nn.functional.pixel_shuffle(rec, p)


def test_starts_as_the_whitened_pca_of_patches():
    x = _images()
    ae = PatchAutoencoder(latent_channels=6, sample_size=32)
    info = ae.init_from_images(x)
    assert 0 < info["explained_variance"] <= 1
    with torch.no_grad():
        z = ae.encode(x).latent_dist.mode()
        rec = ae.decode(z).sample
    # the residual branches start at zero, so this is exactly the linear code
    torch.testing.assert_close(rec, _pca_reconstruction(x, 6), atol=1e-4, rtol=0)
    # whitened: every latent channel has unit variance over the fitting data
    torch.testing.assert_close(z.permute(1, 0, 2, 3).reshape(6, -1).std(1),
                               torch.ones(6), atol=2e-3, rtol=0)
    more = PatchAutoencoder(latent_channels=12, sample_size=32)
    more.init_from_images(x)
    with torch.no_grad():
        err6 = (rec - x).abs().mean()
        err12 = (more.decode(more.encode(x).latent_dist.mode()).sample - x).abs().mean()
    assert err12 < err6   # more components keep more


def test_unwhitened_latents_keep_the_spectrum():
    x = _images()
    ae = PatchAutoencoder(latent_channels=6, sample_size=32, whiten=False)
    ae.init_from_images(x)
    with torch.no_grad():
        z = ae.encode(x).latent_dist.mode()
        rec = ae.decode(z).sample
    torch.testing.assert_close(rec, _pca_reconstruction(x, 6), atol=1e-4, rtol=0)
    std = z.permute(1, 0, 2, 3).reshape(6, -1).std(1)
    assert abs(float(std[0]) - 1) < 2e-3 and bool((std[1:] <= std[:-1] + 1e-4).all())


def test_interface_and_save_load(tmp_path):
    ae = PatchAutoencoder(latent_channels=4, sample_size=32, hidden_channels=8)
    ae.init_from_images(_images())
    ae.register_to_config(scaling_factor=0.5)
    x = _images(2, seed=1)
    with torch.no_grad():
        z = vae_encode(ae, x)
        assert z.shape == (2, 4, 8, 8)
        img = vae_decode(ae, z)
    assert img.shape == (2, 3, 32, 32) and 0 <= img.min() and img.max() <= 1
    ae.save_pretrained(tmp_path / "vae")
    back = PatchAutoencoder.from_pretrained(tmp_path / "vae")
    assert back.config.scaling_factor == 0.5
    with torch.no_grad():
        torch.testing.assert_close(vae_encode(back, x), z)
    post = ae.encode(x).latent_dist
    assert post.kl().shape == (2,) and post.std.max() < 0.01   # nearly deterministic start
