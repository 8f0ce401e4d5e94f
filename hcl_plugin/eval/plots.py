"""PNG figures of the analysis (matplotlib, Agg canvas; pyplot's global state is never touched).

* :func:`plot_norm_vs_count` — HCL Fig. 3: mean ± standard deviation of the norm per number of
  objects (and per number of distinct labels), the number of images at each point.
* :func:`plot_class_norm_grid` — HCL Fig. 4: per class, the images with the lowest and the highest norm.
* :func:`plot_out_of_context_examples` — HCL Fig. 5: images with their boxes and each object's
  object–scene distance; out-of-context objects in red.
* :func:`plot_distance_histogram` — distribution of the object–scene distance, in-context vs out-of-context.

Every function writes one PNG and returns its path.
"""

from __future__ import annotations

import os
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

__all__ = [
    "plot_norm_vs_count",
    "plot_class_norm_grid",
    "plot_out_of_context_examples",
    "plot_distance_histogram",
]

PathLike = Union[str, "os.PathLike[str]"]
_IN_CONTEXT, _OUT_OF_CONTEXT = "#2ca02c", "#d62728"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: PathLike) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path


def plot_norm_vs_count(
    panels: Mapping[str, Sequence[Mapping[str, float]]],
    path: PathLike,
    ylabel: str = "hyperbolic norm d(0, z)",
    title: Optional[str] = None,
) -> str:
    """One panel per entry of ``panels`` (``x-axis label -> rows of norms_by_count``): the mean with a
    ± std error bar at each count, the number of images annotated above each point."""
    if not panels:
        raise ValueError("need at least one panel")
    figure = _figure(4.6 * len(panels), 3.8)
    axes = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for position, (ax, (xlabel, rows)) in enumerate(zip(axes, panels.items())):
        x = np.array([r["count"] for r in rows], dtype=float)
        mean = np.array([r["mean"] for r in rows], dtype=float)
        std = np.array([r["std"] for r in rows], dtype=float)
        ax.errorbar(x, mean, yerr=std, fmt="o-", capsize=4, color="#1f77b4")
        for xi, mi, si, row in zip(x, mean, std, rows):
            ax.annotate(f"n={row['n']}", (xi, mi + si), textcoords="offset points", xytext=(0, 4),
                        ha="center", fontsize=7, color="#555555")
        ax.set_xlabel(xlabel)
        if position == 0:
            ax.set_ylabel(ylabel)
        ax.margins(y=0.12)
        if x.size:
            ax.set_xticks(x)
        ax.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _thumbnail(path: str, size: int) -> np.ndarray:
    from hcl_plugin.data.scene_dataset import load_rgb_image

    return np.asarray(load_rgb_image(path).resize((size, size), Image.BILINEAR))


def plot_class_norm_grid(
    selections: Mapping[int, Tuple[Sequence[int], Sequence[int]]],
    image_paths: Sequence[str],
    norms: Sequence[float],
    class_names: Mapping[int, str],
    path: PathLike,
    thumb: int = 64,
    max_classes: Optional[int] = None,
) -> str:
    """Rows = classes; left block = lowest-norm images (ascending), right block = highest (descending).

    Args:
        selections: ``lowest_highest_per_class`` output (category id -> (lowest, highest) indices).
        image_paths, norms: per image.
        class_names: category id -> name.
        thumb: thumbnail side in pixels.
        max_classes: keep the first classes by id (``None`` = all).
    """
    categories = sorted(selections)[: max_classes if max_classes else None]
    if not categories:
        raise ValueError("no class to plot")
    k = max(max(len(lo), len(hi)) for lo, hi in (selections[c] for c in categories))
    gap, label_h = thumb // 2, 14
    cell_h = thumb + label_h
    width = 2 * k * thumb + gap
    height = len(categories) * cell_h
    mosaic = np.full((height, width, 3), 255, dtype=np.uint8)
    texts: List[Tuple[float, float, str]] = []
    for row, category in enumerate(categories):
        lowest, highest = selections[category]
        for block, indices in enumerate((lowest, highest)):
            for col, index in enumerate(indices):
                x0 = block * (k * thumb + gap) + col * thumb
                y0 = row * cell_h
                mosaic[y0:y0 + thumb, x0:x0 + thumb] = _thumbnail(image_paths[index], thumb)
                texts.append((x0 + thumb / 2, y0 + thumb + label_h / 2, f"{norms[index]:.2f}"))
    scale = max(1.0, 96 / thumb)
    figure = _figure(width * scale / 100 + 1.6, height * scale / 100 + 0.6)
    ax = figure.add_axes((0.12, 0.02, 0.86, 0.9))
    ax.imshow(mosaic, interpolation="nearest")
    for x, y, text in texts:
        ax.text(x, y, text, ha="center", va="center", fontsize=6)
    ax.set_yticks([r * cell_h + thumb / 2 for r in range(len(categories))])
    ax.set_yticklabels([class_names.get(c, str(c)) for c in categories], fontsize=8)
    ax.set_xticks([k * thumb / 2, k * thumb + gap + k * thumb / 2])
    ax.set_xticklabels([f"{k} lowest norms", f"{k} highest norms"], fontsize=8)
    ax.xaxis.tick_top()
    for spine in ax.spines.values():
        spine.set_visible(False)
    return _save(figure, path)


