"""Scaling at small scale: the paper's Table 4 and Figure 5 question (does gMLP scale as well as a
Transformer?) asked at sizes a CPU can train.

`run_ablation.py --study=scaling` trains gMLP at each of --scaling_depths (the paper scales gMLP by
depth at d_model 512: 18, 36, 72 and 144 blocks, 59M to 357M parameters) and each other variant of
--variants at every size, sized against that gMLP as the Table 3 study sizes it (--sizing). Every
run is an ordinary pretraining run in OUTPUT_DIR/<variant>_gmlp_depth_<L>/ on the same data, steps
and recipe; --learning_rates and --repeats work as in the Table 3 study. It writes scaling.md,
scaling.json, and held-out perplexity against the blocks' parameters (scaling_params.png) and against
training FLOPs (scaling_flops.png), with the slope of log perplexity per doubling of each. The x axis
counts the blocks' parameters only, as scaling laws usually do: at CPU sizes the embedding table
(8,000 x 128 = 1.0M at the demo's size) is most of the model and barely changes with depth.
"""

import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from gmlp_tf import counting
from gmlp_tf.runtime import run_directory
from gmlp_tf.studies import ablation

DEMO_OUTPUT_DIR = os.path.join("output", "scaling_demo")
# The embedded default: three gMLP depths at the demo's width and the Transformer beside each, 600
# steps a run (the Table 3 demo's 400 leave the Transformers on the unigram plateau).
DEMO_DEPTHS = (2, 4, 8)
DEMO_NUM_TRAIN_STEPS = 600
DEFAULT_VARIANTS = "gmlp_split,transformer"


def parse_depths(text: Optional[str]) -> List[int]:
    """--scaling_depths: at least two distinct positive depths, ascending."""
    if text is None:
        return list(DEMO_DEPTHS)
    try:
        depths = [int(d) for d in text.split(",") if d.strip()]
    except ValueError:
        raise ValueError(f"--scaling_depths must be comma-separated integers, got {text!r}") from None
    if len(set(depths)) < 2 or min(depths) <= 0:
        raise ValueError(f"--scaling_depths needs at least two distinct positive depths, got {text!r}")
    return sorted(set(depths))


def resolve(spec: ablation.AblationSpec) -> Tuple[ablation.AblationSpec, List[str], List[Optional[float]], List[int]]:
    """The Table 3 study's checks and defaults, with the scaling study's own."""
    depths = parse_depths(spec.scaling_depths)
    spec = dataclasses.replace(spec, variants=spec.variants or DEFAULT_VARIANTS)
    if spec.is_demo:
        spec = dataclasses.replace(spec, output_dir=spec.output_dir or DEMO_OUTPUT_DIR,
                                   num_train_steps=spec.num_train_steps or DEMO_NUM_TRAIN_STEPS)
    spec, names, rates = ablation.resolve(spec)
    return spec, names, rates, depths


def run(spec: ablation.AblationSpec) -> Dict[str, Any]:
    """Trains (or completes) every variant at every size; writes scaling.md, scaling.json and the plots."""
    spec, names, rates, depths = resolve(spec)
    base = ablation.base_gmlp_config(ablation.base_config(spec))
    rows = []
    for depth in depths:
        configs = ablation.variant_configs(base.replace(num_layers=depth), names, spec.sizing)
        for name in names:
            row = ablation.variant_row(spec, name, configs[name], rates, label=f"{name}_gmlp_depth_{depth}",
                                       with_unigram=not rows)
            block_parameters = configs[name].num_layers * counting.block_parameters(configs[name])
            rows.append(dict(row, gmlp_depth=depth, block_parameters=block_parameters,
                             train_flops=training_flops(row, spec)))
    summary = ablation.summarize(spec, rows, rates)
    summary["study"] = "scaling"
    summary["slopes"] = {name: slopes([r for r in rows if r["variant"] == name]) for name in names}
    write_outputs(spec.output_dir, summary)
    return summary


def training_flops(row: Dict[str, Any], spec: ablation.AblationSpec) -> float:
    """3 x forward FLOPs per sequence x sequences seen (batch x steps)."""
    resolved = ablation.resolved_recipe(spec)
    return 3.0 * row["flops_per_token"] * resolved.max_seq_length * resolved.train_batch_size * row["steps"]


