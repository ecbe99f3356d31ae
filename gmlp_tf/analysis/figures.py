"""Small PNG figures: the paper's Figures 3, 4, 9 and 10 of learned spatial weights, and a line plot.

Drawn with matplotlib's Agg canvas on Figure objects (never pyplot, so no global backend or
figure state changes), written as palette PNGs at 100 dpi. A figure that would exceed
MAX_PNG_BYTES is redrawn at a lower resolution until it fits (down to MIN_DPI). Files are written atomically
(temporary file, then rename) through tf.io.gfile, so gs:// paths work as everywhere else.

Layer indices are 0-based, as the blocks' names (block_0, ...) and spatial_weights.json.
"""

import io
import math
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

DPI = 100
MAX_PNG_BYTES = 300_000
MIN_DPI = 20
GRID_COLUMNS = 6  # Figures 4 and 9: 36 layers make the paper's 6 x 6 grid.
SPATIAL_CMAP = "RdBu_r"  # Positive weights red, negative blue, zero white.
ATTENTION_CMAP = "viridis"
MAX_TICK_TOKENS = 32  # Figure 10 labels its axes with the tokens up to this length.

# One line of line_plot: its x and y values.
Series = Tuple[Sequence[float], Sequence[float]]


def line_plot(path: str, series: Mapping[str, Series], xlabel: str, ylabel: str, title: str,
              logy: bool = False, logx: bool = False) -> None:
    """Writes a PNG with one line per entry of `series` (name -> (xs, ys)), in the given order.

    Args:
      path: the PNG to write (replaced if it exists).
      series: at least one name -> (xs, ys) of equal, non-zero lengths.
      xlabel, ylabel, title: the axis labels and the title.
      logy: a logarithmic y axis (for example perplexity); y values must then be positive.
      logx: a logarithmic x axis (for example parameters); x values must then be positive.

    Raises:
      ValueError: no series, a series with no points or different x and y lengths, or a
        non-positive y with logy (x with logx).
    """
    if not series:
        raise ValueError("line_plot needs at least one series")
    for name, (xs, ys) in series.items():
        if len(xs) != len(ys) or not len(xs):
            raise ValueError(f"series {name!r} needs equally many x and y values, at least one; got "
                             f"{len(xs)} and {len(ys)}")
        if logy and min(ys) <= 0:
            raise ValueError(f"series {name!r} has a y value <= 0, which a logarithmic axis cannot show")
        if logx and min(xs) <= 0:
            raise ValueError(f"series {name!r} has an x value <= 0, which a logarithmic axis cannot show")
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    for name, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o" if len(xs) < 30 else None, markersize=3, label=name)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    save_png(fig, path)


