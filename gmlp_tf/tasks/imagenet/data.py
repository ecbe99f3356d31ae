"""ImageNet-style input pipelines: TFDS imagenet2012, an image folder, or in-memory arrays.

Every source becomes a dataset of (uint8 image [h, w, 3], int label); one pipeline then makes
  training batches: random-resized crop (Inception / timm: area 8%-100%, aspect 3/4-4/3) to
    image_size, random horizontal flip, batch with drop_remainder; float32 pixels in [0, 255]
    (augment.py then applies AutoAugment, label smoothing and Mixup / CutMix, and normalises);
  evaluation batches: shorter side resized to image_size / crop_fraction (0.875, timm's
    default), centre crop to image_size, normalised; the last batch padded with weight-0 copies
    so that every batch has a static shape (as the GLUE pipeline does for text; TPUs need it).

Normalisation: (pixel / 255 - mean) / std per channel. IMAGENET_MEAN / IMAGENET_STD are the
default (training from scratch, as DeiT and timm's recipe); timm's gMLP checkpoints were
trained with mean = std = 0.5 (TIMM_GMLP_MEAN / TIMM_GMLP_STD): use those with its weights.

Grayscale sources (MNIST, grayscale JPEGs) are converted to 3 channels (decode_image with
channels=3, or grayscale_to_rgb), so one stem layout serves all.

Unreadable image files in an image folder: nothing is read or decoded up front (ImageNet's 1.28M
files would take hours); each file is read in the tf.data pipeline and its bytes get a cheap
check before decoding (image_bytes_problem: empty, no image signature, a JPEG or PNG cut short).
A file that fails is skipped, logged with its path and flagged in SourceInfo.unreadable (the job
logs and reports the count), or, with on_unreadable="fail", stops the iteration with an error
naming it. A file that passes but is corrupt inside is dropped by ignore_errors ("skip").
TFDS images were decoded and checked when TFDS prepared the dataset.
"""

import dataclasses
import os
import re
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_GMLP_MEAN = (0.5, 0.5, 0.5)
TIMM_GMLP_STD = (0.5, 0.5, 0.5)
DEFAULT_CROP_FRACTION = 0.875
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TRAIN, VALIDATION = "train", "validation"
FOLDER_SPLITS = {TRAIN: "train", VALIDATION: "val"}  # root/train/<class>/..., root/val/<class>/...
ON_UNREADABLE = ("skip", "fail")
UNREADABLE_FILE = "unreadable image file"  # Starts the message of on_unreadable="fail"'s error.
DECODE_SCOPE = "decode_image_file"  # Names the decode ops, so that their errors can be told apart.
JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OTHER_SIGNATURES = (b"GIF8", b"BM")  # GIF87a / GIF89a, BMP.
# Where the JPEG end marker or PNG IEND chunk is looked for: writers may pad or append data after it.
TAIL_BYTES = 4096


@dataclasses.dataclass
class SourceInfo:
    """What a source holds: examples (image folder: files listed), classes, and unreadable files.

    unreadable: for an image folder, one flag per listed file (in list_image_folder's order), set
    as the dataset reads a file that fails image_bytes_problem; None for other sources.
    """

    num_examples: int
    num_classes: int
    class_names: Optional[List[str]] = None
    unreadable: Optional[tf.Variable] = None

    @property
    def num_unreadable(self) -> int:
        """Distinct files found unreadable so far (each counts once however often it is read)."""
        return 0 if self.unreadable is None else int(tf.math.count_nonzero(self.unreadable))


