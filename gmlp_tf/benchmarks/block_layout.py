"""Whether a tokens-last gMLP block makes the FFT path faster: the block as built against the same block
with its gate kept [batch, channels, n] from U's matmul to V's.

The FFT transforms the last axis, so the projection transposes [batch, n, channels] to tokens-last
and back; under XLA those transposes (one fused into the zero padding, on one thread) are most of
what the FFT step spends beyond its transforms at n = 16384. A block that computes its halves of U
straight into [batch, channels, n] has no transpose around the transforms. `tokens_last_call` is
that block, on the weights of a built GMLPBlock (split gating, Toeplitz W, no tiny attention), and
`measure` times both forward and backward. TensorFlow only: it is a question about XLA's CPU
backend, which runs TensorFlow's jit_compile.
"""

from typing import Any, Callable, Dict

import numpy as np
import tensorflow as tf

from gmlp_tf.layers.activations import exact_gelu
from gmlp_tf.layers.gmlp_block import GMLPBlock
from gmlp_tf.layers.spatial_projection import _tf_convolution, circulant_kernel

LAYOUTS = ("tokens_first", "tokens_last")


def tokens_last_call(block: GMLPBlock, inputs: tf.Tensor) -> tf.Tensor:
    """block(inputs) with the SGU's gate held tokens-last: the same weights and the same function.

    Args:
      block: a built GMLPBlock, gating "split", spatial_kind "toeplitz", attention_size 0.
      inputs: [batch, n, d_model].

    Returns:
      [batch, n, d_model], equal to block(inputs) up to float32 rounding.
    """
    if block.gating != "split" or block.spatial_kind != "toeplitz" or block.attention is not None:
        raise ValueError("the tokens-last block is written for the split SGU with a Toeplitz W and no attention")
    n = inputs.shape[1]
    half = block.d_ffn // 2
    kernel, bias = block.proj_in.kernel, block.proj_in.bias
    h = block.norm(inputs)
    # The halves of U straight into [batch, channels, n]: XLA folds the transposed result into the dot
    # or writes a transpose after it; which one is what this benchmark measures.
    z1 = exact_gelu(tf.einsum("bnd,dc->bcn", h, kernel[:, :half]) + bias[:half, None])
    z2 = exact_gelu(tf.einsum("bnd,dc->bcn", h, kernel[:, half:]) + bias[half:, None])
    norm = block.sgu.norm
    mean, variance = tf.nn.moments(z2, axes=[1], keepdims=True)  # LayerNorm over channels, axis 1 here.
    z2 = (z2 - mean) * tf.math.rsqrt(variance + norm.epsilon) * norm.gamma[:, None] + norm.beta[:, None]
    proj = block.sgu.proj
    weights = circulant_kernel(proj.toeplitz_weights(n), n, proj.causal)
    gate = _tf_convolution(weights, z2, n) + proj.bias[None, None, :n]
    y = tf.einsum("bcn,cd->bnd", z1 * gate, block.proj_out.kernel) + block.proj_out.bias
    return inputs + y


def _gradient_step(call: Callable[[tf.Tensor], tf.Tensor], variables: list) -> Callable[[tf.Tensor], Any]:
    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = call(x)
            loss = tf.reduce_sum(tf.square(out))
        return out, tape.gradient(loss, [x] + variables)

    return step


def measure(n: int, d_model: int, d_ffn: int, repeats: int = 1, trials: int = 2) -> Dict[str, Any]:
    """Seconds of one forward and backward pass of each layout under XLA (batch 1, as the FFT benchmark),
    and how far their outputs differ.

    Returns:
      {"tokens_first": seconds, "tokens_last": seconds, "max_relative_difference": float} where the
      difference is the largest over the output and every gradient, relative to its largest entry.
    """
    from gmlp_tf.benchmarks.common import best_seconds

    block = GMLPBlock(d_model, d_ffn, n, spatial_kind="toeplitz", spatial_implementation="fft")
    block.build((None, n, d_model))
    proj = block.sgu.proj
    proj.kernel.assign(np.random.default_rng(0).standard_normal(2 * n - 1).astype("float32") / np.sqrt(n))
    x = tf.constant(np.random.default_rng(1).standard_normal((1, n, d_model)).astype("float32"))
    variables = list(block.trainable_variables)
    steps = {"tokens_first": _gradient_step(block, variables),
             "tokens_last": _gradient_step(lambda inputs: tokens_last_call(block, inputs), variables)}
    results = {name: step(x) for name, step in steps.items()}  # Traced and compiled here.
    first, last = (tf.nest.flatten(results[name]) for name in LAYOUTS)
    difference = max(float(tf.reduce_max(tf.abs(a - b)) / tf.maximum(tf.reduce_max(tf.abs(a)), 1e-30))
                     for a, b in zip(first, last))
    figures = {name: best_seconds(lambda step=step: step(x)[0], repeats=repeats, trials=trials, warmup=0)
               for name, step in steps.items()}
    return dict(figures, max_relative_difference=difference)


def report_lines(n: int, d_model: int, d_ffn: int, figures: Dict[str, Any]) -> list:
    from gmlp_tf.benchmarks.common import processor_name

    first, last = figures["tokens_first"], figures["tokens_last"]
    return [
        f"gMLP block with the FFT projection, n = {n}, d_model {d_model}, d_ffn {d_ffn}, batch 1, "
        f"forward + backward, float32, XLA; {processor_name()}",
        f"  tokens-first (as built)  {first * 1e3:10.1f} ms",
        f"  tokens-last gate         {last * 1e3:10.1f} ms   {first / last:.2f}x",
        f"  largest difference, outputs and gradients: {figures['max_relative_difference']:.1e} relative",
    ]
