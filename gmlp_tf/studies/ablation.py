"""The paper's Table 3 at any scale: every architecture pretrained alike, held-out perplexity tabulated.

Each variant is an ordinary pretraining run (the job of run_pretraining.py) in OUTPUT_DIR/<variant>/
(OUTPUT_DIR/<variant>/run_<i>/ with --repeats), on the same data, vocabulary, steps, batch,
sequence length and seed. A finished run is not trained again, so a rerun only adds what is missing.

How sizes are matched (from the base gMLP config, the `gmlp_split` row). Parameter counts are
matched as the paper's Table 3 matches them, but not its widths: the paper's baselines are wider
than its gMLP (BERT-base at d_model 768 against 512), while these keep d_model and change depth.
  - gMLP variants keep the depth L and width d_model. The non-split gatings (linear, additive,
    multiplicative) gate all of Z, so their V reads d_ffn channels instead of d_ffn / 2; the paper
    lists them at 92M against 102M for the split SGU, which fits d_ffn = 2/3 of the split one
    (3072 -> 2048), and so do we.
  - Baselines keep d_model (so the embeddings are equal) and take the depth whose parameter count
    is nearest to gmlp_split's (within 10% at the demo and base sizes). The Transformer is BERT's
    layer (attention plus a 4 x d_model FFN, 64-wide heads) in the pre-LayerNorm arrangement of the
    gMLP block; MLP-Mixer mixes tokens with a two-layer MLP of d_spatial = 3 n (the paper's 384
    at n = 128) and channels with a 4 x d_model MLP.
  - amlp is gmlp_split with a tiny attention of size 64 (aMLP_base's) in every block.
"""

import dataclasses
import json
import os
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
from absl import logging

from gmlp_tf import counting
from gmlp_tf.config import GMLPConfig
from gmlp_tf.runtime import checks, run_directory, training
from gmlp_tf.runtime.flags import option
from gmlp_tf.tasks.pretraining import task as pretraining_job

DEMO_OUTPUT_DIR = os.path.join("output", "ablation_demo")
# The embedded default: ten variants of the demo model in under an hour on a 2-core CPU.
DEMO_NUM_TRAIN_STEPS = 400
EVAL_POINTS = 5  # Held-out evaluations per run (checkpoints), the points of ablation.png.
AMLP_ATTENTION_SIZE = 64
RUN_RECORD = "ablation_run.json"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of Table 3: how its config derives from the base gMLP, and the paper's figures."""

    name: str
    description: str
    derive: Callable[[GMLPConfig], GMLPConfig]
    paper_perplexity: Optional[float]
    paper_parameters_m: Optional[float]


def _gating(gating: str) -> Callable[[GMLPConfig], GMLPConfig]:
    return lambda base: base.replace(gating=gating, d_ffn=int(round(base.d_ffn * 2 / 3)))