# ------------------------------------------------------------------------------------ sources
def tfds_source(
    name: str, split: str, data_dir: Optional[str] = None, shuffle_files: bool = False
) -> Tuple[tf.data.Dataset, SourceInfo]:
    """(dataset of (uint8 image, int32 label), SourceInfo) from a prepared TFDS dataset.

    download=False: ImageNet needs the ILSVRC tars in TFDS's manual_dir and a prior
    `tfds build imagenet2012`; a missing dataset fails at once instead of trying the network.
    """
    import tensorflow_datasets as tfds

    try:
        dataset, info = tfds.load(name, split=split, data_dir=data_dir, download=False, with_info=True,
                                  shuffle_files=shuffle_files, as_supervised=False)
    except (tfds.core.registered.DatasetNotFoundError, AssertionError) as err:
        raise ValueError(f"TFDS dataset {name} ({split}) is not available in {data_dir or 'the default data dir'}: "
                         f"{err}") from None
    features = info.features
    if "image" not in features or "label" not in features:
        raise ValueError(f"TFDS dataset {name} has no image and label features")
    num_examples = info.splits[split].num_examples if split in info.splits else 0
    if not num_examples:
        num_examples = int(dataset.cardinality().numpy())
    source = dataset.map(lambda ex: (_to_rgb(ex["image"]), tf.cast(ex["label"], tf.int32)), num_parallel_calls=AUTOTUNE)
    names = list(features["label"].names) if hasattr(features["label"], "names") else None
    return source, SourceInfo(num_examples, int(features["label"].num_classes), names)


