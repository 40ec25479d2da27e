"""Generating portraits: one portrait, sweeps and batch runs, templates (relit photos or
rendered poses) and pictures of the results. The CLI, the web UI and the demo are thin
callers of these functions; models are loaded by :mod:`icportrait.store`."""

from icportrait.generation.pictures import flow_picture, grid, sweep_sheet
from icportrait.generation.portrait import Result, Settings, generate_portrait, make_template
from icportrait.generation.runs import (
    LIGHT_SWEEP,
    POSE_SWEEP_YAWS,
    PortraitRun,
    light_sweep,
    pose_sweep,
    sweep_lights,
    sweep_poses,
)

__all__ = [
    "LIGHT_SWEEP",
    "POSE_SWEEP_YAWS",
    "PortraitRun",
    "Result",
    "Settings",
    "flow_picture",
    "generate_portrait",
    "grid",
    "light_sweep",
    "make_template",
    "pose_sweep",
    "sweep_lights",
    "sweep_poses",
    "sweep_sheet",
]