def middle_token_rows(path: str, matrices: Mapping[int, np.ndarray]) -> None:
    """Figure 4: for each layer, the row of its [n, n] W for the middle token (index n // 2).

    Args:
      path: the PNG to write.
      matrices: layer index -> W [n, n], in plotting order (one small line plot each).
    """
    fig, axes = _grid(len(matrices), panel=(1.8, 1.0), gaps=(0.3, 0.4), margins=(0.35, 0.1, 0.25, 0.5))
    for ax, (layer, w) in zip(axes, matrices.items()):
        n = w.shape[0]
        ax.plot(np.arange(n), w[n // 2], linewidth=0.8)
        ax.axvline(n // 2, color="grey", linestyle=":", linewidth=0.6)  # The token itself.
        ax.set_xlim(0, n - 1)
        ax.set_title(f"layer {layer}", fontsize=7, pad=2)
        ax.tick_params(labelsize=5, length=2, pad=1)
        ax.locator_params(nbins=3)
    n = next(iter(matrices.values())).shape[0]
    fig.suptitle(f"Spatial filters: the row of W for the middle token ({n // 2} of {n}) in each layer "
                 "(paper, Figure 4)", fontsize=9)
    save_png(fig, path)


def spatial_matrix_grid(path: str, matrices: Mapping[int, np.ndarray]) -> None:
    """Figure 9: each layer's whole W [n, n] as a heat map (row i: what token i reads).

    Args:
      path: the PNG to write.
      matrices: layer index -> W [n, n], in plotting order.
    """
    fig, axes = _grid(len(matrices), panel=(1.4, 1.4), gaps=(0.1, 0.25), margins=(0.1, 0.1, 0.1, 0.75))
    for ax, (layer, w) in zip(axes, matrices.items()):
        _heat_map(ax, w)
        ax.set_title(f"layer {layer}", fontsize=7, pad=2)
    fig.suptitle("Spatial projection matrices W (paper, Figure 9)\neach scaled to its own max |W|; red > 0 > blue",
                 fontsize=9)
    save_png(fig, path)


def patch_filters(path: str, matrices: Mapping[int, np.ndarray], tokens: Sequence[int], grid: int) -> None:
    """Figure 3: for each layer (a row), the rows of W of `tokens` reshaped to the patch grid.

    Args:
      path: the PNG to write.
      matrices: layer index -> W [grid^2, grid^2] (patches in row-major order), one figure row each.
      tokens: the patch indices whose filters to show, one column each; a dot marks the patch.
      grid: patches per side of the image.
    """
    fig, axes = _grid(len(matrices) * len(tokens), panel=(1.3, 1.3), gaps=(0.1, 0.1),
                      margins=(0.35, 0.1, 0.1, 0.75), columns=len(tokens))
    for i, (layer, w) in enumerate(matrices.items()):
        row = axes[i * len(tokens):(i + 1) * len(tokens)]
        for ax, token in zip(row, tokens):
            _heat_map(ax, w[token].reshape(grid, grid))
            ax.plot(token % grid, token // grid, "k.", markersize=3)
        row[0].set_ylabel(f"layer {layer}", fontsize=8)
    for ax, token in zip(axes, tokens):
        ax.set_title(f"patch ({token // grid}, {token % grid})", fontsize=8, pad=2)
    fig.suptitle(f"Spatial filters of selected patches on the {grid} x {grid} grid\n(paper, Figure 3)", fontsize=9)
    save_png(fig, path)


def tiny_attention(path: str, columns: Mapping[str, np.ndarray], tokens: Sequence[Sequence[str]]) -> None:
    """Figure 10: tiny attention maps, one row per sentence and one column per map.

    Args:
      path: the PNG to write.
      columns: column title -> probabilities [batch, n, n] (queries by keys), e.g. one layer's, or
        the paper's maximum over the first half of the blocks.
      tokens: per sentence, its m real tokens (the first m positions); a map shows [:m, :m], on
        one colour scale per sentence (0 to the row's largest probability). The first map of a row
        is labelled with the tokens when m <= MAX_TICK_TOKENS.
    """
    fig = _figure(2.4 * len(columns) + 0.8, 2.6 * len(tokens) + 0.6, layout="constrained")
    axes = fig.subplots(len(tokens), len(columns), squeeze=False)
    for b, (row, labels) in enumerate(zip(axes, tokens)):
        m = len(labels)
        # One colour scale per sentence, so that its maps compare across layers.
        top = max(float(np.max(maps[b, :m, :m])) for maps in columns.values()) or 1.0
        for ax, (title, maps) in zip(row, columns.items()):
            image = ax.imshow(maps[b, :m, :m], cmap=ATTENTION_CMAP, vmin=0.0, vmax=top, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if b == 0:
                ax.set_title(title, fontsize=8)
        _token_ticks(row[0], labels)  # A row's maps share its tokens: labelling one is enough.
        row[0].set_ylabel(f"sentence {b + 1}: queries", fontsize=7)
        fig.colorbar(image, ax=list(row), shrink=0.8, pad=0.01).ax.tick_params(labelsize=5)
    fig.suptitle("Tiny attention maps of aMLP (paper, Figure 10); rows: queries, columns: keys", fontsize=9)
    save_png(fig, path)


def save_png(fig: Figure, path: str, max_bytes: int = MAX_PNG_BYTES) -> int:
    """Writes fig as a palette PNG at DPI, or lower until it has at most max_bytes; returns its size."""
    dpi, data = DPI, b""
    while True:
        data = _png_bytes(fig, dpi)
        if len(data) <= max_bytes or dpi <= MIN_DPI:
            break
        # The bytes grow about with the pixels, dpi^2: aim a little below the budget.
        dpi = max(MIN_DPI, min(dpi - 1, int(dpi * 0.9 * math.sqrt(max_bytes / len(data)))))
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return len(data)


def _png_bytes(fig: Figure, dpi: int) -> bytes:
    fig.set_dpi(dpi)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    # A 256-colour palette: the colour maps have 256 colours, and it is a third of RGB's bytes.
    image = Image.fromarray(rgb).quantize(colors=256)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _figure(width: float, height: float, layout: Optional[str] = None) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)  # Attaches itself to fig: the Agg backend, without pyplot.
    return fig


def _grid(count: int, panel: Tuple[float, float], gaps: Tuple[float, float],
          margins: Tuple[float, float, float, float], columns: int = GRID_COLUMNS) -> Tuple[Figure, List[Axes]]:
    """A figure of `count` panels, `columns` to a row (row-major); the unused cells are hidden.

    Sizes are in inches: panel (width, height), gaps (between columns, between rows), margins
    (left, right, bottom, top). Laid out by hand: matplotlib's constrained layout takes seconds
    for dozens of panels.
    """
    if count <= 0:
        raise ValueError("nothing to plot: no layers")
    cols = min(columns, count)
    rows = math.ceil(count / cols)
    (pw, ph), (gw, gh), (left, right, bottom, top) = panel, gaps, margins
    width = left + right + cols * pw + (cols - 1) * gw
    height = bottom + top + rows * ph + (rows - 1) * gh
    fig = _figure(width, height)
    spacing = dict(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                   wspace=gw / pw, hspace=gh / ph)
    axes = list(fig.subplots(rows, cols, squeeze=False, gridspec_kw=spacing).ravel())
    for ax in axes[count:]:
        ax.set_axis_off()
    return fig, axes[:count]


def _heat_map(ax: Axes, values: np.ndarray) -> None:
    """values [rows, cols] with a diverging colour map centred on zero; no ticks."""
    limit = float(np.max(np.abs(values))) or 1.0
    ax.imshow(values, cmap=SPATIAL_CMAP, vmin=-limit, vmax=limit)
    ax.set_xticks([])
    ax.set_yticks([])


def _token_ticks(ax: Axes, labels: Sequence[str]) -> None:
    """The tokens as tick labels when they are few enough to read, else every 16th position."""
    if len(labels) > MAX_TICK_TOKENS:
        positions = np.arange(0, len(labels), 16)
        ax.set_xticks(positions, [str(p) for p in positions], fontsize=5)
        ax.set_yticks(positions, [str(p) for p in positions], fontsize=5)
        return
    positions = np.arange(len(labels))
    labels = [label.replace("$", r"\$") for label in labels]  # "$" would start mathtext.
    ax.set_xticks(positions, labels, rotation=90, fontsize=5)
    ax.set_yticks(positions, labels, fontsize=5)

