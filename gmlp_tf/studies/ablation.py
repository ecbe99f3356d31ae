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
  - bert_keras_hub is keras-hub's BERT (post-LayerNorm, BertBackbone plus MaskedLMHead) sized as
    the transformer row: an external reference that the project's baselines are not handicapped.
--sizing=paper follows the paper's widths instead: the baselines (Transformers, MLP-Mixer, keras-hub's
BERT) are 768 / 512 times wider than the gMLP (rounded to 64-wide heads) and take the depth nearest
to its parameters (at least one layer; at small sizes the wider embedding alone can exceed them).

--learning_rates=a,b,c trains every variant at each peak rate (OUTPUT_DIR/<variant>/lr_<rate>/) and
tabulates each at its best rate (the lowest mean held-out perplexity); ablation.json keeps them all.
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
from gmlp_tf.runtime import checks, run_directory, runner, training
from gmlp_tf.runtime.flags import option
from gmlp_tf.studies import attention_probe
from gmlp_tf.tasks.pretraining import task as pretraining_job
from gmlp_tf.tasks.pretraining.recipe import PretrainingRecipe

DEMO_OUTPUT_DIR = os.path.join("output", "ablation_demo")
# The embedded default: ten variants of the demo model in under an hour on a 2-core CPU.
DEMO_NUM_TRAIN_STEPS = 400
EVAL_POINTS = 5  # Held-out evaluations per run (checkpoints), the points of ablation.png.
AMLP_ATTENTION_SIZE = 64
RUN_RECORD = "ablation_run.json"
SIZINGS = ("equal_width", "paper")
# The paper's baselines against its gMLP: BERT-base's d_model 768 against gMLP's 512 (Table 3).
PAPER_WIDTH_RATIO = 768 / 512
SIZING_TEXT = {"equal_width": "at gMLP's width, depth matched to its parameters",
               "paper": "768 / 512 times gMLP's width as the paper's, depth matched to its parameters"}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of Table 3: how its config derives from the base gMLP, and the paper's figures."""

    name: str
    description: str
    derive: Callable[[GMLPConfig, int], GMLPConfig]  # (base gMLP, baseline width) -> the variant's config.
    paper_perplexity: Optional[float]
    paper_parameters_m: Optional[float]
    external: bool = False  # keras-hub's BERT, trained by studies.keras_hub_bert, not a gmlp_tf model.


def _gating(gating: str) -> Callable[[GMLPConfig, int], GMLPConfig]:
    return lambda base, width: base.replace(gating=gating, d_ffn=int(round(base.d_ffn * 2 / 3)))


