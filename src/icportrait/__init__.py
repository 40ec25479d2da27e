"""icportrait: personalised portraits in any pose and lighting (IC-Portrait, arXiv 2501.17159).

>>> from icportrait import ICPortraitPipeline          # doctest: +SKIP
>>> pipe = ICPortraitPipeline.from_pretrained("weights/tiny")  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

# Heavy imports (torch, diffusers) happen on first use, so `icportrait --help` stays fast.
_LAZY = {
    "ICPortraitPipeline": "icportrait.pipelines.pipeline_ic_portrait",
    "ICPortraitPipelineOutput": "icportrait.pipelines.pipeline_ic_portrait",
    "ICControlNet": "icportrait.models.control_net",
    "build_pipeline": "icportrait.specs",
    "load_pipeline": "icportrait.store",
    "load_base_pipeline": "icportrait.store",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'icportrait' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
