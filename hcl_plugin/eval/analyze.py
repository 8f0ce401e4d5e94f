"""The whole analysis of one model on one COCO-format scene set (``tools/analyze.py`` calls it).

:func:`run_analysis` embeds whole images, scene crops and object crops, then runs the stages of
:mod:`hcl_plugin.eval.stages`:

* norms (HCL Fig. 3/4): hyperbolic distance to the origin of the whole-image embeddings (and the
  Euclidean norm of the Euclidean head) against the number of objects and of distinct labels;
* out-of-context detection (Fig. 5): object–image hyperbolic distance vs the ``out_of_context`` flag;
* transfer proxies on backbone features: linear probe and kNN on object crops, multi-label probe
  on whole images (trained on the train split, tested on the val split);

after putting the model's BatchNorm layers through one stated procedure
(:mod:`hcl_plugin.eval.batchnorm`; by default the running statistics are re-estimated on training
crops, so a random-init control and a trained network are the same kind of function), and writes
``OUT/metrics.json``, ``OUT/report.md`` and the PNG plots. See docs/eval.md.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from hcl_plugin.eval.batchnorm import BatchNormProcedure, apply_batchnorm_procedure, resolve_batchnorm_procedure
from hcl_plugin.eval.checkpoint import EvalModel, load_checkpoint
from hcl_plugin.eval.features import extract_features
from hcl_plugin.eval.norms import norm_summary
from hcl_plugin.eval.report import to_json_value, write_metrics_json, write_report_markdown
from hcl_plugin.eval.scenes import SceneSet, load_split, read_scene_set
from hcl_plugin.eval.stages import PLOT_FILES, norm_stage, out_of_context_stage, plot_stage, probe_stage
from hcl_plugin.utils.files import check_output_dir, prepare_output_dir, record_outputs

#: how an analysis folder is marked in its output list (``--overwrite`` replaces only these files)
ANALYSIS_PRODUCER = "hcl_plugin.eval.analyze"

__all__ = ["run_analysis", "as_eval_model", "select_hyperbolic_source", "spearman_images_needed",
           "HYPERBOLIC_SOURCES", "PLOT_FILES", "TARGET_SPEARMAN_SE"]

PathLike = Union[str, "os.PathLike[str]"]

#: The standard error of Spearman's rho an analysis should reach (issue 14): at most 1/sqrt(n - 3).
TARGET_SPEARMAN_SE = 0.03


def spearman_images_needed(target_se: float = TARGET_SPEARMAN_SE) -> int:
    """Images that bound the standard error of Spearman's rho by ``target_se`` for every rho
    (``1/sqrt(n - 3) <= target_se``, :func:`hcl_plugin.eval.metrics.spearman_standard_error`):
    1,115 for 0.03."""
    return int(math.ceil(1.0 / target_se ** 2 - 1e-9)) + 3


def as_eval_model(model_or_checkpoint: Union[EvalModel, PathLike, Mapping[str, Any]], trusted: bool = False) -> EvalModel:
    """An :class:`EvalModel` from itself, a checkpoint path or a loaded checkpoint dict."""
    if isinstance(model_or_checkpoint, EvalModel):
        return model_or_checkpoint
    if isinstance(model_or_checkpoint, torch.nn.Module):
        raise TypeError(
            "pass an EvalModel(backbone, projection_head, hyperbolic_head, c=..., image_size=...), "
            f"not a bare {type(model_or_checkpoint).__name__}"
        )
    return load_checkpoint(model_or_checkpoint, trusted=trusted)


HYPERBOLIC_SOURCES = ("auto", "hyperbolic_head", "projection_head")


def select_hyperbolic_source(model: EvalModel, source: str = "auto") -> Tuple[EvalModel, Optional[str]]:
    """The model whose ``embed`` gives the requested hyperbolic embeddings, and a note when it changed.

    ``"hyperbolic_head"`` keeps the model (error without that head); ``"projection_head"`` uses
    :math:`\\exp_0^c` of the Euclidean head (error without it); ``"auto"`` does the latter only when
    the hyper-parameters say ``lambda_hyp == 0``: a hyperbolic head that got no gradient holds its
    random initial weights, so its norms say nothing about training. The model passed in is not changed.
    """
    if source not in HYPERBOLIC_SOURCES:
        raise ValueError(f"hyperbolic_source must be one of {HYPERBOLIC_SOURCES}, got {source!r}")
    if source == "hyperbolic_head" and model.hyperbolic_head is None:
        raise ValueError("hyperbolic_source='hyperbolic_head' but the model has no hyperbolic head")
    if source == "projection_head" and model.projection_head is None:
        raise ValueError("hyperbolic_source='projection_head' but the model has no projection head")
    untrained = model.hyper_parameters.get("lambda_hyp") == 0
    switch = model.hyperbolic_head is not None and model.projection_head is not None and (
        source == "projection_head" or (source == "auto" and untrained))
    if not switch:
        return model, None
    note = ("hyperbolic embeddings from expmap0 of the Euclidean head"
            + (" (lambda_hyp = 0: the hyperbolic head was never trained)" if source == "auto" else ""))
    return EvalModel(model.backbone, model.projection_head, None, c=model.c, image_size=model.image_size,
                     hyper_parameters=model.hyper_parameters), note


def _subset(scene_set: SceneSet, indices: np.ndarray, tag: str) -> SceneSet:
    return SceneSet([scene_set.scenes[i] for i in indices], scene_set.categories,
                    f"{scene_set.annotation_file} ({tag})", scene_set.image_root, scene_set.has_out_of_context)


def _probe_sets(data_dir: str, eval_set: SceneSet, max_images: Optional[int], max_train_images: Optional[int],
                seed: int) -> Tuple[SceneSet, Optional[SceneSet], str]:
    """(probe train set, probe test set or None = the analysis set, protocol text)."""
    train_file = os.path.join(data_dir, "annotations_train.json")
    val_file = os.path.join(data_dir, "annotations_val.json")
    if os.path.isfile(train_file) and os.path.isfile(val_file):
        train = read_scene_set(train_file, eval_set.image_root, max_images=max_train_images)
        same = os.path.abspath(val_file) == os.path.abspath(eval_set.annotation_file)
        test = None if same else read_scene_set(val_file, eval_set.image_root, max_images=max_images)
        return train, test, "trained on annotations_train.json, tested on annotations_val.json"
    # No train/val pair: hold out 20 % of the analysis set's images (fixed seed), train on the rest.
    order = np.random.default_rng(seed).permutation(len(eval_set))
    n_test = max(1, len(eval_set) // 5)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    if max_train_images is not None:
        train = train[:max_train_images]
    return (_subset(eval_set, train, "probe train"), _subset(eval_set, test, "probe test"),
            f"no train/val pair in the data folder: 80/20 split of the analysis images (seed {seed})")


def run_analysis(
    model_or_checkpoint: Union[EvalModel, PathLike, Mapping[str, Any]],
    data_dir: PathLike,
    out_dir: PathLike,
    split: str = "auto",
    batch_size: int = 64,
    device: Union[str, torch.device, None] = "cpu",
    num_workers: int = 0,
    max_images: Optional[int] = None,
    max_train_images: Optional[int] = None,
    knn_k: int = 20,
    knn_temperature: Optional[float] = 0.07,
    probe_c: float = 1.0,
    grid_k: int = 5,
    grid_max_classes: Optional[int] = 20,
    num_ooc_examples: int = 4,
    hyperbolic_source: str = "auto",
    bn: Union[str, BatchNormProcedure] = "recompute",
    trusted: bool = False,
    progress: bool = True,
    seed: int = 0,
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Run the analysis and write ``metrics.json``, ``report.md`` and the plots into ``out_dir``.

    Args:
        model_or_checkpoint: an :class:`EvalModel` (in-memory backbone + heads + ``c`` +
            ``image_size``), a checkpoint path, or a loaded checkpoint dict (docs/eval.md).
        data_dir: COCO-format data folder (``DIR/images`` + ``DIR/annotations*.json``).
        out_dir: output folder (created); one that already holds files is refused unless ``overwrite``.
        split: analysis split: ``"auto"`` (val if ``annotations_val.json`` exists, else all),
            ``"val"``, ``"train"``, ``"all"``.
        batch_size, device, num_workers: feature extraction.
        max_images: use the first ``max_images`` images of the analysis split (and of the probe test split).
        max_train_images: cap on the probes' training images.
        knn_k, knn_temperature: kNN classifier (``None`` temperature = majority vote).
        probe_c: inverse L2 strength of the logistic-regression probes.
        grid_k: images per side in the Fig. 4 grid; grid_max_classes: rows shown.
        num_ooc_examples: images in the Fig. 5 figure.
        hyperbolic_source: ``"auto"``, ``"hyperbolic_head"`` or ``"projection_head"``
            (:func:`select_hyperbolic_source`); recorded as ``hyperbolic_source``.
        bn: BatchNorm procedure applied before feature extraction, ``"recompute"`` (default: running
            statistics re-estimated on crops of the probe training images), ``"as_trained"``, or a
            :class:`~hcl_plugin.eval.batchnorm.BatchNormProcedure`; recorded as ``bn_procedure`` and
            ``details.batchnorm``. The model passed in is not changed.
        trusted: allow full unpickling of the checkpoint (runs code from the file).
        progress: tqdm progress bars.
        seed: seed of the 80/20 probe split used when the folder has no train/val pair.
        overwrite: write into a non-empty ``out_dir``, first removing the files an earlier analysis
            recorded there (:func:`hcl_plugin.utils.files.prepare_output_dir`); nothing else is deleted.

    Returns:
        The metrics dict written to ``metrics.json`` (plain JSON types; flat headline keys including
        :data:`~hcl_plugin.eval.report.REQUIRED_METRICS`, ``None`` where undefined, each correlation
        and AUROC with its 95 % interval under ``<key>_ci`` = ``[low, high]``, + ``"details"``).

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is false.
        AnnotationsNotFoundError: no annotation file in ``data_dir`` (the message names the paths tried).
        CheckpointMismatchError / CheckpointFormatError: the checkpoint does not fit the contract.
    """
    if hyperbolic_source not in HYPERBOLIC_SOURCES:
        raise ValueError(f"hyperbolic_source must be one of {HYPERBOLIC_SOURCES}, got {hyperbolic_source!r}")
    bn_procedure = resolve_batchnorm_procedure(bn)
    for name, value in (("max_images", max_images), ("max_train_images", max_train_images)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {value}")
    out_dir = check_output_dir(out_dir, overwrite=overwrite)  # a refusal comes before any work
    timing: Dict[str, float] = {}
    start = time.perf_counter()
    data_dir = os.fspath(data_dir)
    # Data first: a folder without annotations fails before a large checkpoint is read.
    eval_set = load_split(data_dir, split, max_images=max_images)
    if len(eval_set) == 0:
        raise ValueError(f"{eval_set.annotation_file}: no image to analyse")
    probe_train_set, probe_test_set, protocol = _probe_sets(data_dir, eval_set, max_images, max_train_images, seed)
    if len(probe_train_set) == 0:
        raise ValueError(f"{probe_train_set.annotation_file}: no image to train the probes on")
    timing["read_annotations"] = time.perf_counter() - start

    t = time.perf_counter()
    source = os.fspath(model_or_checkpoint) if isinstance(model_or_checkpoint, (str, os.PathLike)) else None
    model, source_note = select_hyperbolic_source(as_eval_model(model_or_checkpoint, trusted=trusted),
                                                  hyperbolic_source)
    prepare_output_dir(out_dir, ANALYSIS_PRODUCER, overwrite=overwrite)
    timing["load_model"] = time.perf_counter() - t

    # One BatchNorm procedure for every model, applied before any feature is extracted (on a copy).
    t = time.perf_counter()
    model, bn_record, bn_notes = apply_batchnorm_procedure(model, probe_train_set, bn_procedure, device=device,
                                                           num_workers=num_workers, progress=progress)
    timing["batchnorm"] = time.perf_counter() - t

    common = dict(batch_size=batch_size, device=device, num_workers=num_workers, progress=progress)
    t = time.perf_counter()
    feats = extract_features(model, eval_set, ("image", "scene", "object"), desc="analysis crops", **common)
    train_feats = extract_features(model, probe_train_set, ("image", "object"), desc="probe train crops", **common)
    test_feats = feats if probe_test_set is None else extract_features(
        model, probe_test_set, ("image", "object"), desc="probe test crops", **common)
    timing["features"] = time.perf_counter() - t

    notes: List[str] = ([source_note] if source_note else []) + bn_notes
    if len(eval_set) < spearman_images_needed():
        se = 1.0 / math.sqrt(max(len(eval_set) - 3, 1))
        notes.append(f"{len(eval_set)} analysed images: the standard error of Spearman's rho is up to {se:.3f} "
                     f"(95 % interval up to ±{1.96 * se:.2f}); {spearman_images_needed():,} images bring it to "
                     f"≤ {TARGET_SPEARMAN_SE} (a larger validation split: python -m hcl_plugin.data.embedded.scenes "
                     "--extra-val-images 1000)")
    names = eval_set.categories
    c = model.c
    t = time.perf_counter()
    norms = norm_stage(feats, eval_set, c, getattr(model.hyperbolic_head, "clip_r", None), grid_k, notes)
    timing["norms"] = time.perf_counter() - t
    t = time.perf_counter()
    ooc = out_of_context_stage(feats, eval_set.annotation_file, c, notes)
    timing["out_of_context"] = time.perf_counter() - t
    t = time.perf_counter()
    probes = probe_stage(train_feats, test_feats, eval_set.categories, probe_c, knn_k, knn_temperature, notes)
    timing["probes"] = time.perf_counter() - t
    t = time.perf_counter()
    plots = plot_stage(out_dir, feats, norms, ooc, model.hyperbolic_source, grid_max_classes, num_ooc_examples)
    timing["plots"] = time.perf_counter() - t
    timing["total"] = time.perf_counter() - start

    hyp_corr, scene_corr, euc_corr = norms.correlation, norms.scene_correlation, norms.euclidean_correlation
    linear, multilabel, knn = probes.linear, probes.multilabel, probes.knn
    ooc_image = ooc.details.get("image", {})
    ooc_scene = ooc.details.get("scene_crop", {})
    metrics: Dict[str, Any] = {
        "norm_spearman": hyp_corr["objects"]["spearman"],
        "norm_pearson": hyp_corr["objects"]["pearson"],
        "ooc_auroc": ooc_image.get("auroc"),
        "ooc_ap": ooc_image.get("ap"),
        "linear_top1": linear["top1"],
        "multilabel_map": multilabel["map"],
        "knn_top1": knn["top1"],
        "hyperbolic_source": model.hyperbolic_source,
        "bn_procedure": bn_record["procedure"],
        "norm_spearman_ci": hyp_corr["objects"]["spearman_ci"],
        "norm_pearson_ci": hyp_corr["objects"]["pearson_ci"],
        "ooc_auroc_ci": ooc_image.get("auroc_ci"),
        "norm_spearman_labels": hyp_corr["labels"]["spearman"],
        "norm_spearman_labels_ci": hyp_corr["labels"]["spearman_ci"],
        "norm_pearson_labels": hyp_corr["labels"]["pearson"],
        "norm_spearman_euclidean": euc_corr["objects"]["spearman"] if euc_corr else None,
        "norm_spearman_euclidean_ci": euc_corr["objects"]["spearman_ci"] if euc_corr else None,
        "norm_pearson_euclidean": euc_corr["objects"]["pearson"] if euc_corr else None,
        "norm_spearman_scene": scene_corr["objects"]["spearman"],
        "norm_spearman_scene_ci": scene_corr["objects"]["spearman_ci"],
        "ooc_auroc_scene": ooc_scene.get("auroc"),
        "ooc_auroc_scene_ci": ooc_scene.get("auroc_ci"),
        "ooc_ap_scene": ooc_scene.get("ap"),
        "ooc_positive_rate": ooc_image.get("positive_rate"),
        "hyp_norm_mean": norm_summary(norms.hyperbolic)["mean"],
        "hyp_norm_std": norm_summary(norms.hyperbolic)["std"],
        "hyp_clipped_fraction": norms.clipped,
        "num_images": len(eval_set),
        "num_objects": eval_set.num_objects_total,
        "details": {
            "model": {
                "source": source,
                "backbone": model.hyper_parameters.get("backbone", type(model.backbone).__name__),
                "hyperbolic_source": model.hyperbolic_source,
                "c": c,
                "image_size": model.image_size,
                "clip_r": norms.clip_r,
                "hyper_parameters": model.hyper_parameters,
            },
            "batchnorm": bn_record,
            "data": {
                "data_dir": data_dir,
                "split": split,
                "annotation_file": eval_set.annotation_file,
                "num_images": len(eval_set),
                "num_objects": eval_set.num_objects_total,
                "has_out_of_context": eval_set.has_out_of_context,
                "categories": {str(k): v for k, v in names.items()},
            },
            "norms": {
                "hyperbolic_image": {"summary": norm_summary(norms.hyperbolic), "correlation": hyp_corr},
                "hyperbolic_scene_crop": {"summary": norm_summary(norms.scene), "correlation": scene_corr},
                "euclidean_image": ({"summary": norm_summary(norms.euclidean), "correlation": euc_corr}
                                    if euc_corr else None),
                **norms.tables,
                "lowest_highest_per_class": {str(k): {"lowest": lo, "highest": hi}
                                             for k, (lo, hi) in norms.selections.items()},
            },
            "out_of_context": ooc.details,
            "probes": {"protocol": protocol, "linear": linear, "multilabel": {**multilabel, "classes": probes.classes},
                       "knn": knn, "train_images": len(probe_train_set),
                       "test_images": len(probe_test_set) if probe_test_set is not None else len(eval_set)},
            "plots": {k: (os.path.basename(v) if v else None) for k, v in plots.items()},
            "notes": notes,
            "timing": timing,
        },
    }
    metrics = to_json_value(metrics)
    write_metrics_json(metrics, os.path.join(out_dir, "metrics.json"))
    write_report_markdown(metrics, plots, os.path.join(out_dir, "report.md"), notes)
    record_outputs(out_dir, ANALYSIS_PRODUCER, ["metrics.json", "report.md", *(p for p in plots.values() if p)])
    return metrics
