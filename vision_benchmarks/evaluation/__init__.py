"""How a pre-trained backbone is measured: the protocols and the experiments built on them.

- :mod:`~vision_benchmarks.evaluation.protocols`: the linear probe, the weighted kNN,
  fine-tuning and SimCLRv2's self-distillation, on one train / test pair;
- :mod:`~vision_benchmarks.evaluation.transfer`: other datasets, loaded for a run's encoder;
- :mod:`~vision_benchmarks.evaluation.corruptions` and
  :mod:`~vision_benchmarks.evaluation.robustness`: CIFAR-10-C style corruptions and the linear
  probe's accuracy under them (mCE);
- :mod:`~vision_benchmarks.evaluation.config` and :mod:`~vision_benchmarks.evaluation.runner`:
  the configuration of ``python -m vision_benchmarks.evaluate`` and the protocols run on a run;
- :mod:`~vision_benchmarks.evaluation.semisup` and
  :mod:`~vision_benchmarks.evaluation.semisup_report`: the semi-supervised experiment of
  ``python -m vision_benchmarks.semisup`` and its report.

Modules here import the package's shared modules (``config``, ``datasets``, ``pretrained``,
``methods``) and each other, never a command module nor :mod:`vision_benchmarks.studies`.
"""
