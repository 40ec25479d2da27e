"""Diffusers pipelines."""

from icportrait.pipelines.pipeline_ic_portrait import ICPortraitPipeline, ICPortraitPipelineOutput

__all__ = ["ICPortraitPipeline", "ICPortraitPipelineOutput"]