def list_image_folder(
    root: str, split: str, class_names: Optional[Sequence[str]] = None
) -> Tuple[List[str], List[int], List[str]]:
    """Image paths and label ids of root/<train|val>/<class>/*.

    Class ids are the positions of the class folders in the sorted train folder names; pass
    class_names (from the train split) for the validation split, whose classes must be among them.

    Returns:
      (paths, labels, class_names).
    """
    folder = os.path.join(root, FOLDER_SPLITS.get(split, split))
    if not tf.io.gfile.isdir(folder):
        raise FileNotFoundError(f"image folder {folder} does not exist (expected {root}/train/<class>/*.jpg and "
                                f"{root}/val/<class>/*.jpg)")
    found = sorted(d.rstrip("/") for d in tf.io.gfile.listdir(folder) if tf.io.gfile.isdir(os.path.join(folder, d)))
    if not found:
        raise ValueError(f"image folder {folder} has no class subfolders")
    if class_names is None:
        class_names = found
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise ValueError(f"{folder} has classes that the train split lacks: {', '.join(unknown[:10])}")
    index = {name: i for i, name in enumerate(class_names)}
    paths, labels = [], []
    for name in found:
        for file_name in sorted(tf.io.gfile.listdir(os.path.join(folder, name))):
            if file_name.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(os.path.join(folder, name, file_name))
                labels.append(index[name])
    if not paths:
        raise ValueError(f"image folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return paths, labels, list(class_names)


def image_folder_source(
    root: str, split: str, class_names: Optional[Sequence[str]] = None, on_unreadable: str = "skip"
) -> Tuple[tf.data.Dataset, SourceInfo]:
    """(dataset of (uint8 image, int32 label), SourceInfo) of root/<train|val>/<class>/*.

    Only the folder listing happens here; each file is read, checked (image_bytes_problem) and
    decoded as the dataset is iterated. A file failing the check is not decoded: with "skip" it
    is dropped, logged to stderr the first time and flagged in SourceInfo.unreadable; with
    "fail" reading it raises tf.errors.InvalidArgumentError naming it (unreadable_file_message
    extracts the line). A file that passes the check but still fails to decode: with "skip" it is
    dropped by ignore_errors, which logs TF's decode error (without the path; it is not counted);
    with "fail" TF's decode error stops the iteration (it cannot name the file; unreadable_file_message
    still makes a line of it).

    Raises:
      ValueError: on_unreadable is neither "skip" nor "fail".
    """
    if on_unreadable not in ON_UNREADABLE:
        raise ValueError(f"on_unreadable must be one of {ON_UNREADABLE}, got {on_unreadable!r}")
    paths, labels, class_names = list_image_folder(root, split, class_names)
    with tf.device("/cpu:0"):  # tf.data functions run on the host: they cannot reach a variable on an accelerator.
        unreadable = tf.Variable(tf.zeros([len(paths)], tf.bool), trainable=False, name="unreadable_files")
    dataset = tf.data.Dataset.from_tensor_slices((tf.range(len(paths)), paths, np.array(labels, np.int32)))

    def read(index, path, label):
        data = tf.io.read_file(path)
        return data, label, _readable(data, path, index, unreadable, on_unreadable == "fail")

    dataset = dataset.map(read, num_parallel_calls=AUTOTUNE)
    dataset = dataset.filter(lambda data, label, readable: readable)

    def decode(data, label, readable):
        with tf.name_scope(DECODE_SCOPE):
            return _decode(data), label

    dataset = dataset.map(decode, num_parallel_calls=AUTOTUNE)
    if on_unreadable == "skip":
        # Last resort for a file that passes the check but is corrupt inside. Not with "fail":
        # it would swallow the check's error too.
        dataset = dataset.ignore_errors(log_warning=True)
    return dataset, SourceInfo(len(paths), len(class_names), class_names, unreadable)


def image_bytes_problem(data: tf.Tensor) -> tf.Tensor:
    """Why the bytes of an image file cannot be a whole image, or "" if they may be (no decoding).

    Empty; no JPEG, PNG, GIF or BMP signature; a JPEG without its end marker (FF D9) or a PNG
    without its IEND chunk among the last TAIL_BYTES bytes (truncated). GIF and BMP get the
    signature check only. TF cannot decode a JPEG or PNG that really lacks its end either; only one
    with more than TAIL_BYTES appended after its end would be rejected wrongly. A file that passes
    may still be corrupt inside.
    """
    size = tf.strings.length(data)
    head = tf.strings.substr(data, 0, 8)
    tail = tf.io.decode_raw(tf.strings.substr(data, tf.maximum(size - TAIL_BYTES, 0), TAIL_BYTES), tf.uint8)
    is_jpeg = tf.equal(tf.strings.substr(head, 0, 3), JPEG_SIGNATURE)
    is_png = tf.equal(head, PNG_SIGNATURE)
    is_other = tf.reduce_any([tf.equal(tf.strings.substr(head, 0, len(s)), s) for s in OTHER_SIGNATURES])
    problem = tf.constant("")
    problem = tf.where(is_png & ~_contains(tail, b"IEND"), "truncated PNG: no IEND chunk at the end", problem)
    problem = tf.where(is_jpeg & ~_contains(tail, b"\xff\xd9"), "truncated JPEG: no end marker FF D9", problem)
    problem = tf.where(is_jpeg | is_png | is_other, problem, "not a JPEG, PNG, GIF or BMP file")
    return tf.where(size > 0, problem, "empty file")


def unreadable_file_message(error: tf.errors.OpError) -> Optional[str]:
    """One line for an error of an on_unreadable="fail" image folder source; None for other errors.

    "unreadable image file PATH (why)" for a file that failed the check, or a line with TF's
    reason for one that passed it but could not be decoded.
    """
    text = str(getattr(error, "message", error))
    found = re.search(UNREADABLE_FILE + r" .*? \([^()]*\)(?=\])", text)
    if found:
        return found.group(0)
    if "{{node " + DECODE_SCOPE + "/" not in text:
        return None
    reason = re.search(r"Iterator::[\w:]+: (.+)", text)
    return ("an image file that passed the check could not be decoded (TF does not say which)"
            + (f": {reason.group(1).strip().rstrip('.')}" if reason else ""))


def array_source(images: np.ndarray, labels: np.ndarray, num_classes: int) -> Tuple[tf.data.Dataset, SourceInfo]:
    """(dataset, SourceInfo) of uint8 images [N, h, w] or [N, h, w, c] and int labels [N]."""
    images = np.asarray(images, np.uint8)
    if images.ndim == 3:
        images = images[..., None]
    dataset = tf.data.Dataset.from_tensor_slices((images, np.asarray(labels, np.int32)))
    return dataset.map(lambda x, y: (_to_rgb(x), y)), SourceInfo(len(images), num_classes)


# ---------------------------------------------------------------------------------- transforms
def random_resized_crop(
    image: tf.Tensor,
    image_size: int,
    area_range: Tuple[float, float] = (0.08, 1.0),
    aspect_ratio_range: Tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
) -> tf.Tensor:
    """Inception-style random crop of uint8 image [h, w, 3], resized to float32 [s, s, 3] in [0, 255]."""
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]),
        min_object_covered=0.0,
        aspect_ratio_range=aspect_ratio_range,
        area_range=area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, size)
    out = tf.image.resize(crop, [image_size, image_size], method="bicubic", antialias=True)
    if flip:
        out = tf.image.random_flip_left_right(out)
    return tf.clip_by_value(out, 0.0, 255.0)


