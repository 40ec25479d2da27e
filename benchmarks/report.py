"""Shared output of the benchmark scripts: JSON on stdout, and in a file when asked."""

from __future__ import annotations

import json


def emit(results: dict, path: str | None) -> None:
    text = json.dumps(results, indent=2)
    print(text)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")
