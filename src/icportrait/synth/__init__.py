"""Synthetic view-consistent profile data: heads, cameras, lights, renderers."""