def plot_out_of_context_examples(
    examples: Sequence[Mapping[str, object]],
    path: PathLike,
    columns: int = 2,
    title: Optional[str] = None,
) -> str:
    """Images with boxes and distances.

    Args:
        examples: dicts with ``path`` (image file), ``boxes`` (normalised xyxy, (N, 4)), ``names``
            (N class names), ``distances`` (N floats), ``out_of_context`` (N bools or ``None``).
    """
    from matplotlib.patches import Rectangle

    if not examples:
        raise ValueError("no example to plot")
    columns = min(columns, len(examples))
    rows = (len(examples) + columns - 1) // columns
    figure = _figure(4.0 * columns, 4.2 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, example in zip(axes.ravel(), examples):
        from hcl_plugin.data.scene_dataset import load_rgb_image

        image = load_rgb_image(str(example["path"]))
        ax.imshow(np.asarray(image), interpolation="bilinear")
        flags = example.get("out_of_context")
        boxes = np.asarray(example["boxes"], dtype=float).reshape(-1, 4)
        for j, (box, name, distance) in enumerate(zip(boxes, example["names"], example["distances"])):
            ooc = bool(flags[j]) if flags is not None else False
            color = _OUT_OF_CONTEXT if ooc else _IN_CONTEXT
            x1, y1, x2, y2 = box * np.array([image.width, image.height, image.width, image.height])
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.8))
            ax.text(x1, y1, f"{name} d={float(distance):.2f}" + (" (OOC)" if ooc else ""), color="white",
                    fontsize=7, va="bottom", bbox=dict(facecolor=color, alpha=0.8, pad=1, linewidth=0))
        ax.set_title(str(example.get("title", os.path.basename(str(example["path"])))), fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    return _save(figure, path)


def plot_distance_histogram(distances: Sequence[float], out_of_context: Optional[Sequence[bool]], path: PathLike,
                            xlabel: str = "object-scene distance d(z_object, z_image)") -> str:
    """Histogram of the object–scene distances, split by the out-of-context flag when given."""
    d = np.asarray(distances, dtype=float)
    if d.size == 0:
        raise ValueError("no distance to plot")
    figure = _figure(5.0, 3.4)
    ax = figure.add_subplot(1, 1, 1)
    bins = np.histogram_bin_edges(d, bins=min(40, max(5, d.size // 5)))
    if out_of_context is None:
        ax.hist(d, bins=bins, color="#1f77b4", alpha=0.8, label=f"objects (n={d.size})")
    else:
        flags = np.asarray(out_of_context, dtype=bool)
        # a group without objects (e.g. no out-of-context object in the split) is named, not drawn:
        # a density of an empty histogram is 0/0 (numpy's "invalid value" warning)
        for group, color, label in ((~flags, _IN_CONTEXT, "in context"), (flags, _OUT_OF_CONTEXT, "out of context")):
            n = int(group.sum())
            if n:
                ax.hist(d[group], bins=bins, color=color, alpha=0.6, density=True, label=f"{label} (n={n})")
            else:
                ax.plot([], [], color=color, label=f"{label} (n=0, none in this split)")
        ax.set_ylabel("density")
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(figure, path)
