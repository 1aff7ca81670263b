"""core_ssl: the shared building blocks of the toolkit.

Encoders, batched augmentations, the contrastive loss family, momentum encoders, queues and
memory banks, distributed gathering, representation monitors, data loading, checkpoints,
logging and configs. The three applications (``vision_benchmarks``, ``rl_curl``,
``cut_translation``) import from here; this package imports none of them.
"""

__version__ = "0.1.0"