def _transformer(position_encoding: str, content: bool = True) -> Callable[[GMLPConfig, int], GMLPConfig]:
    def derive(base: GMLPConfig, width: int) -> GMLPConfig:
        layer = base.replace(
            architecture="transformer", d_model=width, d_ffn=4 * width, num_attention_heads=max(1, width // 64),
            position_encoding=position_encoding, attention_content=content, attention_size=0,
        )
        return matched_depth(layer, base)

    return derive


def _mixer(base: GMLPConfig, width: int) -> GMLPConfig:
    layer = base.replace(architecture="mlp_mixer", d_model=width, d_ffn=4 * width, d_spatial=3 * base.seq_length,
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
    Variant("gmlp_split", "gMLP, split s(Z) = Z1 * f(Z2) (SGU)", lambda base, width: base, 4.35, 102),
    Variant("gmlp_split_dense", "gMLP, SGU with a dense (not Toeplitz) W",
            lambda base, width: base.replace(spatial_kind="dense"), None, None),
    Variant("amlp", f"aMLP: SGU plus tiny attention ({AMLP_ATTENTION_SIZE})",
            lambda base, width: base.replace(attention_size=AMLP_ATTENTION_SIZE), None, None),
    Variant("bert_keras_hub", "keras-hub's BERT (external reference), absolute positions",
            _transformer("absolute"), 4.37, 110, external=True),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)
BY_NAME = {v.name: v for v in VARIANTS}


def matched_depth(layer_config: GMLPConfig, base: GMLPConfig) -> GMLPConfig:
    """layer_config with the depth whose parameter count is nearest to the base gMLP's."""
    target = counting.count_parameters(base)
    depths = range(1, 2 * base.num_layers + 1)
    best = min(depths, key=lambda n: abs(counting.count_parameters(layer_config.replace(num_layers=n)) - target))
    return layer_config.replace(num_layers=best)


def baseline_width(d_model: int, sizing: str) -> int:
    """d_model of the baselines: gMLP's ("equal_width"), or 768 / 512 times it ("paper") rounded to
    whole 64-wide heads (unrounded below one head)."""
    if sizing not in SIZINGS:
        raise ValueError(f"--sizing must be one of {', '.join(SIZINGS)}; got {sizing!r}")
    if sizing == "equal_width":
        return d_model
    width = int(round(d_model * PAPER_WIDTH_RATIO))
    return 64 * max(1, round(width / 64)) if width >= 64 else width


def base_gmlp_config(config: GMLPConfig) -> GMLPConfig:
    """The gmlp_split row of a given text config: split SGU, Toeplitz W, no attention."""
    if config.modality != "text" or getattr(config, "architecture", "gmlp") != "gmlp":
        raise ValueError("the ablation's base model must be a text gMLP config")
    return config.replace(gating="split", spatial_kind="toeplitz", attention_size=0)


def variant_configs(base: GMLPConfig, names: Sequence[str], sizing: str = "equal_width") -> Dict[str, GMLPConfig]:
    """The model config of each named variant, derived from the base gMLP config."""
    base = base_gmlp_config(base)
    width = baseline_width(base.d_model, sizing)
    return {name: BY_NAME[name].derive(base, width) for name in names}


@dataclasses.dataclass
class AblationSpec(pretraining_job.JobSpec):
    """The flags of run_ablation.py: those of run_pretraining.py (its data, model and recipe flags
    give the shared setup and the base gMLP), plus which variants and how many seeds."""

    variants: Optional[str] = option(
        None, "Comma-separated variants to run (default: all; bert_keras_hub only when keras-hub is installed): "
        + ", ".join(VARIANT_NAMES))
    repeats: int = option(1, "Runs per variant with seeds random_seed, random_seed + 1, ...; the table gives "
                             "mean and standard deviation.")
    sizing: str = option("equal_width", "How baselines match gMLP's parameters: equal_width (gMLP's d_model, depth "
                                        "matched) or paper (768 / 512 times wider, depth matched).", SIZINGS)
    study: str = option("table3", "table3: every variant at one size (the paper's Table 3); scaling: --variants "
                                  "(default gmlp_split,transformer) at each of --scaling_depths (Table 4, Figure 5).",
                        ("table3", "scaling"))
    scaling_depths: Optional[str] = option(
        None, "--study=scaling: the gMLP depths, each baseline matched to each (default 2,4,8 at the demo's width; "
        "the paper's Table 4: 18,36,72,144 at d_model 512).")
    learning_rates: Optional[str] = option(
        None, "Comma-separated peak learning rates: every variant trains at each and the table shows each at its "
        "best (ablation.json keeps all). Default: --learning_rate (or the recipe's) alone.")


def default_variants() -> List[str]:
    """Every variant; keras-hub's BERT only where keras-hub is installed (the [bench] extra)."""
    from gmlp_tf.studies import keras_hub_bert

    names = [v.name for v in VARIANTS if not v.external]
    try:
        keras_hub_bert.check_available()
    except ImportError:
        logging.warning("Skipping bert_keras_hub: %s", keras_hub_bert.INSTALL_HINT)
        return names
    return names + [v.name for v in VARIANTS if v.external]


def parse_variants(text: Optional[str]) -> List[str]:
    if text is None:
        return default_variants()
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANT_NAMES]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; expected some of {', '.join(VARIANT_NAMES)}")
    if not names:
        raise ValueError("--variants names no variant")
    if len(set(names)) != len(names):
        raise ValueError(f"--variants names a variant twice: {text}")
    if any(BY_NAME[n].external for n in names):
        from gmlp_tf.studies import keras_hub_bert

        try:
            keras_hub_bert.check_available()
        except ImportError as err:
            raise ValueError(f"variant bert_keras_hub: {err}") from None
    return names


