"""The analysis in stages: each takes extracted features and returns a small dataclass.

:func:`hcl_plugin.eval.analyze.run_analysis` reads the data, loads the model, extracts features and then
runs, in this order:

* :func:`norm_stage` — HCL Fig. 3/4: the hyperbolic distance to the origin of whole-image (and
  scene-crop) embeddings, and the Euclidean norm of the Euclidean head, against the number of objects
  and of distinct labels; the per-class lowest/highest-norm images;
* :func:`out_of_context_stage` — Fig. 5: object–image (and object–scene-crop) hyperbolic distances
  against the per-object ``out_of_context`` flag;
* :func:`probe_stage` — transfer proxies on backbone features: linear probe and kNN on object crops,
  multi-label probe on whole images;
* :func:`plot_stage` — the PNG plots of the three.

Each stage adds the notes a reader of the report needs (undefined metrics and why) to its ``notes``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from hcl_plugin.eval.features import SceneFeatures
from hcl_plugin.eval.metrics import to_numpy
from hcl_plugin.eval.norms import (
    clipped_fraction,
    euclidean_norms,
    hyperbolic_norms,
    lowest_highest_per_class,
    norm_correlations,
    norms_by_count,
)
from hcl_plugin.eval.out_of_context import object_scene_distances, out_of_context_metrics
from hcl_plugin.eval.plots import (
    plot_class_norm_grid,
    plot_distance_histogram,
    plot_norm_vs_count,
    plot_out_of_context_examples,
)
from hcl_plugin.eval.probes import knn_top1, linear_probe_top1, multi_hot, multilabel_probe_map
from hcl_plugin.eval.scenes import SceneSet, count_array

__all__ = [
    "NormStage",
    "OutOfContextStage",
    "PLOT_FILES",
    "ProbeStage",
    "norm_stage",
    "out_of_context_stage",
    "plot_stage",
    "probe_stage",
]

#: Plot key -> file name written into the output folder.
PLOT_FILES: Dict[str, str] = {
    "norm_vs_objects": "norm_vs_objects.png",
    "euclidean_norm_vs_objects": "euclidean_norm_vs_objects.png",
    "class_norm_grid": "class_norm_grid.png",
    "ooc_examples": "ooc_examples.png",
    "ooc_distance_hist": "ooc_distance_hist.png",
}


@dataclass
class NormStage:
    """Norms against the number of objects (Fig. 3/4).

    Attributes:
        hyperbolic, scene: ``d(0, z)`` of the whole-image and scene-crop embeddings, ``(N,)``.
        euclidean: Euclidean norm of the Euclidean head output, or ``None`` without that head.
        correlation, scene_correlation, euclidean_correlation: :func:`norm_correlations` results.
        tables: mean norm by number of objects / labels (``by_num_objects``, ``by_num_labels``).
        selections: per class, the lowest- and highest-norm image indices (Fig. 4 grid).
        num_objects: objects per image, ``(N,)``.
        clip_r, clipped: the head's clip radius and the fraction of images at it.
    """

    hyperbolic: torch.Tensor
    scene: torch.Tensor
    euclidean: Optional[torch.Tensor]
    correlation: Dict[str, Any]
    scene_correlation: Dict[str, Any]
    euclidean_correlation: Optional[Dict[str, Any]]
    tables: Dict[str, Any]
    selections: Dict[int, Tuple[List[int], List[int]]]
    num_objects: np.ndarray
    clip_r: Optional[float]
    clipped: float


@dataclass
class OutOfContextStage:
    """Object–scene distances and their out-of-context metrics (Fig. 5).

    Attributes:
        distances: object–whole-image distance per analysed object (empty without objects).
        details: ``{"image": metrics, "scene_crop": metrics}`` when the data has the per-object flag.
    """

    distances: np.ndarray
    details: Dict[str, Dict[str, Any]] = field(default_factory=dict)


@dataclass
class ProbeStage:
    """Transfer proxies on backbone features: ``linear``, ``multilabel`` (with its ``classes``), ``knn``."""

    linear: Dict[str, Any]
    multilabel: Dict[str, Any]
    knn: Dict[str, Any]
    classes: List[int]


def _scene_categories(features: SceneFeatures) -> List[torch.Tensor]:
    return [s.category_ids for s in features.scene_set.scenes]


def norm_stage(features: SceneFeatures, scene_set: SceneSet, c: float, clip_r: Optional[float], grid_k: int,
               notes: List[str]) -> NormStage:
    """Norms of whole images and scene crops against the number of objects and of distinct labels."""
    num_objects = count_array(scene_set.scenes, "objects")
    num_labels = count_array(scene_set.scenes, "labels")
    hyperbolic = hyperbolic_norms(features.image.hyperbolic, c)
    scene = hyperbolic_norms(features.scene.hyperbolic, c)
    correlation = norm_correlations(hyperbolic, num_objects, num_labels)
    clipped = clipped_fraction(hyperbolic, clip_r)
    if correlation["objects"]["spearman"] is None:
        notes.append("norm correlations undefined: the hyperbolic norms (or the object counts) are constant"
                     + (f"; {clipped:.0%} of the embeddings are at the clip radius (clip_r = {clip_r})" if clip_r else ""))
    euclidean = euclidean_correlation = None
    if features.image.euclidean is not None:
        euclidean = euclidean_norms(features.image.euclidean)
        euclidean_correlation = norm_correlations(euclidean, num_objects, num_labels)
    return NormStage(
        hyperbolic=hyperbolic, scene=scene, euclidean=euclidean, correlation=correlation,
        scene_correlation=norm_correlations(scene, num_objects, num_labels),
        euclidean_correlation=euclidean_correlation,
        tables={"by_num_objects": norms_by_count(hyperbolic, num_objects),
                "by_num_labels": norms_by_count(hyperbolic, num_labels)},
        selections=lowest_highest_per_class(hyperbolic, _scene_categories(features), k=grid_k),
        num_objects=num_objects, clip_r=clip_r, clipped=clipped,
    )


def out_of_context_stage(features: SceneFeatures, annotation_file: str, c: float, notes: List[str]) -> OutOfContextStage:
    """Object–image and object–scene-crop distances and, with per-object flags, their AUROC and AP."""
    if features.objects is None or not len(features.objects):
        notes.append("no annotated object in the analysis split: out-of-context metrics undefined")
        return OutOfContextStage(np.zeros(0))
    d_image = object_scene_distances(features.objects.hyperbolic, features.image.hyperbolic, features.object_scene, c)
    d_scene = object_scene_distances(features.objects.hyperbolic, features.scene.hyperbolic, features.object_scene, c)
    stage = OutOfContextStage(to_numpy(d_image))
    if features.object_out_of_context is None:
        notes.append(f"{annotation_file} has no per-object 'out_of_context' field: "
                     "out-of-context metrics are undefined (distances are still plotted)")
        return stage
    stage.details["image"] = out_of_context_metrics(d_image, features.object_out_of_context)
    stage.details["scene_crop"] = out_of_context_metrics(d_scene, features.object_out_of_context)
    if stage.details["image"]["auroc"] is None:
        notes.append("out-of-context AUROC undefined: the analysed objects are all in context (or all out of context)")
    return stage


def probe_stage(train: SceneFeatures, test: SceneFeatures, categories: Mapping[int, str], probe_c: float, knn_k: int,
                knn_temperature: Optional[float], notes: List[str]) -> ProbeStage:
    """Linear and kNN probes on object crops, a multi-label probe on whole images (backbone features)."""
    linear = linear_probe_top1(train.objects.backbone, train.object_category, test.objects.backbone,
                               test.object_category, C=probe_c)
    classes = sorted(set(train.scene_set.categories) | set(categories))
    multilabel = multilabel_probe_map(
        train.image.backbone, multi_hot(_scene_categories(train), classes),
        test.image.backbone, multi_hot(_scene_categories(test), classes), C=probe_c)
    knn = knn_top1(train.objects.backbone, train.object_category, test.objects.backbone, test.object_category,
                   k=knn_k, temperature=knn_temperature)
    if linear["converged"] is False or multilabel["converged"] is False:
        notes.append("a logistic-regression probe stopped at max_iter before converging")
    return ProbeStage(linear, multilabel, knn, classes)


def _ooc_examples(features: SceneFeatures, distances: np.ndarray, names: Mapping[int, str], count: int) -> List[Dict]:
    scenes = features.scene_set.scenes
    by_scene: Dict[int, List[int]] = {}
    for row, s in enumerate(features.object_scene.tolist()):
        by_scene.setdefault(s, []).append(row)
    if features.object_out_of_context is not None:
        flags = features.object_out_of_context.numpy()
        chosen = [s for s in sorted(by_scene) if flags[by_scene[s]].any()]
    else:
        flags = None
        chosen = [s for s in sorted(by_scene) if len(by_scene[s]) >= 2]
    examples = []
    for s in chosen[:count]:
        rows = by_scene[s]
        boxes = features.object_box[rows]
        scene = scenes[s]
        examples.append({
            "path": scene.path,
            "boxes": scene.boxes[boxes].numpy(),
            "names": [names.get(int(c), str(int(c))) for c in scene.category_ids[boxes]],
            "distances": distances[rows],
            "out_of_context": flags[rows] if flags is not None else None,
            "title": f"image {scene.image_id}" + (f" ({scene.extra['context']})" if "context" in scene.extra else ""),
        })
    return examples


def plot_stage(out_dir: str, features: SceneFeatures, norms: NormStage, ooc: OutOfContextStage,
               hyperbolic_source: str, grid_max_classes: Optional[int], num_ooc_examples: int) -> Dict[str, Optional[str]]:
    """Write the plots into ``out_dir``; ``{plot key: path or None when the plot does not apply}``."""
    scene_set, names = features.scene_set, features.scene_set.categories
    plots: Dict[str, Optional[str]] = {k: None for k in PLOT_FILES}
    path = lambda key: os.path.join(out_dir, PLOT_FILES[key])  # noqa: E731
    plots["norm_vs_objects"] = plot_norm_vs_count(
        {"number of objects": norms.tables["by_num_objects"], "number of distinct labels": norms.tables["by_num_labels"]},
        path("norm_vs_objects"), title=f"hyperbolic norm of whole images ({hyperbolic_source})")
    if norms.euclidean is not None:
        plots["euclidean_norm_vs_objects"] = plot_norm_vs_count(
            {"number of objects": norms_by_count(norms.euclidean, norms.num_objects)}, path("euclidean_norm_vs_objects"),
            ylabel="Euclidean norm of the projection head output")
    if norms.selections:
        plots["class_norm_grid"] = plot_class_norm_grid(
            norms.selections, [s.path for s in scene_set.scenes], to_numpy(norms.hyperbolic).tolist(), names,
            path("class_norm_grid"), max_classes=grid_max_classes)
    if ooc.distances.size:
        flags = features.object_out_of_context
        examples = _ooc_examples(features, ooc.distances, names, num_ooc_examples)
        if examples:
            plots["ooc_examples"] = plot_out_of_context_examples(
                examples, path("ooc_examples"),
                title="first images (by id) with an out-of-context object" if flags is not None
                else "first images (by id) with two or more objects")
        plots["ooc_distance_hist"] = plot_distance_histogram(
            ooc.distances, None if flags is None else flags.numpy(), path("ooc_distance_hist"))
    return plots
