"""Evaluation: named suites, IC-Portrait and baselines run side by side, metrics, report.

>>> from icportrait.evaluation import run_eval, write_report       # doctest: +SKIP
>>> run_eval("synth-small", "out/", ["icportrait", "classical-swap"], model="weights/tiny")
>>> write_report("out/")                                          # -> out/report.html
"""

from icportrait.evaluation.report import write_report
from icportrait.evaluation.runner import run_eval
from icportrait.evaluation.suites import SUITE_NAMES, Sample, load_suite

__all__ = ["SUITE_NAMES", "Sample", "load_suite", "run_eval", "write_report"]
