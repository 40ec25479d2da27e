"""The method's defaults, defined once: every layer imports them from here."""

from __future__ import annotations

from icportrait.errors import SettingError

MASK_RATIO = 0.8          # fraction of template latent patches hidden (the paper's "e.g. 80%")
MATCH_TIMESTEP = 200      # training timestep at which the matching net's input is noised
DESCRIPTOR_DIM = 64       # matching descriptor channels (0: the paper's raw-feature argmax)
PHOTO_PAIRS = 20000       # training pairs drawn from each photo corpus in a stage's data
RESHAPE_FRACTION = 0.5    # share of photo face pairs whose target takes another face's shape
MATCH_LOCALITY = 0.05     # matching prior: std of a match's displacement / half width
STEPS = 30                # denoising steps of a portrait
STRENGTH = 1.0            # share of the schedule a portrait runs (< 1: warp-initialised)
FLOW_SOURCES = ("net", "mesh")      # where the matching flow comes from
FLOW_SOURCE = "net"       # the paper's: the matching net (a model may ship "mesh")
WARP_SPACES = ("latent", "image")   # where warp-initialised sampling warps the profile
WARP_SPACE = "latent"     # a model may ship "image" (smooth, no tearing; one more encode)
EVAL_STEPS = 20           # denoising steps in evaluation suites (cheaper, same for all methods)
VALIDATION_STEPS = 10     # denoising steps of training-time validation and release checks


def check_mask_ratio(ratio: float, name: str = "mask ratio") -> float:
    """``ratio`` if it is in [0, 1) (a fully hidden template teaches no light), else a clear
    error."""
    if not 0.0 <= ratio < 1.0:
        raise SettingError(f"{name} must be in [0, 1), got {ratio}")
    return ratio


def check_strength(strength: float, name: str = "strength") -> float:
    """``strength`` if it is in (0, 1] (the share of the schedule a portrait runs; 0 would
    run no step), else a clear error."""
    if not 0.0 < strength <= 1.0:
        raise SettingError(f"{name} must be in (0, 1], got {strength}")
    return strength


def check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    """``value`` if it is one of ``choices``, else a clear error naming them."""
    if value not in choices:
        raise SettingError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                           f"got {value!r}")
    return value
