"""Experiments over many pre-training runs, and the papers' conclusions judged on them.

- :mod:`~vision_benchmarks.studies.ablation_cells`: SimCLR's ablations (augmentations, heads,
  batch size x length), one pre-training and evaluation per cell and seed
  (``python -m vision_benchmarks.ablate``);
- :mod:`~vision_benchmarks.studies.ablation_report` and
  :mod:`~vision_benchmarks.studies.ablation_claims`: their tables, figures and verdicts;
- :mod:`~vision_benchmarks.studies.method_claims` and :mod:`~vision_benchmarks.studies.plots`:
  the papers' comparisons of methods judged on the seeded results table, and its bar chart.

A study may run the commands (:mod:`vision_benchmarks.pretrain`) and use
:mod:`vision_benchmarks.evaluation`; nothing outside the studies and the commands imports it.
"""
