"""plot_spatial_weights.py: figures of what a trained gMLP / aMLP's spatial projections learned.

`run(spec)` reads a run's output directory (gmlp_config.json, run_info.json,
a checkpoint in checkpoints/; vocab.model for aMLP text models) and writes to spec.output_dir:

  figure4_middle_token_rows.png   text: each layer's row of W for the middle token (paper, Figure 4)
  figure9_spatial_matrices.png    text: each layer's W as a heat map (paper, Figure 9)
  figure3_patch_filters.png       image: filters of 4 patches in up to 6 layers on the patch grid
                                  (paper, Figure 3)
  figure10_tiny_attention.png     aMLP text models: the tiny attention maps of the --text sentences
                                  (two built-in ones without --text): the paper's maximum over the
                                  first half of the blocks, then up to 3 single layers (Figure 10)
  spatial_weights.json            the Toeplitz scores, written atomically:
    {"model_dir": str, "task": str, "spatial_kind": "dense" | "toeplitz", "seed": int,
     "num_tokens": n, "noise_toeplitz_score": 2 / (n + 1),
     "layers": [{"layer": i, "toeplitz_score": s, "initial_toeplitz_score": s0}, ...],
     "mean_toeplitz_score": float, "mean_initial_toeplitz_score": float,
     "figures": [PNG file names]}

toeplitz_score (spatial_weights.py) is the share of W's variance that its diagonals explain: 1
for a Toeplitz W, about noise_toeplitz_score for i.i.d. noise. The initial score is that of the W
the run started from, redrawn with --random_seed: near chance for a dense W (initialised as
noise), 1 for a Toeplitz W by construction.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from gmlp_tf import tokenization
from gmlp_tf.analysis import figures, spatial_weights
from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import saved_runs
from gmlp_tf.runtime import run_directory
from gmlp_tf.runtime.flags import option, shared

RESULTS_NAME = "spatial_weights.json"
FIGURE4 = "figure4_middle_token_rows.png"
FIGURE9 = "figure9_spatial_matrices.png"
FIGURE3 = "figure3_patch_filters.png"
FIGURE10 = "figure10_tiny_attention.png"
SENTENCE_SEPARATOR = "|"
MAX_SENTENCES = 8
# Figure 10 without --text: two short sentences with a long-range reference each.
DEFAULT_SENTENCES = ("The cat that the dog chased ran up the old tree.",
                     "She said that he would not come to the party tonight.")
FIGURE3_LAYERS = 6
FIGURE10_LAYERS = 3
WORD_START = "\u2581"  # SentencePiece's mark of a piece that starts a word.


@dataclasses.dataclass
class SpatialWeightsSpec:
    """The flags of plot_spatial_weights.py: the arguments of `run`."""

    model_dir: Optional[str] = option(
        None, "Output directory of a run (gmlp_config.json, run_info.json, a checkpoint in checkpoints/; "
        "vocab.model for aMLP text models).")
    output_dir: Optional[str] = option(
        None, "Where to write the figures and spatial_weights.json (created if missing).")
    text: Optional[str] = option(
        None, f"aMLP text models: the sentences of figure 10, separated by '{SENTENCE_SEPARATOR}' (at most "
        f"{MAX_SENTENCES}; default: two built-in sentences).")
    random_seed: int = option(
        shared("random_seed").default, "The --random_seed the run started with: the initial W are redrawn with it "
        "for the initial Toeplitz scores (run i of a finetuning sweep used random_seed + i).")
    max_layers: int = option(
        0, "Figures 4 and 9 show at most this many layers, spread evenly over the depth (0: every layer).")


def run(spec: SpatialWeightsSpec) -> Dict[str, Any]:
    """Draws the figures and writes spatial_weights.json (see the module docstring); returns its contents."""
    sentences = _check_spec(spec)
    config, task, model = saved_runs.load_run_model(spec.model_dir)
    try:
        trained = spatial_weights.spatial_matrices(model)
    except ValueError as err:  # A model without spatial weights: say which run it is.
        raise ValueError(f"{spec.model_dir}: {err}") from None
    attention = None
    if config.is_amlp and config.modality == "text":
        attention = _attention(spec.model_dir, config, model, sentences or list(DEFAULT_SENTENCES))
    elif sentences:
        what = "an image model" if config.modality == "image" else "a gMLP model (attention_size 0)"
        raise ValueError(f"--text draws the tiny attention of an aMLP text model; {spec.model_dir} holds {what}")
    num_labels = getattr(model, "num_labels", 2)
    del model  # Only its W and maps are needed from here on; the initial model is built next.
    initial = spatial_weights.initial_matrices(config, task, spec.random_seed, num_labels)
    _make_output_dir(spec.output_dir)
    names = _draw(spec, config, trained, attention)
    results = _results(spec, config, task, trained, initial, names)
    run_directory.write_text_atomically(os.path.join(spec.output_dir, RESULTS_NAME),
                                        json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def report_lines(results: Dict[str, Any], spec: SpatialWeightsSpec) -> List[str]:
    """The lines the script prints: the score table (layer, trained, initial) and the files written."""
    lines = [f"Toeplitz scores of the spatial weights W of {results['model_dir']} ({results['spatial_kind']}, "
             f"{results['num_tokens']} tokens; 1 = Toeplitz, i.i.d. noise ~ {results['noise_toeplitz_score']:.3f})",
             f"{'layer':>5}  {'trained':>7}  {'initial':>7}"]
    for entry in results["layers"]:
        lines.append(f"{entry['layer']:>5}  {entry['toeplitz_score']:7.3f}  {entry['initial_toeplitz_score']:7.3f}")
    lines.append(f"{'mean':>5}  {results['mean_toeplitz_score']:7.3f}  {results['mean_initial_toeplitz_score']:7.3f}")
    for name in results["figures"] + [RESULTS_NAME]:
        lines.append(f"Wrote {os.path.join(spec.output_dir, name)}")
    return lines


def spread(count: int, most: int) -> List[int]:
    """Up to `most` indices of range(count), evenly spread from the first to the last (0: all)."""
    if most <= 0 or most >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, most)})


def _check_spec(spec: SpatialWeightsSpec) -> List[str]:
    """Checks the flags that need no model; returns the --text sentences ([] without --text)."""
    if not spec.model_dir:
        raise ValueError("--model_dir is required")
    if not spec.output_dir:
        raise ValueError("--output_dir is required")
    if spec.max_layers is None or spec.max_layers < 0:
        raise ValueError(f"--max_layers must be >= 0 (0: every layer), got {spec.max_layers}")
    if spec.text is None:
        return []
    sentences = [s.strip() for s in spec.text.split(SENTENCE_SEPARATOR) if s.strip()]
    if not sentences:
        raise ValueError(f"--text holds no sentence (separate sentences with '{SENTENCE_SEPARATOR}')")
    if len(sentences) > MAX_SENTENCES:
        raise ValueError(f"--text holds {len(sentences)} sentences; figure 10 shows at most {MAX_SENTENCES}")
    return sentences


def _make_output_dir(output_dir: str) -> None:
    try:
        tf.io.gfile.makedirs(output_dir)
    except (OSError, tf.errors.OpError) as err:
        reason = getattr(err, "strerror", None) or getattr(err, "message", str(err))
        raise ValueError(f"cannot create output directory {output_dir}: {reason}") from None


def _attention(model_dir: str, config: GMLPConfig, model: Any,
               sentences: Sequence[str]) -> Tuple[List[np.ndarray], List[List[str]]]:
    """(per block, probabilities [sentences, n, n]; per sentence, its real tokens) at max_seq_length."""
    vocab_path = os.path.join(model_dir, saved_runs.VOCAB_NAME)
    if not tf.io.gfile.exists(vocab_path):
        raise ValueError(f"figure 10 tokenizes sentences with the run's vocabulary, but {model_dir} has no "
                         f"{saved_runs.VOCAB_NAME}")
    tokenizer = tokenization.make_tokenizer(tokenization.load_model_vocab(vocab_path, config.vocab_size))
    # Padded to max_seq_length, as the model saw its training inputs.
    encoded = tokenization.encode_texts(tokenizer, config.max_seq_length, tf.constant(list(sentences)))
    encoded = {key: value.numpy() for key, value in encoded.items()}
    tokens = []
    for ids, mask in zip(encoded["input_ids"], encoded["input_mask"]):
        pieces = [p.decode("utf-8", "replace") for p in tokenizer.id_to_string(ids[mask > 0]).numpy()]
        tokens.append([p.replace(WORD_START, "") or "_" for p in pieces])
    return spatial_weights.attention_maps(model, encoded), tokens


def _draw(spec: SpatialWeightsSpec, config: GMLPConfig, trained: List[np.ndarray],
          attention: Optional[Tuple[List[np.ndarray], List[List[str]]]]) -> List[str]:
    """Writes the figures of this kind of model into spec.output_dir; returns their file names."""
    out = spec.output_dir
    if config.modality == "image":
        grid = config.image_size // config.patch_size
        quarter, three_quarters = grid // 4, (3 * grid) // 4
        tokens = [r * grid + c for r in (quarter, three_quarters) for c in (quarter, three_quarters)]
        layers = {i: trained[i] for i in spread(len(trained), FIGURE3_LAYERS)}
        figures.patch_filters(os.path.join(out, FIGURE3), layers, sorted(set(tokens)), grid)
        names = [FIGURE3]
    else:
        layers = {i: trained[i] for i in spread(len(trained), spec.max_layers)}
        figures.middle_token_rows(os.path.join(out, FIGURE4), layers)
        figures.spatial_matrix_grid(os.path.join(out, FIGURE9), layers)
        names = [FIGURE4, FIGURE9]
    if attention is not None:
        maps, tokens = attention
        half = (len(maps) + 1) // 2
        columns = {f"max over layers 0-{half - 1}": np.max(np.stack(maps[:half]), axis=0)}
        columns.update({f"layer {i}": maps[i] for i in spread(len(maps), FIGURE10_LAYERS)})
        figures.tiny_attention(os.path.join(out, FIGURE10), columns, tokens)
        names.append(FIGURE10)
    return names


def _results(spec: SpatialWeightsSpec, config: GMLPConfig, task: str, trained: List[np.ndarray],
             initial: List[np.ndarray], names: List[str]) -> Dict[str, Any]:
    """The contents of spatial_weights.json (see the module docstring)."""
    layers = [{"layer": i, "toeplitz_score": spatial_weights.toeplitz_score(w),
               "initial_toeplitz_score": spatial_weights.toeplitz_score(w0)}
              for i, (w, w0) in enumerate(zip(trained, initial))]
    n = config.seq_length
    return {
        "model_dir": spec.model_dir,
        "task": task,
        "spatial_kind": config.spatial_kind,
        "seed": spec.random_seed,
        "num_tokens": n,
        "noise_toeplitz_score": spatial_weights.noise_toeplitz_score(n),
        "layers": layers,
        "mean_toeplitz_score": float(np.mean([e["toeplitz_score"] for e in layers])),
        "mean_initial_toeplitz_score": float(np.mean([e["initial_toeplitz_score"] for e in layers])),
        "figures": names,
    }
