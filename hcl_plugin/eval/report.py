"""Write the analysis results: ``metrics.json`` (strict JSON) and ``report.md`` (numbers + embedded plots)."""

from __future__ import annotations

import json
import math
import os
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from hcl_plugin.eval.batchnorm import describe_batchnorm

__all__ = ["NORM_QUANTITIES", "REQUIRED_METRICS", "describe_norm_quantity", "format_interval", "to_json_value",
           "write_metrics_json", "write_report_markdown"]

PathLike = Union[str, "os.PathLike[str]"]

#: Keys ``metrics.json`` always has (issue 5); ``null`` where a metric is undefined on the data.
REQUIRED_METRICS: Tuple[str, ...] = (
    "norm_spearman",
    "norm_pearson",
    "ooc_auroc",
    "ooc_ap",
    "linear_top1",
    "multilabel_map",
    "knn_top1",
)


def to_json_value(value: Any) -> Any:
    """Plain JSON types: numpy/torch scalars and arrays converted, NaN and infinities -> ``None``."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [to_json_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def write_metrics_json(metrics: Mapping[str, Any], path: PathLike) -> str:
    """Write ``metrics`` as strict JSON (``allow_nan=False``), keys in insertion order."""
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(to_json_value(metrics), handle, indent=2, allow_nan=False)
        handle.write("\n")
    return path


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_interval(value: Any, digits: int = 3) -> str:
    """``[low, high]`` of a 95 % interval, ``n/a`` when undefined."""
    if value is None:
        return "n/a"
    low, high = value
    return f"[{_fmt(low, digits)}, {_fmt(high, digits)}]"


#: Why the norms here differ from the ``health/hyp_norm_*`` logged in training (report.md, one paragraph).
TRAIN_EVAL_NORMS_NOTE = (
    "Norms here vs. in training: the `health/hyp_norm_*` values logged during training come from train-mode "
    "BatchNorm (each batch normalised with its own statistics, on training crops), while this analysis runs "
    "the network in eval mode with BatchNorm statistics re-estimated (or as stored, `--bn as_trained`) and on "
    "whole images. After short runs the running statistics lag the batch statistics, so the two norm "
    "scales can differ markedly; compare norms within one analysis, not with the training logs "
    "(docs/eval.md, Matched controls)."
)

#: What the norms are measured on, per ``hyperbolic_source``.
NORM_QUANTITIES = {
    "hyperbolic_head": "d_c(0, z) with z = hyperbolic_head(backbone(x)), the model's own hyperbolic head",
    "hyperbolic_head(projection_head)": "d_c(0, z) with z = the shared hyperbolic head (BallMap: feature scale, "
                                        "clipping, expmap0_c) of e = projection_head(backbone(x))",
    "expmap0(projection_head)": "d_c(0, expmap0_c(e)) = 2‖e‖ (up to float32 saturation) with "
                                "e = projection_head(backbone(x)), the Euclidean head's raw output",
}


def describe_norm_quantity(hyperbolic_source: Optional[str]) -> str:
    """One sentence naming the quantity the hyperbolic norms of an analysis come from."""
    quantity = NORM_QUANTITIES.get(str(hyperbolic_source), f"the embeddings of `{hyperbolic_source}`")
    return f"Norm quantity (`hyperbolic_source` = `{hyperbolic_source}`): {quantity}."


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def write_report_markdown(metrics: Mapping[str, Any], plots: Mapping[str, Optional[str]], path: PathLike,
                          notes: Sequence[str] = ()) -> str:
    """Write ``report.md``: the headline metrics, the norm tables, the probes, the plots (relative
    links to the PNGs next to it) and any notes (undefined metrics and why)."""
    details = metrics.get("details", {})
    out_dir = os.path.dirname(os.path.abspath(os.fspath(path)))

    def image(key: str, caption: str) -> List[str]:
        file = plots.get(key)
        if not file:
            return []
        return [f"![{caption}]({os.path.relpath(file, out_dir)})", "", f"*{caption}*", ""]

    data = details.get("data", {})
    model = details.get("model", {})
    lines = [
        "# HCL analysis report",
        "",
        f"Checkpoint: `{model.get('source') or 'in-memory model'}` — backbone {model.get('backbone', '?')}, "
        f"hyperbolic embeddings from `{model.get('hyperbolic_source', '?')}`, c = {_fmt(model.get('c'))}, "
        f"crops of {model.get('image_size', '?')} px.",
        "",
        f"Data: `{data.get('annotation_file', '?')}` — {data.get('num_images', '?')} images, "
        f"{data.get('num_objects', '?')} objects.",
        "",
        describe_norm_quantity(model.get("hyperbolic_source")),
        "",
        describe_batchnorm(details.get("batchnorm")),
        "",
        TRAIN_EVAL_NORMS_NOTE,
        "",
        "## Headline metrics",
        "",
        "Intervals: 95 %, Fisher z for the correlations (Bonett–Wright standard error for Spearman), "
        "DeLong for the AUROC (docs/eval.md).",
        "",
    ]
    headline = [
        ("norm_spearman", "Spearman ρ, hyperbolic norm of whole images vs number of objects"),
        ("norm_pearson", "Pearson r, hyperbolic norm vs number of objects"),
        ("norm_spearman_labels", "Spearman ρ, hyperbolic norm vs number of distinct labels"),
        ("norm_spearman_euclidean", "Spearman ρ, Euclidean head norm vs number of objects"),
        ("norm_spearman_scene", "Spearman ρ, hyperbolic norm of scene crops vs number of objects"),
        ("ooc_auroc", "out-of-context AUROC, object–image distance"),
        ("ooc_ap", "out-of-context average precision, object–image distance"),
        ("ooc_auroc_scene", "out-of-context AUROC, object–scene-crop distance"),
        ("linear_top1", "linear probe top-1, object crops"),
        ("multilabel_map", "multi-label linear probe mAP, whole images"),
        ("knn_top1", "kNN top-1, object crops"),
        ("hyp_clipped_fraction", "fraction of image embeddings at the clip radius"),
    ]
    lines += _table(["metric", "value", "95 % interval", "meaning"],
                    [(f"`{k}`", metrics.get(k),
                      format_interval(metrics[f"{k}_ci"]) if f"{k}_ci" in metrics else "", text)
                     for k, text in headline if k in metrics])
    lines.append("")

    norm_tables = details.get("norms", {})
    for key, title in (("by_num_objects", "number of objects"), ("by_num_labels", "number of distinct labels")):
        rows = norm_tables.get(key)
        if rows:
            lines += [f"## Hyperbolic norm by {title}", ""]
            lines += _table([title, "images", "mean", "std"], [(r["count"], r["n"], r["mean"], r["std"]) for r in rows])
            lines.append("")
    lines += image("norm_vs_objects", "Fig. 3-style: mean ± std of the hyperbolic norm d(0, z) of whole images")
    lines += image("euclidean_norm_vs_objects", "Euclidean norm of the projection head's output")
    lines += image("class_norm_grid", "Fig. 4-style: per class, the 5 lowest- and 5 highest-norm images (norm below each)")

    ooc = details.get("out_of_context", {})
    if ooc:
        lines += ["## Out-of-context objects", ""]
        lines += _table(
            ["reference", "AUROC", "AP", "objects", "out of context", "mean d (OOC)", "mean d (in context)"],
            [(name, r.get("auroc"), r.get("ap"), r.get("num_objects"), r.get("num_out_of_context"),
              r.get("mean_distance_out_of_context"), r.get("mean_distance_in_context")) for name, r in ooc.items()],
        )
        lines.append("")
    lines += image("ooc_examples", "Fig. 5-style: boxes with the object–image distance (red: out of context)")
    lines += image("ooc_distance_hist", "Object–image distances, in context vs out of context")

    probes = details.get("probes", {})
    if probes:
        lines += ["## Transfer proxies (frozen backbone features)", "", f"Protocol: {probes.get('protocol', '?')}", ""]
        rows = []
        for name, key in (("linear probe (object crops)", "linear"), ("multi-label probe (images)", "multilabel"),
                          ("kNN (object crops)", "knn")):
            r = probes.get(key, {})
            rows.append((name, r.get("top1", r.get("map")), r.get("num_train"), r.get("num_test")))
        lines += _table(["probe", "score", "train", "test"], rows)
        lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    timing = details.get("timing", {})
    if timing:
        lines += ["## Timing (seconds)", ""] + _table(["stage", "seconds"], sorted(timing.items())) + [""]
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return path
