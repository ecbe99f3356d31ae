"""AutoAugment's ImageNet policy (Cubuk et al., 2019), the augmentation of the paper's Table 7.

The policy is 25 sub-policies of two operations, each (name, probability, level 0-10). Per image
one sub-policy is drawn uniformly, then each of its two operations is applied with its
probability. Levels map to magnitudes as in the AutoAugment paper and timm's "original" policy
(which DeiT's recipe uses): shear 0.3 x level / 10, translate 0.45 x image side x level / 10
(150 px at 331 px), rotate 30 degrees x level / 10 (each with a random sign), colour / contrast /
brightness / sharpness factor 0.1 + 1.8 x level / 10, posterize to 4 + int(4 x level / 10) bits,
solarize pixels at or above 256 x level / 10. Geometric operations fill with the ImageNet mean
colour and interpolate bilinearly.

Images are float [H, W, 3] (one image) or [B, H, W, 3] (apply_policy) with values in [0, 255];
outputs have the same shape and dtype and stay in [0, 255]. Everything is TensorFlow ops, so the
policy runs inside tf.data; its randomness is stateless (seeded per batch), so a run repeats.
"""

import math
from typing import Callable, Dict, Sequence, Tuple

import tensorflow as tf

# The ImageNet policy of the AutoAugment paper (timm's "original", with the [4, 8]-bit posterize).
IMAGENET_POLICY: Tuple[Tuple[Tuple[str, float, int], Tuple[str, float, int]], ...] = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, 2)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, 8), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
    (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)),
    (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
)

MAX_LEVEL = 10.0
FILL = (124.0, 116.0, 104.0)  # The ImageNet mean colour in [0, 255], as timm fills.
MAX_SHEAR = 0.3
MAX_TRANSLATE_FRACTION = 0.45
MAX_ROTATE_DEGREES = 30.0


# ---------------------------------------------------------------------------------------------
# Geometric operations: output pixel (x, y) reads input pixel (a0 x + a1 y + a2, b0 x + b1 y + b2).


def affine(image: tf.Tensor, transform: Sequence, fill: Sequence[float] = FILL) -> tf.Tensor:
    """image [H, W, 3] float -> [H, W, 3], bilinear, pixels from outside the image are `fill`.

    transform: [a0, a1, a2, b0, b1, b2] (scalars or scalar tensors), PIL's affine convention.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    # A ones channel transformed with fill 0 says how much of each output pixel lies inside.
    padded = tf.concat([image, tf.ones_like(image[..., :1])], axis=-1)
    matrix = tf.cast(tf.stack(list(transform) + [0.0, 0.0]), tf.float32)[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=padded[None], transforms=matrix, output_shape=tf.stack([height, width]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")[0]
    inside = out[..., 3:]
    return out[..., :3] + (1.0 - inside) * tf.constant(fill, image.dtype)


def shear_x(image: tf.Tensor, shear: tf.Tensor) -> tf.Tensor:
    """Output (x, y) <- input (x + shear * y, y)."""
    return affine(image, [1.0, shear, 0.0, 0.0, 1.0, 0.0])


def shear_y(image: tf.Tensor, shear: tf.Tensor) -> tf.Tensor:
    """Output (x, y) <- input (x, y + shear * x)."""
    return affine(image, [1.0, 0.0, 0.0, shear, 1.0, 0.0])


def translate_x(image: tf.Tensor, pixels: tf.Tensor) -> tf.Tensor:
    """Output (x, y) <- input (x + pixels, y): the content moves left by `pixels`."""
    return affine(image, [1.0, 0.0, pixels, 0.0, 1.0, 0.0])


def translate_y(image: tf.Tensor, pixels: tf.Tensor) -> tf.Tensor:
    """Output (x, y) <- input (x, y + pixels): the content moves up by `pixels`."""
    return affine(image, [1.0, 0.0, 0.0, 0.0, 1.0, pixels])


def rotate(image: tf.Tensor, degrees: tf.Tensor) -> tf.Tensor:
    """Rotates the content counter-clockwise (as seen) by `degrees` about the image centre."""
    theta = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    cos, sin = tf.cos(theta), tf.sin(theta)
    cx = (tf.cast(tf.shape(image)[1], tf.float32) - 1.0) / 2.0
    cy = (tf.cast(tf.shape(image)[0], tf.float32) - 1.0) / 2.0
    # Input = R(theta) (output - centre) + centre, with y pointing down.
    return affine(image, [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy])


# ---------------------------------------------------------------------------------------------
# Pixel operations.


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """PIL's ImageEnhance: degenerate + factor * (image - degenerate), clipped to [0, 255]."""
    return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0)


