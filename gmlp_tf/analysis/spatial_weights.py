"""The spatial weights W of a gMLP / aMLP model, how Toeplitz they are, and the tiny attention maps.

Everything here returns NumPy arrays: one [n, n] matrix W per block (`spatial_matrices`, with
the causal mask applied, as the block uses it), the W the run started from (`initial_matrices`),
a score of shift invariance (`toeplitz_score`, paper Appendix C) and aMLP's attention
probabilities (`attention_maps`, paper Appendix D). Plotting is figures.py's.
"""

from typing import Any, List, Mapping, Optional, Tuple, Union

import keras
import numpy as np
from keras import ops

from gmlp_tf.config import GMLPConfig
from gmlp_tf.layers import Tensor
from gmlp_tf.layers.gmlp_block import GMLPBlock
from gmlp_tf.models.task_models import build_model

# Inputs of attention_maps: a text model's feature dict or a vision model's images.
ModelInputs = Union[Mapping[str, Any], np.ndarray, Tensor]


def gmlp_blocks(model: Any) -> List[GMLPBlock]:
    """The blocks of a text task model, a GMLPEncoder or a GMLPVisionClassifier, first to last.

    Raises:
      ValueError: the model is not a gMLP / aMLP model (config.architecture is not "gmlp"), so
        it has no spatial weights.
    """
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError(f"expected a gmlp_tf model, encoder or vision classifier, got {type(model).__name__}")
    architecture = getattr(config, "architecture", "gmlp")
    if architecture != "gmlp":
        raise ValueError(f"a {architecture!r} model has no spatial weights: only gMLP and aMLP models "
                         "(architecture 'gmlp') have them")
    blocks = list(getattr(model, "encoder", model).blocks)
    if not all(isinstance(block, GMLPBlock) for block in blocks):
        raise ValueError(f"{type(model).__name__} has blocks without a spatial gating unit")
    return blocks


def spatial_matrices(model: Any) -> List[np.ndarray]:
    """Each block's W as float32 [n, n], n = config.seq_length (tokens or patches); causal mask applied.

    Args:
      model: a built text task model, GMLPEncoder or GMLPVisionClassifier.

    Raises:
      ValueError: the model has no spatial weights (see gmlp_blocks).
    """
    return [np.asarray(ops.convert_to_numpy(block.sgu.proj.spatial_matrix()), dtype=np.float32)
            for block in gmlp_blocks(model)]


def initial_matrices(config: GMLPConfig, task: str, seed: int, num_labels: int = 2) -> List[np.ndarray]:
    """The W a job seeded with `seed` started from, [n, n] float32 per block.

    Redraws them as the jobs do (gmlp_tf.runtime.runner.start seeds Keras, then the job calls
    build_model): Keras initializers draw their seeds from Python's `random` when the model is
    built, so the same seed and the same build give the same values. The jobs build inside their
    strategy's scope and under their precision policy; neither changes the values (the variables
    are float32 and every replica gets the first one's). A run warm-started from another
    checkpoint began from that checkpoint's weights instead.

    Note: this reseeds Python, NumPy and TensorFlow (keras.utils.set_random_seed).

    Args:
      config: the run's config.
      task: the run's task (run_info.json), as build_model takes it.
      seed: the job's --random_seed (run i of a finetuning sweep: random_seed + i).
      num_labels: labels of a "classification" run.
    """
    keras.utils.set_random_seed(seed)
    return spatial_matrices(build_model(config, task, num_labels=num_labels))


def diagonal_means(w: np.ndarray) -> np.ndarray:
    """D(W): [n, n] -> [n, n] float64, each entry replaced by the mean of its diagonal (equal j - i)."""
    n = w.shape[0]
    offsets = np.arange(n)[None, :] - np.arange(n)[:, None] + n - 1  # [n, n], j - i shifted to 0 .. 2n - 2.
    sums = np.bincount(offsets.ravel(), weights=w.astype(np.float64).ravel(), minlength=2 * n - 1)
    counts = np.bincount(offsets.ravel(), minlength=2 * n - 1)
    return (sums / counts)[offsets]