def parse_learning_rates(text: Optional[str], learning_rate: Optional[float]) -> List[Optional[float]]:
    """The peak rates of --learning_rates, or [--learning_rate] (None: the recipe's) without it."""
    if text is None:
        return [learning_rate]
    if learning_rate is not None:
        raise ValueError("give --learning_rates or --learning_rate, not both")
    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise ValueError(f"--learning_rates must be comma-separated numbers, got {text!r}") from None
    if not rates:
        raise ValueError("--learning_rates names no rate")
    if any(not r > 0 for r in rates):
        raise ValueError(f"--learning_rates must be positive, got {text}")
    if len(set(rates)) != len(rates):
        raise ValueError(f"--learning_rates names a rate twice: {text}")
    return rates


def resolve(spec: AblationSpec) -> Tuple[AblationSpec, List[str], List[Optional[float]]]:
    """Fills in the ablation's defaults and checks what the job's own checks cannot see; returns the
    spec, the variants and the peak learning rates (None: the recipe's)."""
    names = parse_variants(spec.variants)
    rates = parse_learning_rates(spec.learning_rates, spec.learning_rate)
    if spec.sizing not in SIZINGS:
        raise ValueError(f"--sizing must be one of {', '.join(SIZINGS)}; got {spec.sizing!r}")
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
    return spec, names, rates


