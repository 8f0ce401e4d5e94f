"""Evaluation (framework-free).

* HCL analysis (docs/eval.md): :func:`run_analysis` — norms vs number of objects, out-of-context
  detection, linear / multi-label / kNN probes, plots and a report — over an :class:`EvalModel`
  (:mod:`hcl_plugin.eval.model`) read from a checkpoint by :func:`load_checkpoint`
  (:mod:`hcl_plugin.eval.checkpoint`: an adapter registry for other frameworks' formats).
* Matched controls: one BatchNorm procedure for every model (:mod:`hcl_plugin.eval.batchnorm`),
  :func:`compare_models` / :func:`check_comparable` / :func:`random_init_like`
  (:mod:`hcl_plugin.eval.compare`), 95 % intervals (:mod:`hcl_plugin.eval.metrics`).
* UHML retrieval (docs/uhml.md): Recall@K and an image-folder reader for retrieval sets.
"""

from hcl_plugin.eval.analyze import run_analysis
from hcl_plugin.eval.batchnorm import BN_PROCEDURES, BatchNormProcedure, recompute_batchnorm
from hcl_plugin.eval.compare import IncomparableAnalysesError, check_comparable, compare_models, random_init_like
from hcl_plugin.eval.checkpoint import CheckpointAdapter, load_checkpoint, register_checkpoint_adapter
from hcl_plugin.eval.errors import CheckpointFormatError, CheckpointMismatchError
from hcl_plugin.eval.features import SceneFeatures, extract_features
from hcl_plugin.uhml.image_folder import ImageReadError, RetrievalImageFolder, class_range
from hcl_plugin.eval.metrics import (
    auroc,
    auroc_interval,
    average_precision,
    mean_average_precision,
    pearson,
    spearman,
    spearman_interval,
)
from hcl_plugin.eval.model import EuclideanProjectionHead, EvalModel
from hcl_plugin.eval.probes import knn_predict, knn_top1, linear_probe_top1, multilabel_probe_map
from hcl_plugin.eval.report import REQUIRED_METRICS
from hcl_plugin.eval.retrieval import DEFAULT_KS, nearest_neighbours, recall_at_k
from hcl_plugin.eval.scenes import AnnotationsNotFoundError, load_split, read_scene_set

__all__ = [
    "AnnotationsNotFoundError", "BN_PROCEDURES", "BatchNormProcedure", "CheckpointAdapter", "CheckpointFormatError",
    "CheckpointMismatchError", "DEFAULT_KS", "EuclideanProjectionHead", "EvalModel", "ImageReadError",
    "IncomparableAnalysesError", "REQUIRED_METRICS", "RetrievalImageFolder", "SceneFeatures", "auroc",
    "auroc_interval", "average_precision", "check_comparable", "class_range", "compare_models", "extract_features",
    "knn_predict", "knn_top1", "linear_probe_top1", "load_checkpoint", "load_split", "mean_average_precision",
    "multilabel_probe_map", "nearest_neighbours", "pearson", "random_init_like", "read_scene_set", "recall_at_k",
    "recompute_batchnorm", "register_checkpoint_adapter", "run_analysis", "spearman", "spearman_interval",
]
