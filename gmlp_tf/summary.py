"""Each preset's parameters and FLOPs beside the figures the paper reports (scripts/model_summary.py)."""

import dataclasses
from typing import Iterable, List, Optional

from gmlp_tf import counting, presets

# preset -> (paper table, parameters in millions, FLOPs in billions or None where not reported).
PAPER_FIGURES = {
    "gmlp_ti16_224": ("Table 1", 5.9, 2.7),
    "gmlp_s16_224": ("Table 1", 19.5, 8.9),
    "gmlp_b16_224": ("Table 1", 73.4, 31.6),
    "gmlp_36l_linear": ("Table 3", 92, None),
    "gmlp_36l_additive": ("Table 3", 92, None),
    "gmlp_36l_multiplicative": ("Table 3", 92, None),
    "gmlp_18l": ("Table 4", 59, None),
    "gmlp_36l": ("Tables 3, 4", 102, None),
    "gmlp_72l": ("Table 4", 187, None),
    "gmlp_144l": ("Table 4", 357, None),
    "gmlp_base": ("Table 5", 130, 158.0),
    "amlp_base": ("Table 5", 109, 128.9),
    "gmlp_large": ("Table 5", 365, 430.1),
    "amlp_large": ("Table 5", 316, 370.3),
    "gmlp_xlarge": ("Table 5", 941, 1091.3),
}

# timm's exact parameter counts for its gmlp_*16_224 models (1000 classes).
TIMM_PARAMETERS = {
    "gmlp_ti16_224": 5_867_328,
    "gmlp_s16_224": 19_422_656,
    "gmlp_b16_224": 73_075_392,
}


@dataclasses.dataclass
class SummaryRow:
    """One preset's figures; relative differences are ours / paper - 1."""

    preset: str
    table: str
    modality: str
    num_layers: int
    d_model: int
    d_ffn: int
    seq_length: int
    spatial_kind: str
    gating: str
    attention_size: int
    parameters: int
    paper_parameters_m: Optional[float]
    parameters_diff: Optional[float]
    flops: int
    paper_flops_b: Optional[float]
    flops_diff: Optional[float]
    timm_parameters: Optional[int]
    built_parameters: Optional[int] = None


def summarize(name: str, build: bool = False) -> SummaryRow:
    """Counts a preset's parameters and FLOPs; with build=True also builds it and counts its weights."""
    config = presets.get_preset_config(name)
    table, paper_params, paper_flops = PAPER_FIGURES.get(name, ("", None, None))
    params, flops = counting.count_parameters(config), counting.count_flops(config)
    row = SummaryRow(
        preset=name,
        table=table,
        modality=config.modality,
        num_layers=config.num_layers,
        d_model=config.d_model,
        d_ffn=config.d_ffn,
        seq_length=config.seq_length,
        spatial_kind=config.spatial_kind,
        gating=config.gating,
        attention_size=config.attention_size,
        parameters=params,
        paper_parameters_m=paper_params,
        parameters_diff=_relative(params / 1e6, paper_params),
        flops=flops,
        paper_flops_b=paper_flops,
        flops_diff=_relative(flops / 1e9, paper_flops),
        timm_parameters=TIMM_PARAMETERS.get(name),
    )
    if build:
        row.built_parameters = presets.build_preset(name).count_params()
    return row


def _relative(ours, paper):
    return None if paper is None else ours / paper - 1.0


def paper_order(names: Iterable[str]) -> List[str]:
    """Sorts preset names as the paper presents them (Table 1, 3, 4, 5), others last."""
    order = {name: i for i, name in enumerate(PAPER_FIGURES)}
    return sorted(names, key=lambda name: (order.get(name, len(order)), name))


def format_table(rows: Iterable[SummaryRow]) -> str:
    """A fixed-width text table of summary rows."""
    header = (
        f"{'preset':<24}{'table':<12}{'L':>4}{'d_model':>8}{'d_ffn':>6}{'n':>5}{'attn':>5}  "
        f"{'params (M)':>10}{'paper':>8}{'diff':>7}  {'GFLOPs':>8}{'paper':>8}{'diff':>7}  {'timm / built':>12}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        extra = r.timm_parameters or r.built_parameters
        lines.append(
            f"{r.preset:<24}{r.table:<12}{r.num_layers:>4}{r.d_model:>8}{r.d_ffn:>6}{r.seq_length:>5}"
            f"{r.attention_size:>5}  {r.parameters / 1e6:>10.3f}{_num(r.paper_parameters_m, 1):>8}"
            f"{_pct(r.parameters_diff):>7}  {r.flops / 1e9:>8.1f}{_num(r.paper_flops_b, 1):>8}"
            f"{_pct(r.flops_diff):>7}  {'' if extra is None else f'{extra:,}':>12}"
        )
    return "\n".join(lines)


def _num(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value):
    return "-" if value is None else f"{100 * value:+.1f}%"