def checkpoint_interval(num_train_steps: int) -> int:
    """The largest interval that divides the steps into at least EVAL_POINTS checkpoints."""
    for interval in range(max(1, num_train_steps // EVAL_POINTS), 0, -1):
        if num_train_steps % interval == 0:
            return interval
    return 1


def base_config(spec: AblationSpec) -> GMLPConfig:
    if spec.gmlp_config_file or spec.preset:
        return pretraining_job.model_config(spec)
    return pretraining_job.model_config(dataclasses.replace(spec, preset=pretraining_job.DEMO_PRESET))


def run(spec: AblationSpec) -> Dict[str, Any]:
    """Runs (or completes) every variant and writes ablation.md, ablation.json and ablation.png."""
    spec, names, rates = resolve(spec)
    configs = variant_configs(base_config(spec), names, spec.sizing)
    rows = [variant_row(spec, name, configs[name], rates, with_unigram=not i) for i, name in enumerate(names)]
    summary = summarize(spec, rows, rates)
    write_outputs(spec.output_dir, summary)
    return summary


def variant_row(spec: AblationSpec, name: str, config: GMLPConfig, rates: List[Optional[float]],
                label: Optional[str] = None, with_unigram: bool = True) -> Dict[str, Any]:
    """Every run of one variant's config (each rate, each seed) in OUTPUT_DIR/<label>/ (label: the
    variant's name by default), and its row at the best rate. with_unigram: the first run computes the
    unigram baseline (the same for every run of a study: one is enough)."""
    label = label or name
    config_dir = os.path.join(spec.output_dir, "configs")
    tf.io.gfile.makedirs(config_dir)  # gfile: the output directory may be a gs:// bucket.
    config_file = os.path.join(config_dir, f"{label}.json")
    config.to_json_file(config_file)
    by_rate = []
    for rate in rates:
        runs = [_run_variant(spec, label, name, config_file, rate, i, with_unigram and not by_rate and not i)
                for i in range(spec.repeats)]
        by_rate.append(_row(name, config, runs, _recipe_rate(spec) if rate is None else rate))
    return best_rate_row(by_rate)


def best_rate_row(by_rate: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The row of the rate with the lowest mean held-out perplexity; with several rates it keeps all of
    them under "sweep"."""
    best = dict(min(by_rate, key=lambda row: row["perplexity"]))
    if len(by_rate) > 1:
        best["sweep"] = by_rate
    return best


def resolved_recipe(spec: AblationSpec) -> PretrainingRecipe:
    """The recipe every run of the study trains with (before --learning_rates)."""
    return pretraining_job.pretraining_recipe(dataclasses.replace(spec, setup=_setup_name(spec)))


def _recipe_rate(spec: AblationSpec) -> float:
    return resolved_recipe(spec).learning_rate


def _setup_name(spec: AblationSpec) -> str:
    return spec.setup or ("demo" if spec.is_demo else "ablation")


def _run_dir(spec: AblationSpec, name: str, rate: Optional[float], index: int) -> str:
    base = os.path.join(spec.output_dir, name)
    if spec.learning_rates is not None:
        base = os.path.join(base, f"lr_{rate:g}")
    return base if spec.repeats == 1 else os.path.join(base, f"run_{index}")


def _train(job_spec: pretraining_job.JobSpec, variant: Variant, config: GMLPConfig, with_unigram: bool
           ) -> Dict[str, Any]:
    """The pretraining job of one run: gmlp_tf's model (its Transformers with their attention probed at
    every checkpoint), or keras-hub's BERT for the external row; the unigram baseline only if asked."""
    if variant.external:
        from gmlp_tf.studies import keras_hub_bert

        task = keras_hub_bert.KerasHubBertPretraining(job_spec)
    elif config.architecture == "transformer":
        task = attention_probe.ProbedPretraining(job_spec)
    else:
        task = pretraining_job.PretrainingTask(job_spec)
    task.unigram_baseline = with_unigram
    return runner.run(task)


def _run_variant(spec: AblationSpec, label: str, name: str, config_file: str, rate: Optional[float], index: int,
                 with_unigram: bool) -> Dict[str, Any]:
    """One pretraining run of a variant at one peak rate; a finished one is read back instead of rerun."""
    run_dir = _run_dir(spec, label, rate, index)
    record_path = os.path.join(run_dir, RUN_RECORD)
    if tf.io.gfile.exists(record_path):
        with tf.io.gfile.GFile(record_path) as f:
            record = json.load(f)
        if record.get("config") != GMLPConfig.from_json_file(config_file).to_dict():
            raise ValueError(f"{run_dir} holds a run of another {label} config; use another --output_dir")
        if rate is not None and record.get("learning_rate", rate) != rate:
            raise ValueError(f"{run_dir} holds a run at peak learning rate {record['learning_rate']}, not {rate}; "
                             "use another --output_dir")
        if record["results"].get("global_step") == spec.num_train_steps or not spec.num_train_steps:
            logging.info("%s: finished already (%s)", label, run_dir)
            return record
    logging.info("Ablation: %s, run %d of %d, in %s", label, index + 1, spec.repeats, run_dir)
    job_spec = pretraining_job.JobSpec(**{
        f.name: getattr(spec, f.name) for f in dataclasses.fields(pretraining_job.JobSpec)})
    job_spec = dataclasses.replace(job_spec, gmlp_config_file=config_file, preset=None, output_dir=run_dir,
                                   random_seed=spec.random_seed + index, learning_rate=rate)
    start = time.perf_counter()
    config = GMLPConfig.from_json_file(config_file)
    results = _train(job_spec, BY_NAME[name], config, with_unigram)
    scalars = training.read_scalars(os.path.join(run_dir, training.LOGS_DIR, training.EVAL_RUN))
    record = {"variant": name, "seed": job_spec.random_seed, "config": config.to_dict(),
              "wall_time_s": time.perf_counter() - start, "learning_rate": rate, "results": results,
              "curve": scalars.get("perplexity", []),
              "attention": {k[len(attention_probe.PREFIX):]: v for k, v in scalars.items()
                            if k.startswith(attention_probe.PREFIX)}}
    tf.io.gfile.makedirs(run_dir)
    run_directory.write_text_atomically(record_path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _mean_std(values: List[float]) -> Tuple[float, Optional[float]]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _row(name: str, config: GMLPConfig, runs: List[Dict[str, Any]], learning_rate: float) -> Dict[str, Any]:
    variant = BY_NAME[name]
    ppl, ppl_std = _mean_std([r["results"]["perplexity"] for r in runs])
    acc, acc_std = _mean_std([r["results"]["masked_lm_accuracy"] for r in runs])
    return {
        "variant": name, "description": variant.description,
        "num_layers": config.num_layers, "d_model": config.d_model, "d_ffn": config.d_ffn,
        "parameters": _parameters(config, variant), "learning_rate": learning_rate,
        "flops_per_token": counting.count_flops(config) / config.seq_length,
        "perplexity": ppl, "perplexity_std": ppl_std, "masked_lm_accuracy": acc, "masked_lm_accuracy_std": acc_std,
        "steps": runs[0]["results"]["global_step"], "wall_time_s": statistics.fmean(r["wall_time_s"] for r in runs),
        "paper_perplexity": variant.paper_perplexity, "paper_parameters_m": variant.paper_parameters_m,
        "runs": [{"seed": r["seed"], "perplexity": r["results"]["perplexity"],
                  "masked_lm_accuracy": r["results"]["masked_lm_accuracy"], "curve": r["curve"],
                  "attention": r.get("attention", {})} for r in runs],
        "unigram_perplexity": runs[0]["results"].get("unigram_perplexity"),
    }


def _parameters(config: GMLPConfig, variant: Variant) -> int:
    if not variant.external:
        return counting.count_parameters(config)
    from gmlp_tf.studies import keras_hub_bert

    return keras_hub_bert.trained_parameters(config)


def summarize(spec: AblationSpec, rows: List[Dict[str, Any]], rates: List[Optional[float]]) -> Dict[str, Any]:
    every = [r for row in rows for r in row.get("sweep", [row])]
    unigram = next((r["unigram_perplexity"] for r in every if r["unigram_perplexity"]), None)
    for row in rows + every:
        row.pop("unigram_perplexity", None)
    resolved = resolved_recipe(spec)
    setup = dict(dataclasses.asdict(resolved), setup=_setup_name(spec), max_eval_steps=spec.max_eval_steps,
                 data=spec.tfds_name or spec.input_file or "the demo corpus (Shakespeare)",
                 seeds=[spec.random_seed + i for i in range(spec.repeats)], sizing=spec.sizing,
                 learning_rates=[resolved.learning_rate if r is None else r for r in rates])
    return {"setup": setup, "unigram_perplexity": unigram, "variants": rows}


# ------------------------------------------------------------------------------------ outputs
def markdown_table(summary: Dict[str, Any]) -> str:
    """ablation.md: one row per variant, the paper's Table 3 figures beside ours."""
    setup = summary["setup"]
    seeds = len(setup["seeds"])
    rates = setup.get("learning_rates") or [setup["learning_rate"]]
    swept = len(rates) > 1
    rate_text = (f"each variant at its best peak learning rate of {', '.join(f'{r:g}' for r in rates)}" if swept
                 else f"peak learning rate {rates[0]:g}")
    lines = [
        f"Masked-LM pretraining on {setup['data']}: {setup['num_train_steps']} steps, "
        f"batch {setup['train_batch_size']}, sequence {setup['max_seq_length']}, {rate_text}, "
        f"{seeds} seed{'s' if seeds > 1 else ''} {setup['seeds']}" + (" (mean ± std)" if seeds > 1 else "")
        + f"; baselines sized {SIZING_TEXT[setup.get('sizing', 'equal_width')]}.",
        "",
        "| variant | L | d_model | d_ffn | params | FLOPs/token | " + ("peak lr | " if swept else "")
        + "held-out ppl | MLM acc | steps | wall time | paper ppl | paper params |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if swept else ""),
    ]
    for row in summary["variants"]:
        lines.append(
            f"| {row['variant']} | {row['num_layers']} | {row['d_model']} | {row['d_ffn']} | "
            f"{row['parameters'] / 1e6:.2f}M | {row['flops_per_token'] / 1e6:.2f}M | "
            + (f"{row['learning_rate']:g} | " if swept else "") +
            f"{with_std(row['perplexity'], row['perplexity_std'], 2)} | "
            f"{with_std(row['masked_lm_accuracy'] * 100, _scaled(row['masked_lm_accuracy_std'], 100), 1)}% | "
            f"{row['steps']} | {row['wall_time_s'] / 60:.1f} min | {_or_dash(row['paper_perplexity'])} | "
            f"{_or_dash(row['paper_parameters_m'], 'M')} |"
        )
    if summary.get("unigram_perplexity"):
        lines += ["", f"Unigram perplexity of the same held-out masked tokens: {summary['unigram_perplexity']:.2f}."]
    lines += sweep_lines(summary)
    lines += attention_lines(summary)
    lines += ["", "Paper: Table 3 (C4/RealNews, 125K steps, batch 2048; gMLPs 36 layers, d_model 512). "
                  "The paper gives no Table 3 row for a dense W (Appendix C: quality-neutral) or for aMLP."]
    return "\n".join(lines) + "\n"


def sweep_lines(summary: Dict[str, Any]) -> List[str]:
    """With several peak learning rates: every variant's held-out perplexity at each (best in bold)."""
    rates = summary["setup"].get("learning_rates") or []
    if len(rates) < 2:
        return []
    lines = ["", "Held-out perplexity at each peak learning rate:", "",
             "| variant | " + " | ".join(f"{r:g}" for r in rates) + " |", "|---|" + "---|" * len(rates)]
    for row in summary["variants"]:
        cells = []
        for entry in row["sweep"]:
            text = with_std(entry["perplexity"], entry["perplexity_std"], 2)
            cells.append(f"**{text}**" if entry["learning_rate"] == row["learning_rate"] else text)
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return lines


def attention_lines(summary: Dict[str, Any]) -> List[str]:
    """The attention of the Transformer rows at their last checkpoint (first seed): how far from uniform."""
    lines = []
    for row in summary["variants"]:
        stats = row["runs"][0].get("attention") or {}
        if not stats:
            continue
        last = {key: curve[-1][1] for key, curve in stats.items()}
        step = stats["uniform_weight"][-1][0]
        layers = sorted(int(key.rsplit("_", 1)[1]) for key in last if key.startswith("mean_peak_weight_"))
        for layer in layers:
            bias = last.get(f"max_relative_bias_{layer}")
            lines.append(f"| {row['variant']} | {step} | {layer} | {last[f'mean_peak_weight_{layer}']:.4f} | "
                         f"{last.get(f'mean_self_weight_{layer}', float('nan')):.4f} | "
                         f"{last['uniform_weight']:.4f} | {last[f'max_weight_{layer}']:.3f} | "
                         f"{'—' if bias is None else f'{bias:.4f}'} |")
    if not lines:
        return []
    return ["", "Attention at the last checkpoint (first seed, one held-out batch): each real query's largest weight "
                "and the weight it gives its own position, averaged, beside uniform attention's; the largest weight "
                "anywhere; the largest |relative bias|.", "",
            "| variant | step | layer | mean peak weight | mean own weight | uniform | largest weight | "
            "largest relative bias |",
            "|---|---|---|---|---|---|---|---|"] + lines


def with_std(value: float, std: Optional[float], digits: int) -> str:
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


def run_study(spec: AblationSpec) -> Dict[str, Any]:
    """run_ablation.py's job: the study that --study names."""
    if spec.study == "scaling":
        from gmlp_tf.studies import scaling

        return scaling.run(spec)
    if spec.scaling_depths is not None:
        raise ValueError("--scaling_depths applies to --study=scaling only")
    return run(spec)


def study_report_lines(summary: Optional[Dict[str, Any]], spec: Optional[AblationSpec] = None) -> List[str]:
    """What run_ablation.py prints for the study it ran."""
    if summary and summary.get("study") == "scaling":
        from gmlp_tf.studies import scaling

        return scaling.report_lines(summary, spec)
    return report_lines(summary, spec)


def report_lines(summary: Optional[Dict[str, Any]], spec: Optional[AblationSpec] = None) -> List[str]:
    """The table, then where it was written."""
    if not summary:
        return []
    lines = markdown_table(summary).rstrip("\n").split("\n")
    out = spec.output_dir if spec and spec.output_dir else DEMO_OUTPUT_DIR
    return lines + ["", f"Wrote {os.path.join(out, 'ablation.md')}, ablation.json and ablation.png"]
