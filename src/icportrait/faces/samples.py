"""The public-domain portraits that ship inside installed packages (no download needed).

* ``astronaut``: NASA portrait of Eileen Collins, from scikit-image (public domain).
* ``grace_hopper``: US Navy portrait of Grace Hopper, from matplotlib (public domain).
"""

from __future__ import annotations

import numpy as np

SAMPLE_NAMES = ("astronaut", "grace_hopper")


def load_sample(name: str) -> np.ndarray:
    """An RGB uint8 array of a bundled portrait."""
    if name == "astronaut":
        from skimage import data

        return np.ascontiguousarray(data.astronaut())
    if name == "grace_hopper":
        import matplotlib.cbook

        from icportrait.io import load_image

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            return load_image(f.read())
    raise KeyError(f"unknown sample {name!r}; choose from {', '.join(SAMPLE_NAMES)}")