def center_crop(image: tf.Tensor, image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION) -> tf.Tensor:
    """Resizes the shorter side to image_size / crop_fraction, then crops the centre to image_size."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    resize_to = float(image_size) / crop_fraction
    scale = resize_to / tf.reduce_min(shape)
    new_hw = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), image_size)
    resized = tf.image.resize(image, new_hw, method="bicubic", antialias=True)
    top = (new_hw[0] - image_size) // 2
    left = (new_hw[1] - image_size) // 2
    out = resized[top:top + image_size, left:left + image_size, :]
    out = tf.ensure_shape(out, [image_size, image_size, 3])
    return tf.clip_by_value(out, 0.0, 255.0)


def normalize(
    images: tf.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> tf.Tensor:
    """float pixels in [0, 255] -> (x / 255 - mean) / std per channel."""
    mean = tf.constant(mean, tf.float32) * 255.0
    std = tf.constant(std, tf.float32) * 255.0
    return (tf.cast(images, tf.float32) - mean) / std


# ---------------------------------------------------------------------------------- pipelines
def train_dataset(
    source: tf.data.Dataset,
    image_size: int,
    batch_size: int,
    shuffle_buffer: int = 10000,
    seed: Optional[int] = None,
    area_range: Tuple[float, float] = (0.08, 1.0),
    flip: bool = True,
    repeat: bool = True,
) -> tf.data.Dataset:
    """Batches (float32 images [B, s, s, 3] in [0, 255], int32 labels [B]), drop_remainder.

    Normalisation is left to augment.py (its operations take pixel values in [0, 255]).
    """
    dataset = source
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.map(lambda x, y: (random_resized_crop(x, image_size, area_range, flip=flip), y),
                          num_parallel_calls=AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=True)


def eval_dataset(
    source: tf.data.Dataset,
    image_size: int,
    batch_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    crop_fraction: float = DEFAULT_CROP_FRACTION,
) -> tf.data.Dataset:
    """Batches (normalised images [B, s, s, 3], int32 labels [B], float32 weights [B]).

    Every batch has batch_size rows: the last one is padded with copies of its first row with
    weight 0, so metrics weighted by `weights` count each real example exactly once.
    """
    dataset = source.map(lambda x, y: (center_crop(x, image_size, crop_fraction), y, tf.ones([], tf.float32)),
                         num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch_size)

    def pad(images, labels, weights):
        missing = batch_size - tf.shape(labels)[0]
        images = tf.concat([images, tf.repeat(images[:1], missing, axis=0)], axis=0)
        labels = tf.concat([labels, tf.repeat(labels[:1], missing, axis=0)], axis=0)
        weights = tf.concat([weights, tf.zeros([missing], tf.float32)], axis=0)
        return (tf.ensure_shape(normalize(images, mean, std), [batch_size, image_size, image_size, 3]),
                tf.ensure_shape(labels, [batch_size]), tf.ensure_shape(weights, [batch_size]))

    return dataset.map(pad, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


# ------------------------------------------------------------------------------------ helpers
def _decode(data):
    return tf.ensure_shape(tf.io.decode_image(data, channels=3, expand_animations=False), [None, None, 3])


def _to_rgb(image):
    image = tf.convert_to_tensor(image)
    if image.shape.rank == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return tf.cast(image, tf.uint8)


def _contains(haystack, needle: bytes):
    """Whether uint8 vector haystack holds the byte string needle."""
    starts = tf.maximum(tf.size(haystack) - len(needle) + 1, 0)
    found = tf.ones([starts], tf.bool)
    for k, byte in enumerate(needle):
        found &= tf.equal(haystack[k:k + starts], byte)
    return tf.reduce_any(found)


def _readable(data, path, index, unreadable, fail):
    """Whether a file's bytes pass image_bytes_problem; notes (or, with fail, raises on) one that does not."""
    problem = image_bytes_problem(data)
    readable = tf.equal(problem, "")
    message = tf.strings.join([UNREADABLE_FILE, " ", path, " (", problem, ")"])
    if fail:
        tf.debugging.Assert(readable, [message])
        return readable

    def note():  # Once per file, not once per epoch (two parallel reads of one file may both print).
        tf.print("Skipping", message, output_stream=sys.stderr)
        unreadable[index].assign(True)

    tf.cond(readable | unreadable[index], lambda: None, note)
    return readable
