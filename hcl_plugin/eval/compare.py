"""Matched comparisons: HCL, its baseline and a random-init control analysed under the same conditions.

:func:`compare_models` runs :func:`~hcl_plugin.eval.analyze.run_analysis` on every model with one set
of arguments — one BatchNorm procedure (:mod:`hcl_plugin.eval.batchnorm`), one norm quantity
(``hyperbolic_source``), one data folder — and refuses, before any feature is extracted, models whose
norms would come from different quantities (HCL's hyperbolic head against ``expmap0`` of a
baseline's Euclidean head). ``hyperbolic_source="projection_head"`` measures every model on the same
quantity, :math:`d_c(0, \\exp_0^c(e)) = 2\\|e\\|` of the Euclidean projection head's raw output
(exactly HCL's hyperbolic embedding with the released code's shared head, no feature scale or clipping).
:func:`check_comparable` re-checks finished analyses (also ones run separately, from their
``metrics.json``); :func:`random_init_like` builds the control.

    from hcl_plugin.eval.compare import compare_models, random_init_like
    compare_models({"hcl": "hcl.ckpt", "baseline": "moco.ckpt", "random_init": random_init_like("hcl.ckpt")},
                   "data/embedded", "outputs/compare", hyperbolic_source="projection_head")

writes ``OUT/<name>/`` (each model's analysis), ``OUT/comparison.json`` and ``OUT/comparison.md``
(every headline metric with its 95 % interval, per model).
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from hcl_plugin.eval.analyze import as_eval_model, run_analysis, select_hyperbolic_source
from hcl_plugin.eval.batchnorm import MATCHED_KEYS, BatchNormProcedure, describe_batchnorm, resolve_batchnorm_procedure
from hcl_plugin.eval.errors import CheckpointFormatError
from hcl_plugin.eval.model import EvalModel, build_model
from hcl_plugin.eval.report import NORM_QUANTITIES, format_interval, to_json_value, write_metrics_json
from hcl_plugin.utils.files import check_output_dir, prepare_output_dir, record_outputs

__all__ = [
    "COMPARED_METRICS",
    "COMPARE_PRODUCER",
    "IncomparableAnalysesError",
    "check_comparable",
    "compare_models",
    "comparison_table",
    "random_init_like",
]

PathLike = Union[str, "os.PathLike[str]"]
ModelLike = Union[EvalModel, PathLike, Mapping[str, Any]]

#: How a comparison folder is marked in its output list.
COMPARE_PRODUCER = "hcl_plugin.eval.compare"

#: Metrics tabulated side by side (each with its ``_ci`` where it has one).
COMPARED_METRICS = (
    "norm_spearman", "norm_pearson", "norm_spearman_labels", "norm_spearman_scene", "norm_spearman_euclidean",
    "ooc_auroc", "ooc_auroc_scene", "ooc_ap", "linear_top1", "multilabel_map", "knn_top1",
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class IncomparableAnalysesError(ValueError):
    """Analyses that were not run under the same conditions (BatchNorm procedure, norm quantity, data)."""


def random_init_like(model_or_checkpoint: ModelLike, seed: int = 0, trusted: bool = False) -> EvalModel:
    """The same architecture at random initialisation (the control), built from the checkpoint
    contract's hyper-parameters with the same heads (:func:`hcl_plugin.eval.model.build_model`:
    torchvision's ResNet initialisation, the heads' own), under ``torch.manual_seed(seed)`` without
    touching the global RNG. ``hyper_parameters`` are copied (so ``lambda_hyp`` selects the same
    norm quantity under ``hyperbolic_source="auto"``) plus ``random_init_seed``.

    Raises:
        ValueError: the model carries no contract hyper-parameters (an in-memory model built by hand).
    """
    with torch.random.fork_rng(devices=[]):  # loading a checkpoint builds (initialises) a model too
        model = as_eval_model(model_or_checkpoint, trusted=trusted)
        torch.manual_seed(seed)
        try:
            fresh = build_model(model.hyper_parameters, with_projection_head=model.projection_head is not None,
                                with_hyperbolic_head=model.hyperbolic_head is not None)
        except CheckpointFormatError as error:
            raise ValueError(f"random_init_like needs the checkpoint contract's hyper-parameters: {error}") from None
    fresh.hyper_parameters["random_init_seed"] = int(seed)
    return fresh.eval()


def _source_of(metrics: Mapping[str, Any]) -> Optional[str]:
    return metrics.get("hyperbolic_source") or metrics.get("details", {}).get("model", {}).get("hyperbolic_source")


def _mixed_sources_message(sources: Mapping[str, Optional[str]]) -> str:
    listed = "; ".join(f"{name}: {source}" for name, source in sources.items())
    return (f"the models' norms come from different quantities ({listed}), so their norm metrics measure different "
            "things; pass hyperbolic_source='projection_head' (tools/analyze.py --hyperbolic-source projection_head) "
            "to measure every model on expmap0 of its Euclidean projection head's output, or allow_mixed_sources=True "
            "(--allow-mixed-sources) to compare anyway")


def check_comparable(results: Mapping[str, Mapping[str, Any]], allow_mixed_sources: bool = False,
                     warn: bool = True) -> List[str]:
    """Check that analyses (``run_analysis`` results or loaded ``metrics.json``) were run alike.

    Raises :class:`IncomparableAnalysesError` when their BatchNorm procedures differ (procedure, and for
    ``"recompute"`` the sample: batches, batch size, seed, crop kinds, SHA-1 of the crops) or one is
    not recorded, when they analysed different data (annotation file, number of images), or when their
    norms come from different ``hyperbolic_source`` quantities — the last one only a loud
    ``UserWarning`` (when ``warn``) and a note when ``allow_mixed_sources``.

    Returns:
        Notes for the comparison report (mixed sources allowed, different curvatures).
    """
    if len(results) < 2:
        raise ValueError(f"a comparison needs at least two analyses, got {len(results)}")
    notes: List[str] = []
    records = {name: r.get("details", {}).get("batchnorm") for name, r in results.items()}
    missing = [name for name, record in records.items() if not record]
    if missing:
        raise IncomparableAnalysesError(
            f"no BatchNorm procedure recorded for {', '.join(missing)} (an analysis from before issue 14?): "
            "cannot tell whether every model was evaluated the same way; analyse them again")
    first_name, first = next(iter(records.items()))
    keys = MATCHED_KEYS if first.get("procedure") == "recompute" else ("procedure",)
    for name, record in records.items():
        differ = [k for k in keys if record.get(k) != first.get(k)]
        if differ:
            raise IncomparableAnalysesError(
                f"the models were not evaluated under the same BatchNorm procedure: {name} differs from {first_name} "
                f"in {', '.join(differ)} ({name}: {describe_batchnorm(record)} "
                f"{first_name}: {describe_batchnorm(first)})"
                " — analyse every model with the same bn (compare_models does)")
    data = {name: (r.get("details", {}).get("data", {}).get("annotation_file"), r.get("num_images"))
            for name, r in results.items()}
    if len(set(data.values())) > 1:
        raise IncomparableAnalysesError(
            "the models were analysed on different data: "
            + "; ".join(f"{n}: {f} ({k} images)" for n, (f, k) in data.items()))
    sources = {name: _source_of(r) for name, r in results.items()}
    if len(set(sources.values())) > 1:
        message = _mixed_sources_message(sources)
        if not allow_mixed_sources:
            raise IncomparableAnalysesError(message)
        if warn:
            warnings.warn(f"COMPARING DIFFERENT NORM QUANTITIES: {message}", UserWarning, stacklevel=2)
        notes.append(f"WARNING — {message}")
    curvatures = {name: r.get("details", {}).get("model", {}).get("c") for name, r in results.items()}
    if len({round(c, 9) for c in curvatures.values() if c is not None}) > 1:
        notes.append("the models' curvatures differ (" + ", ".join(f"{n}: c = {c}" for n, c in curvatures.items())
                     + "): hyperbolic distances are on different scales (rank correlations and AUROC are not affected "
                     "by a common rescaling, but d_c(0, z) of a hyperbolic head depends on c)")
    return notes


def _cell(metrics: Mapping[str, Any], key: str) -> str:
    value = metrics.get(key)
    text = "n/a" if value is None else f"{value:.3f}"
    if f"{key}_ci" in metrics:
        text += " " + format_interval(metrics[f"{key}_ci"])
    return text


def comparison_table(results: Mapping[str, Mapping[str, Any]], keys=COMPARED_METRICS) -> str:
    """Markdown table: one row per metric, one column per model, ``value [95 % interval]``."""
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in keys:
        if any(key in r for r in results.values()):
            lines.append(f"| `{key}` | " + " | ".join(_cell(results[n], key) for n in names) + " |")
    lines.append("| `hyperbolic_source` | " + " | ".join(f"`{_source_of(results[n])}`" for n in names) + " |")
    lines.append("| `bn_procedure` | " + " | ".join(f"`{results[n].get('bn_procedure')}`" for n in names) + " |")
    return "\n".join(lines)


def compare_models(
    models: Mapping[str, ModelLike],
    data_dir: PathLike,
    out_dir: PathLike,
    hyperbolic_source: str = "auto",
    bn: Union[str, BatchNormProcedure] = "recompute",
    allow_mixed_sources: bool = False,
    trusted: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    **analysis_kwargs: Any,
) -> Dict[str, Any]:
    """Analyse every model of ``models`` (``{name: EvalModel | checkpoint path | checkpoint dict}``)
    under the same conditions and write the comparison.

    Args:
        models: at least two; names are folder names (letters, digits, ``_.-``).
        data_dir, out_dir: as :func:`~hcl_plugin.eval.analyze.run_analysis`; ``out_dir/<name>`` holds each analysis.
        hyperbolic_source: applied to every model (``"projection_head"``: the common quantity).
        bn: the one BatchNorm procedure applied to every model.
        allow_mixed_sources: compare models whose norm quantities differ anyway (a ``UserWarning`` and a
            note in the comparison); by default that is refused before any feature is extracted.
        trusted, overwrite, progress, **analysis_kwargs: passed to every ``run_analysis`` call
            (``split``, ``max_images``, ``batch_size``, ``device``, ...).

    Returns:
        The comparison written to ``comparison.json``: ``models`` (per model: every compared metric,
        its interval, ``hyperbolic_source``, ``bn_procedure``, ``analysis`` folder), ``batchnorm`` (the
        shared record), ``table`` (markdown) and ``notes``.

    Raises:
        IncomparableAnalysesError: mixed norm quantities (unless allowed), or analyses that did not end
            up under the same BatchNorm procedure or data.
    """
    for key in ("hyperbolic_source", "bn", "model_or_checkpoint", "data_dir", "out_dir"):
        if key in analysis_kwargs:
            raise TypeError(f"compare_models got {key!r} twice")
    if len(models) < 2:
        raise ValueError(f"compare_models needs at least two models, got {len(models)}")
    bad = [name for name in models if not (isinstance(name, str) and _NAME.match(name))]
    if bad:
        raise ValueError(f"model names must be folder names (letters, digits, '_', '.', '-'), got {bad}")
    procedure = resolve_batchnorm_procedure(bn)
    out_dir = check_output_dir(out_dir, overwrite=overwrite)

    # Preflight: every model loads, and their norms come from one quantity (before any extraction).
    loaded = {name: as_eval_model(model, trusted=trusted) for name, model in models.items()}
    sources = {name: select_hyperbolic_source(model, hyperbolic_source)[0].hyperbolic_source
               for name, model in loaded.items()}
    if len(set(sources.values())) > 1:
        message = _mixed_sources_message(sources)
        if not allow_mixed_sources:
            raise IncomparableAnalysesError(message)
        warnings.warn(f"COMPARING DIFFERENT NORM QUANTITIES: {message}", UserWarning, stacklevel=2)

    prepare_output_dir(out_dir, COMPARE_PRODUCER, overwrite=overwrite)
    results: Dict[str, Dict[str, Any]] = {}
    for name, model in models.items():
        # a path is passed as it is, so the analysis records it; anything else as the loaded model
        argument = model if isinstance(model, (str, os.PathLike)) else loaded[name]
        results[name] = run_analysis(argument, data_dir, os.path.join(out_dir, name),
                                     hyperbolic_source=hyperbolic_source, bn=procedure, trusted=trusted,
                                     overwrite=overwrite, progress=progress, **analysis_kwargs)
    notes = check_comparable(results, allow_mixed_sources=allow_mixed_sources, warn=False)
    table = comparison_table(results)
    per_model = {}
    for name, r in results.items():
        row: Dict[str, Any] = {"analysis": name, "hyperbolic_source": _source_of(r),
                               "bn_procedure": r.get("bn_procedure")}
        for key in COMPARED_METRICS:
            row[key] = r.get(key)
            if f"{key}_ci" in r:
                row[f"{key}_ci"] = r[f"{key}_ci"]
        per_model[name] = row
    first = next(iter(results.values()))
    comparison = to_json_value({
        "models": per_model,
        "hyperbolic_source": hyperbolic_source,
        "batchnorm": first["details"]["batchnorm"],
        "data": first["details"]["data"]["annotation_file"],
        "num_images": first.get("num_images"),
        "confidence": 0.95,
        "table": table,
        "notes": notes,
    })
    write_metrics_json(comparison, os.path.join(out_dir, "comparison.json"))
    sources_text = [f"- `{name}`: `{_source_of(r)}` — {NORM_QUANTITIES.get(str(_source_of(r)), '?')}"
                    for name, r in results.items()]
    lines = [
        "# Matched comparison", "",
        f"Data: `{comparison['data']}` — {comparison['num_images']} images. Every model was analysed with the same "
        f"arguments (`hyperbolic_source={hyperbolic_source!r}`).", "",
        describe_batchnorm(comparison["batchnorm"]), "",
        "Norm quantities:", "", *sources_text, "",
        "Values with their 95 % intervals (Fisher z for the correlations, DeLong for the AUROC):", "",
        table, "",
        "Per-model reports: " + ", ".join(f"[{n}]({n}/report.md)" for n in results) + ".", "",
    ]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    with open(os.path.join(out_dir, "comparison.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    record_outputs(out_dir, COMPARE_PRODUCER, ["comparison.json", "comparison.md"])
    return comparison