def toeplitz_score(w: np.ndarray) -> float:
    """How Toeplitz (shift invariant) W is: 1 - ||W - D(W)||^2 / ||W - mean(W)||^2.

    D(W) replaces each entry by the mean of its diagonal, so the score is the fraction of W's
    variance that the diagonals explain: 1 for a Toeplitz matrix, about 2 / (n + 1) for i.i.d.
    noise (2n - 1 diagonal means fitted to n^2 entries), and never below 0. A constant W (no
    variance to explain; n = 1 included) is Toeplitz and scores 1.0.

    Args:
      w: [n, n], finite.

    Raises:
      ValueError: w is not a non-empty square matrix or holds NaN or infinity.
    """
    w = np.asarray(w)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.size == 0:
        raise ValueError(f"toeplitz_score needs a non-empty square matrix, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("toeplitz_score needs finite weights; W holds NaN or infinity")
    if np.ptp(w) == 0:
        return 1.0
    w = w.astype(np.float64)
    residual = np.sum(np.square(w - diagonal_means(w)))
    total = np.sum(np.square(w - np.mean(w)))
    return float(max(0.0, 1.0 - residual / total))  # max: rounding can dip an exact 0 below it.


def noise_toeplitz_score(n: int) -> float:
    """The expected toeplitz_score of an n x n matrix of i.i.d. noise: 2 / (n + 1), the chance level."""
    return 2.0 / (n + 1)


def attention_maps(model: Any, inputs: ModelInputs) -> List[np.ndarray]:
    """Each aMLP block's tiny attention probabilities at inference, float32 [batch, n, n] (queries by keys).

    Args:
      model: a built aMLP text task model, GMLPEncoder or GMLPVisionClassifier.
      inputs: what the model takes: a text model's dict of int [batch, n] "input_ids" (optional
        "segment_ids", and "input_mask", which the blocks use as config.attention_padding_mask
        and config.sgu_padding_mask say),
        or a vision model's float images [batch, image_size, image_size, num_channels].

    Raises:
      ValueError: the model has no tiny attention (gMLP: attention_size 0) or no spatial weights.
    """
    blocks = gmlp_blocks(model)
    if blocks[0].attention is None:
        raise ValueError("the model is gMLP (attention_size 0): it has no tiny attention to map")
    x, padding_mask = _block_input(model, inputs)
    maps = []
    for block in blocks:
        # The block's own steps up to its attention (GMLPBlock.call): LayerNorm, then the attention.
        _, probabilities = block.attention(
            block.norm(x), padding_mask=padding_mask if block.attention_padding_mask else None,
            training=False, return_attention_scores=True)
        maps.append(np.asarray(ops.convert_to_numpy(probabilities), dtype=np.float32))
        x = block(x, padding_mask=padding_mask, training=False)
    return maps


def _block_input(model: Any, inputs: ModelInputs) -> Tuple[Tensor, Optional[Tensor]]:
    """The first block's input [batch, n, d_model] and the padding mask the blocks get (or None).

    The steps of GMLPEncoder.call and GMLPVisionClassifier.call before their first block, at
    inference (the embedding dropout is then the identity).
    """
    config = model.config
    if config.modality == "image":
        x = model.stem(ops.convert_to_tensor(inputs, "float32"))
        return ops.reshape(x, (-1, config.seq_length, config.d_model)), None
    if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
        raise ValueError("a text model's inputs must be a dict with at least 'input_ids'")
    encoder = getattr(model, "encoder", model)
    input_ids = ops.convert_to_tensor(inputs["input_ids"])
    segment_ids = inputs.get("segment_ids")
    segment_ids = ops.zeros_like(input_ids) if segment_ids is None else ops.convert_to_tensor(segment_ids)
    padding_mask = inputs.get("input_mask") if config.blocks_read_padding_mask else None
    x = encoder.token_embedding(input_ids) + encoder.segment_embedding(segment_ids)
    return x, padding_mask
