"""Image datasets read into memory as uint8 tensors, and a batch iterator over them.

Every dataset the toolkit trains on fits in memory once decoded (CIFAR-10 train is 150 MB), so
images are decoded once into one ``uint8`` tensor of shape (N, C, H, W) and augmented later,
batch-wise, on the training device. Sources:

- :func:`load_image_folder`: a folder or a ``.zip`` archive of a folder laid out
  ``<root>/<split>/<class>/<image>``; the decoded tensors are cached on disk, so the second
  load takes a fraction of a second.
- :func:`read_image_files`: an unlabelled folder of images (e.g. one domain of an unpaired
  image-translation dataset) from a folder or a zip.
- :func:`load_cifar10`, :func:`load_fashion_mnist`, :func:`load_torchvision`: named datasets,
  from local files when present, from torchvision's downloaders when asked.
- :func:`load_dataset`: one entry point for a name or a path.
- :func:`split_by_fraction`: a seeded, class-stratified train/test split of one set;
  :func:`list_splits`: the top-level folders of a dataset (to tell its layout).

Unreadable images (corrupt, truncated, empty) are skipped with a :class:`CorruptImageWarning`
that counts and names them; ``strict=True`` raises at the first instead. 16-bit PNGs are
scaled to 8 bits by ``round(v / 257)`` (:func:`scale_16bit`).

Data lives in a data root found by :func:`resolve_data_root` (``--data-root``, then
``$SSL_DATA_DIR``, then ``../shared/data`` beside the project checkout, then ``./data``).

:class:`BatchIterator` yields shuffled, reproducible batches, gathered on the CPU and copied
to the device in one non-blocking transfer.

Modules: ``roots`` (where the data is), ``imageset``, ``readers`` (folders and zips),
``decode``, ``folders`` (labelled folders and the cache), ``named`` (named datasets),
``batches``.
"""

from core_ssl.data.batches import BatchIterator
from core_ssl.data.decode import CorruptImageWarning, read_image_file, resize_images, scale_16bit
from core_ssl.data.folders import CACHE_ENV_VAR, DEFAULT_CACHE_DIR, list_splits, load_image_folder, read_image_files
from core_ssl.data.imageset import ImageSet, split_by_fraction
from core_ssl.data.named import (
    DATASET_NAMES,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_SYSTEM_DIR,
    load_cifar10,
    load_dataset,
    load_fashion_mnist,
    load_torchvision,
    read_idx,
)
from core_ssl.data.readers import IMAGE_SUFFIXES, SPLIT_NAMES, open_zip
from core_ssl.data.roots import DATA_ENV_VAR, default_data_root, find_source, resolve_data_root

__all__ = [
    "BatchIterator", "ImageSet", "load_image_folder", "read_image_file", "open_zip", "read_image_files", "load_cifar10", "load_fashion_mnist",
    "load_torchvision", "load_dataset", "read_idx", "resize_images", "resolve_data_root", "default_data_root",
    "find_source", "DATA_ENV_VAR", "CACHE_ENV_VAR", "DEFAULT_CACHE_DIR", "DATASET_NAMES", "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_SYSTEM_DIR", "IMAGE_SUFFIXES", "SPLIT_NAMES", "CorruptImageWarning", "scale_16bit",
    "split_by_fraction", "list_splits",
]