def _transformer(position_encoding: str, content: bool = True) -> Callable[[GMLPConfig], GMLPConfig]:
    def derive(base: GMLPConfig) -> GMLPConfig:
        layer = base.replace(
            architecture="transformer", d_ffn=4 * base.d_model, num_attention_heads=max(1, base.d_model // 64),
            position_encoding=position_encoding, attention_content=content, attention_size=0,
        )
        return matched_depth(layer, base)

    return derive


def _mixer(base: GMLPConfig) -> GMLPConfig:
    layer = base.replace(architecture="mlp_mixer", d_ffn=4 * base.d_model, d_spatial=3 * base.seq_length,
                         attention_size=0)
    return matched_depth(layer, base)


VARIANTS: Tuple[Variant, ...] = (
    Variant("transformer", "Transformer (BERT), absolute positions", _transformer("absolute"), 4.37, 110),
    Variant("transformer_relpos", "Transformer, relative position bias", _transformer("relative"), 4.26, 110),
    Variant("transformer_relpos_noattn", "Transformer, relative bias only (rel pos - attn)",
            _transformer("relative", content=False), 5.64, 96),
    Variant("mlp_mixer", "MLP-Mixer", _mixer, 5.34, 112),
    Variant("gmlp_linear", "gMLP, linear s(Z) = f(Z)", _gating("linear"), 5.14, 92),
    Variant("gmlp_additive", "gMLP, additive s(Z) = Z + f(Z)", _gating("additive"), 4.97, 92),
    Variant("gmlp_multiplicative", "gMLP, multiplicative s(Z) = Z * f(Z)", _gating("multiplicative"), 4.53, 92),
    Variant("gmlp_split", "gMLP, split s(Z) = Z1 * f(Z2) (SGU)", lambda base: base, 4.35, 102),
    Variant("gmlp_split_dense", "gMLP, SGU with a dense (not Toeplitz) W",
            lambda base: base.replace(spatial_kind="dense"), None, None),
    Variant("amlp", f"aMLP: SGU plus tiny attention ({AMLP_ATTENTION_SIZE})",
            lambda base: base.replace(attention_size=AMLP_ATTENTION_SIZE), None, None),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)


def matched_depth(layer_config: GMLPConfig, base: GMLPConfig) -> GMLPConfig:
    """layer_config with the depth whose parameter count is nearest to the base gMLP's."""
    target = counting.count_parameters(base)
    depths = range(1, 2 * base.num_layers + 1)
    best = min(depths, key=lambda n: abs(counting.count_parameters(layer_config.replace(num_layers=n)) - target))
    return layer_config.replace(num_layers=best)


def base_gmlp_config(config: GMLPConfig) -> GMLPConfig:
    """The gmlp_split row of a given text config: split SGU, Toeplitz W, no attention."""
    if config.modality != "text" or getattr(config, "architecture", "gmlp") != "gmlp":
        raise ValueError("the ablation's base model must be a text gMLP config")
    return config.replace(gating="split", spatial_kind="toeplitz", attention_size=0)


def variant_configs(base: GMLPConfig, names: Sequence[str]) -> Dict[str, GMLPConfig]:
    """The model config of each named variant, derived from the base gMLP config."""
    by_name = {v.name: v for v in VARIANTS}
    base = base_gmlp_config(base)
    return {name: by_name[name].derive(base) for name in names}


@dataclasses.dataclass
class AblationSpec(pretraining_job.JobSpec):
    """The flags of run_ablation.py: those of run_pretraining.py (its data, model and recipe flags
    give the shared setup and the base gMLP), plus which variants and how many seeds."""

    variants: str = option(",".join(VARIANT_NAMES), "Comma-separated variants to run: " + ", ".join(VARIANT_NAMES))
    repeats: int = option(1, "Runs per variant with seeds random_seed, random_seed + 1, ...; the table gives "
                             "mean and standard deviation.")


def parse_variants(text: str) -> List[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANT_NAMES]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; expected some of {', '.join(VARIANT_NAMES)}")
    if not names:
        raise ValueError("--variants names no variant")
    if len(set(names)) != len(names):
        raise ValueError(f"--variants names a variant twice: {text}")
    return names


def resolve(spec: AblationSpec) -> Tuple[AblationSpec, List[str]]:
    """Fills in the ablation's defaults and checks what the job's own checks cannot see."""
    names = parse_variants(spec.variants)
    checks.check_positive(repeats=spec.repeats)
    if not spec.do_train or not spec.do_eval:
        raise ValueError("the ablation trains and evaluates every variant: keep --do_train and --do_eval")
    if spec.init_checkpoint:
        raise ValueError("--init_checkpoint does not apply: every variant is pretrained from scratch")
    if spec.is_demo:
        spec = dataclasses.replace(spec, output_dir=spec.output_dir or DEMO_OUTPUT_DIR,
                                   num_train_steps=spec.num_train_steps or DEMO_NUM_TRAIN_STEPS)
    checks.require_output_dir(spec.output_dir)
    if spec.num_train_steps and not spec.save_checkpoints_steps:
        spec = dataclasses.replace(spec, save_checkpoints_steps=checkpoint_interval(spec.num_train_steps))
    if spec.num_train_steps and spec.num_warmup_steps is None:
        spec = dataclasses.replace(spec, num_warmup_steps=spec.num_train_steps // 10)
    return spec, names


def checkpoint_interval(num_train_steps: int) -> int:
    """The largest interval that divides the steps into at least EVAL_POINTS checkpoints."""
    for interval in range(max(1, num_train_steps // EVAL_POINTS), 0, -1):
        if num_train_steps % interval == 0:
            return interval
    return 1


def _base_config(spec: AblationSpec) -> GMLPConfig:
    if spec.gmlp_config_file or spec.preset:
        return pretraining_job.model_config(spec)
    return pretraining_job.model_config(dataclasses.replace(spec, preset=pretraining_job.DEMO_PRESET))


def run(spec: AblationSpec) -> Dict[str, Any]:
    """Runs (or completes) every variant and writes ablation.md, ablation.json and ablation.png."""
    spec, names = resolve(spec)
    configs = variant_configs(_base_config(spec), names)
    config_dir = os.path.join(spec.output_dir, "configs")
    tf.io.gfile.makedirs(config_dir)  # gfile: the output directory may be a gs:// bucket.
    rows = []
    for name in names:
        config_file = os.path.join(config_dir, f"{name}.json")
        configs[name].to_json_file(config_file)
        runs = [_run_variant(spec, name, config_file, i) for i in range(spec.repeats)]
        rows.append(_row(name, configs[name], runs))
    summary = _summary(spec, rows)
    write_outputs(spec.output_dir, summary)
    return summary


def _run_dir(spec: AblationSpec, name: str, index: int) -> str:
    base = os.path.join(spec.output_dir, name)
    return base if spec.repeats == 1 else os.path.join(base, f"run_{index}")


def _run_variant(spec: AblationSpec, name: str, config_file: str, index: int) -> Dict[str, Any]:
    """One pretraining run of a variant; a finished one is read back instead of rerun."""
    run_dir = _run_dir(spec, name, index)
    record_path = os.path.join(run_dir, RUN_RECORD)
    if tf.io.gfile.exists(record_path):
        with tf.io.gfile.GFile(record_path) as f:
            record = json.load(f)
        if record.get("config") != GMLPConfig.from_json_file(config_file).to_dict():
            raise ValueError(f"{run_dir} holds a run of another {name} config; use another --output_dir")
        if record["results"].get("global_step") == spec.num_train_steps or not spec.num_train_steps:
            logging.info("%s: finished already (%s)", name, run_dir)
            return record
    logging.info("Ablation: %s, run %d of %d, in %s", name, index + 1, spec.repeats, run_dir)
    job_spec = pretraining_job.JobSpec(**{
        f.name: getattr(spec, f.name) for f in dataclasses.fields(pretraining_job.JobSpec)})
    job_spec = dataclasses.replace(job_spec, gmlp_config_file=config_file, preset=None, output_dir=run_dir,
                                   random_seed=spec.random_seed + index)
    start = time.perf_counter()
    results = pretraining_job.run(job_spec)
    record = {"variant": name, "seed": job_spec.random_seed, "config": GMLPConfig.from_json_file(config_file).to_dict(),
              "wall_time_s": time.perf_counter() - start,
              "results": results,
              "curve": training.read_scalars(os.path.join(run_dir, training.LOGS_DIR, training.EVAL_RUN)).get(
                  "perplexity", [])}
    tf.io.gfile.makedirs(run_dir)
    run_directory.write_text_atomically(record_path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _mean_std(values: List[float]) -> Tuple[float, Optional[float]]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _row(name: str, config: GMLPConfig, runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    variant = next(v for v in VARIANTS if v.name == name)
    ppl, ppl_std = _mean_std([r["results"]["perplexity"] for r in runs])
    acc, acc_std = _mean_std([r["results"]["masked_lm_accuracy"] for r in runs])
    return {
        "variant": name, "description": variant.description,
        "num_layers": config.num_layers, "d_model": config.d_model, "d_ffn": config.d_ffn,
        "parameters": counting.count_parameters(config),
        "flops_per_token": counting.count_flops(config) / config.seq_length,
        "perplexity": ppl, "perplexity_std": ppl_std, "masked_lm_accuracy": acc, "masked_lm_accuracy_std": acc_std,
        "steps": runs[0]["results"]["global_step"], "wall_time_s": statistics.fmean(r["wall_time_s"] for r in runs),
        "paper_perplexity": variant.paper_perplexity, "paper_parameters_m": variant.paper_parameters_m,
        "runs": [{"seed": r["seed"], "perplexity": r["results"]["perplexity"],
                  "masked_lm_accuracy": r["results"]["masked_lm_accuracy"], "curve": r["curve"]} for r in runs],
        "unigram_perplexity": runs[0]["results"].get("unigram_perplexity"),
    }


def _summary(spec: AblationSpec, rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    unigram = next((r["unigram_perplexity"] for r in rows if r["unigram_perplexity"]), None)
    for row in rows:
        row.pop("unigram_perplexity")
    recipe_name = spec.setup or ("demo" if spec.is_demo else "ablation")
    resolved = pretraining_job.pretraining_recipe(dataclasses.replace(spec, setup=recipe_name))
    setup = dict(dataclasses.asdict(resolved), setup=recipe_name, max_eval_steps=spec.max_eval_steps,
                 data=spec.tfds_name or spec.input_file or "the demo corpus (Shakespeare)",
                 seeds=[spec.random_seed + i for i in range(spec.repeats)])
    return {"setup": setup, "unigram_perplexity": unigram, "variants": rows}


# ------------------------------------------------------------------------------------ outputs
def markdown_table(summary: Dict[str, Any]) -> str:
    """ablation.md: one row per variant, the paper's Table 3 figures beside ours."""
    setup = summary["setup"]
    seeds = len(setup["seeds"])
    lines = [
        f"Masked-LM pretraining on {setup['data']}: {setup['num_train_steps']} steps, "
        f"batch {setup['train_batch_size']}, "
        f"sequence {setup['max_seq_length']}, peak learning rate {setup['learning_rate']}, "
        f"{seeds} seed{'s' if seeds > 1 else ''} {setup['seeds']}" + (" (mean ± std)" if seeds > 1 else "") + ".",
        "",
        "| variant | L | d_model | d_ffn | params | FLOPs/token | held-out ppl | MLM acc | steps | wall time | "
        "paper ppl | paper params |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["variants"]:
        lines.append(
            f"| {row['variant']} | {row['num_layers']} | {row['d_model']} | {row['d_ffn']} | "
            f"{row['parameters'] / 1e6:.2f}M | {row['flops_per_token'] / 1e6:.2f}M | "
            f"{_with_std(row['perplexity'], row['perplexity_std'], 2)} | "
            f"{_with_std(row['masked_lm_accuracy'] * 100, _scaled(row['masked_lm_accuracy_std'], 100), 1)}% | "
            f"{row['steps']} | {row['wall_time_s'] / 60:.1f} min | {_or_dash(row['paper_perplexity'])} | "
            f"{_or_dash(row['paper_parameters_m'], 'M')} |"
        )
    if summary.get("unigram_perplexity"):
        lines += ["", f"Unigram perplexity of the same held-out masked tokens: {summary['unigram_perplexity']:.2f}."]
    lines += ["", "Paper: Table 3 (C4/RealNews, 125K steps, batch 2048; gMLPs 36 layers, d_model 512). "
                  "The paper gives no Table 3 row for a dense W (Appendix C: quality-neutral) or for aMLP."]
    return "\n".join(lines) + "\n"


def _with_std(value: float, std: Optional[float], digits: int) -> str:
    return f"{value:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def _scaled(value: Optional[float], factor: float) -> Optional[float]:
    return None if value is None else value * factor


def _or_dash(value: Optional[float], unit: str = "") -> str:
    return "—" if value is None else f"{value:g}{unit}"


def write_outputs(output_dir: str, summary: Dict[str, Any]) -> None:
    """ablation.json, ablation.md and ablation.png (held-out perplexity against step, one line per variant)."""
    from gmlp_tf.analysis import figures  # matplotlib only when a figure is drawn.

    run_directory.write_text_atomically(
        os.path.join(output_dir, "ablation.json"), json.dumps(summary, indent=2, sort_keys=True) + "\n")
    run_directory.write_text_atomically(os.path.join(output_dir, "ablation.md"), markdown_table(summary))
    series = {}
    for row in summary["variants"]:
        # Without held-out points at checkpoints (--noeval_at_checkpoints) the final result is the one point.
        curve = row["runs"][0]["curve"] or [(row["steps"], row["runs"][0]["perplexity"])]
        series[row["variant"]] = ([step for step, _ in curve], [value for _, value in curve])
    figures.line_plot(os.path.join(output_dir, "ablation.png"), series, xlabel="training step",
                      ylabel="held-out masked-LM perplexity", title="Table 3 variants (first seed)", logy=True)


def report_lines(summary: Optional[Dict[str, Any]], spec: Optional[AblationSpec] = None) -> List[str]:
    """The table, then where it was written."""
    if not summary:
        return []
    lines = markdown_table(summary).rstrip("\n").split("\n")
    out = spec.output_dir if spec and spec.output_dir else DEMO_OUTPUT_DIR
    return lines + ["", f"Wrote {os.path.join(out, 'ablation.md')}, ablation.json and ablation.png"]