def _gray(image: tf.Tensor) -> tf.Tensor:
    """[H, W, 3] -> [H, W, 1] luma (ITU-R 601, as PIL's "L")."""
    return tf.reduce_sum(image * tf.constant([0.299, 0.587, 0.114], image.dtype), axis=-1, keepdims=True)


def color(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Saturation: factor 0 is grey, 1 the image."""
    return _blend(tf.broadcast_to(_gray(image), tf.shape(image)), image, factor)


def contrast(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Contrast about the mean grey level: factor 0 is a flat grey image, 1 the image."""
    return _blend(tf.fill(tf.shape(image), tf.reduce_mean(_gray(image))), image, factor)


def brightness(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """factor 0 is black, 1 the image."""
    return _blend(tf.zeros_like(image), image, factor)


def sharpness(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Against PIL's SMOOTH filter ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, borders unfiltered)."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], image.dtype) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    interior = tf.pad(tf.ones([height - 2, width - 2, 1], image.dtype), [[1, 1], [1, 1], [0, 0]])
    degenerate = interior * smooth + (1.0 - interior) * image
    return _blend(degenerate, image, factor)


def invert(image: tf.Tensor) -> tf.Tensor:
    return 255.0 - image


def solarize(image: tf.Tensor, threshold: tf.Tensor) -> tf.Tensor:
    """Pixels at or above `threshold` are inverted (PIL's rule)."""
    return tf.where(image >= threshold, 255.0 - image, image)


def posterize(image: tf.Tensor, bits: tf.Tensor) -> tf.Tensor:
    """Keeps the top `bits` bits of each (integer) 8-bit value."""
    step = tf.pow(2.0, 8.0 - tf.cast(bits, image.dtype))
    return tf.floor(tf.clip_by_value(image, 0.0, 255.0) / step) * step


def autocontrast(image: tf.Tensor) -> tf.Tensor:
    """Per channel, stretches [min, max] to [0, 255]; a flat channel stays as it is."""
    low = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    high = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    scale = 255.0 / tf.maximum(high - low, 1e-6)
    return tf.where(high > low, tf.clip_by_value((image - low) * scale, 0.0, 255.0), image)


def _equalize_channel(channel: tf.Tensor) -> tf.Tensor:
    """[H, W] float -> [H, W]: PIL's ImageOps.equalize of one channel of 8-bit values."""
    values = tf.cast(tf.clip_by_value(tf.floor(channel), 0.0, 255.0), tf.int32)
    histogram = tf.math.bincount(tf.reshape(values, [-1]), minlength=256, maxlength=256)
    last = tf.gather(histogram, tf.reduce_max(values))  # Count of the highest value present.
    step = (tf.reduce_sum(histogram) - last) // 255
    # Value v maps to (pixels below v + step // 2) // step.
    below = tf.concat([[0], tf.cumsum(histogram)[:-1]], axis=0)
    lut = tf.clip_by_value((below + step // 2) // tf.maximum(step, 1), 0, 255)
    return tf.where(step > 0, tf.cast(tf.gather(lut, values), channel.dtype), channel)


def equalize(image: tf.Tensor) -> tf.Tensor:
    """Per-channel histogram equalisation (PIL's ImageOps.equalize)."""
    return tf.stack([_equalize_channel(image[..., c]) for c in range(3)], axis=-1)


# ---------------------------------------------------------------------------------------------
# Levels, the policy and its application.


def _signed(value: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """value with a random sign (geometric operations go either way)."""
    return tf.where(tf.random.stateless_uniform([], seed) < 0.5, -value, value)


def _enhance_factor(level: tf.Tensor) -> tf.Tensor:
    return level / MAX_LEVEL * 1.8 + 0.1


def _ops() -> Dict[str, Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]]:
    """{name: (image, level, seed) -> image}: each operation with its level-to-magnitude rule."""
    def side(image, axis):
        return tf.cast(tf.shape(image)[axis], tf.float32)

    return {
        "ShearX": lambda x, lv, s: shear_x(x, _signed(lv / MAX_LEVEL * MAX_SHEAR, s)),
        "ShearY": lambda x, lv, s: shear_y(x, _signed(lv / MAX_LEVEL * MAX_SHEAR, s)),
        "TranslateX": lambda x, lv, s: translate_x(
            x, _signed(lv / MAX_LEVEL * MAX_TRANSLATE_FRACTION * side(x, 1), s)),
        "TranslateY": lambda x, lv, s: translate_y(
            x, _signed(lv / MAX_LEVEL * MAX_TRANSLATE_FRACTION * side(x, 0), s)),
        "Rotate": lambda x, lv, s: rotate(x, _signed(lv / MAX_LEVEL * MAX_ROTATE_DEGREES, s)),
        "Color": lambda x, lv, s: color(x, _enhance_factor(lv)),
        "Contrast": lambda x, lv, s: contrast(x, _enhance_factor(lv)),
        "Brightness": lambda x, lv, s: brightness(x, _enhance_factor(lv)),
        "Sharpness": lambda x, lv, s: sharpness(x, _enhance_factor(lv)),
        "Posterize": lambda x, lv, s: posterize(x, 4.0 + tf.floor(lv / MAX_LEVEL * 4.0)),
        "Solarize": lambda x, lv, s: solarize(x, lv / MAX_LEVEL * 256.0),
        "AutoContrast": lambda x, lv, s: autocontrast(x),
        "Equalize": lambda x, lv, s: equalize(x),
        "Invert": lambda x, lv, s: invert(x),
    }


OPERATIONS: Dict[str, Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]] = _ops()
OP_NAMES: Tuple[str, ...] = tuple(OPERATIONS)


def apply_op(image: tf.Tensor, name: str, level: float, seed: Tuple[int, int] = (0, 0)) -> tf.Tensor:
    """One named operation at a level 0-10 on image [H, W, 3] in [0, 255] (seed: the sign's draw)."""
    if name not in OPERATIONS:
        raise ValueError(f"unknown AutoAugment operation {name!r}; known: {', '.join(OP_NAMES)}")
    image = tf.convert_to_tensor(image, tf.float32)
    return OPERATIONS[name](image, tf.constant(float(level)), tf.constant(seed, tf.int32))


def _policy_table(policy):
    """The policy as tensors: op indices [S, 2] int32, probabilities [S, 2], levels [S, 2]."""
    ops = tf.constant([[OP_NAMES.index(name) for name, _, _ in sub] for sub in policy], tf.int32)
    probs = tf.constant([[p for _, p, _ in sub] for sub in policy], tf.float32)
    levels = tf.constant([[float(lv) for _, _, lv in sub] for sub in policy], tf.float32)
    return ops, probs, levels


def _augment_image(image: tf.Tensor, seed: tf.Tensor, table) -> tf.Tensor:
    """One image [H, W, 3]: a uniform sub-policy, each of its operations with its probability."""
    ops, probs, levels = table
    seeds = tf.random.experimental.stateless_split(seed, 5)
    index = tf.random.stateless_uniform([], seeds[0], 0, tf.shape(ops)[0], dtype=tf.int32)
    for stage in range(2):
        op, prob, level = ops[index, stage], probs[index, stage], levels[index, stage]
        op_seed = seeds[2 + stage]
        branches = [lambda fn=fn, x=image, lv=level, s=op_seed: fn(x, lv, s) for fn in OPERATIONS.values()]
        apply = tf.random.stateless_uniform([], seeds[1] + stage) < prob
        image = tf.cond(apply, lambda: tf.switch_case(op, branches), lambda: image)
        image = tf.ensure_shape(image, [None, None, 3])
    return tf.clip_by_value(image, 0.0, 255.0)


def check_policy(policy: Sequence) -> None:
    """Raises a ValueError unless each sub-policy is two (known name, probability in [0, 1], level 0-10)."""
    for i, sub in enumerate(policy):
        if len(sub) != 2:
            raise ValueError(f"sub-policy {i} has {len(sub)} operations, expected 2")
        for name, prob, level in sub:
            if name not in OPERATIONS or not 0 <= prob <= 1 or not 0 <= level <= MAX_LEVEL:
                raise ValueError(f"sub-policy {i}: bad operation ({name!r}, {prob}, {level})")


def apply_policy(images: tf.Tensor, seed: tf.Tensor, policy: Sequence = IMAGENET_POLICY) -> tf.Tensor:
    """images [B, H, W, 3] float in [0, 255], seed [2] int -> [B, H, W, 3], same dtype, in [0, 255]."""
    check_policy(policy)
    table = _policy_table(policy)
    dtype = images.dtype
    images = tf.cast(images, tf.float32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), tf.shape(images)[0])
    out = tf.map_fn(lambda args: _augment_image(args[0], args[1], table), (images, seeds),
                    fn_output_signature=tf.TensorSpec(images.shape[1:], tf.float32))
    return tf.cast(out, dtype)