def slopes(rows: Sequence[Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """Least-squares slopes of ln(perplexity) per doubling of the blocks' parameters and of training
    FLOPs (negative: larger is better); None with fewer than two sizes."""
    return {"per_doubling_parameters": _slope([r["block_parameters"] for r in rows],
                                              [r["perplexity"] for r in rows]),
            "per_doubling_train_flops": _slope([r["train_flops"] for r in rows], [r["perplexity"] for r in rows])}


def _slope(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
    if len(xs) < 2:
        return None
    u = [math.log2(x) for x in xs]
    v = [math.log(y) for y in ys]
    mean_u, mean_v = sum(u) / len(u), sum(v) / len(v)
    spread = sum((a - mean_u) ** 2 for a in u)
    if spread == 0:
        return None
    return sum((a - mean_u) * (b - mean_v) for a, b in zip(u, v)) / spread


def markdown_table(summary: Dict[str, Any]) -> str:
    """scaling.md: one row per (size, variant), then the slopes."""
    setup = summary["setup"]
    lines = [
        f"Masked-LM pretraining on {setup['data']}: {setup['num_train_steps']} steps, batch "
        f"{setup['train_batch_size']}, sequence {setup['max_seq_length']}, peak learning rate(s) "
        f"{', '.join(f'{r:g}' for r in setup['learning_rates'])}, seeds {setup['seeds']}; baselines sized "
        f"{ablation.SIZING_TEXT[setup['sizing']]}.",
        "",
        "| gMLP depth | variant | L | d_model | params | in the blocks | training FLOPs | peak lr | held-out ppl | "
        "MLM acc |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["variants"]:
        lines.append(
            f"| {row['gmlp_depth']} | {row['variant']} | {row['num_layers']} | {row['d_model']} | "
            f"{row['parameters'] / 1e6:.2f}M | {row['block_parameters'] / 1e6:.3f}M | {row['train_flops']:.3g} | "
            f"{row['learning_rate']:g} | "
            f"{ablation.with_std(row['perplexity'], row['perplexity_std'], 2)} | "
            f"{row['masked_lm_accuracy'] * 100:.1f}% |")
    if summary.get("unigram_perplexity"):
        lines += ["", f"Unigram perplexity of the same held-out masked tokens: {summary['unigram_perplexity']:.2f}."]
    lines += ["", "Slope of ln(held-out perplexity) per doubling (least squares; negative: larger is better):", "",
              "| variant | per doubling of the blocks' parameters | per doubling of training FLOPs |", "|---|---|---|"]
    for name, slope in summary["slopes"].items():
        lines.append(f"| {name} | {_or_dash(slope['per_doubling_parameters'])} | "
                     f"{_or_dash(slope['per_doubling_train_flops'])} |")
    lines += ["", "Paper: Table 4 and Figure 5 (C4/RealNews, 125K steps of batch 2048): gMLP at 18, 36, 72 and "
                  "144 blocks (59M-357M) against BERT small, base and large."]
    return "\n".join(lines) + "\n"


def _or_dash(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:+.3f}"


def write_outputs(output_dir: str, summary: Dict[str, Any]) -> None:
    """scaling.json, scaling.md, scaling_params.png and scaling_flops.png."""
    from gmlp_tf.analysis import figures  # matplotlib only when a figure is drawn.

    run_directory.write_text_atomically(
        os.path.join(output_dir, "scaling.json"), json.dumps(summary, indent=2, sort_keys=True) + "\n")
    run_directory.write_text_atomically(os.path.join(output_dir, "scaling.md"), markdown_table(summary))
    for key, file_name, label in (("block_parameters", "scaling_params.png", "parameters in the blocks"),
                                  ("train_flops", "scaling_flops.png", "training FLOPs")):
        series = {}
        for name in summary["slopes"]:
            rows = [r for r in summary["variants"] if r["variant"] == name]
            series[name] = ([r[key] for r in rows], [r["perplexity"] for r in rows])
        figures.line_plot(os.path.join(output_dir, file_name), series, xlabel=label,
                          ylabel="held-out masked-LM perplexity", title=f"Perplexity against {label}",
                          logy=True, logx=True)


def report_lines(summary: Optional[Dict[str, Any]], spec: Optional[ablation.AblationSpec] = None) -> List[str]:
    """The table, then where it was written."""
    if not summary:
        return []
    out = spec.output_dir if spec and spec.output_dir else DEMO_OUTPUT_DIR
    return markdown_table(summary).rstrip("\n").split("\n") + [
        "", f"Wrote {os.path.join(out, 'scaling.md')}, scaling.json, scaling_params.png and scaling_flops.png"]

