r"""Out-of-context objects scored by their object–scene hyperbolic distance (HCL [1], Sec. 4.5, Fig. 5).

HCL trains a scene crop to lie close to the objects it contains; an object that does not belong to
its scene (an elephant in a kitchen) should then be far from the scene's embedding. For every
annotated object :math:`o` in image :math:`I` the score is the geodesic distance on the Poincaré ball

.. math:: s(o) = d_c\big(z_{\text{object}}(o),\ z_{\text{image}}(I)\big)
          = \frac{2}{\sqrt c}\operatorname{arsinh}\frac{\sqrt c\,\|x-y\|}{\sqrt{(1-c\|x\|^2)(1-c\|y\|^2)}},

computed in float64 from the explicit difference (:func:`hcl_plugin.geometry.dist`; accurate for
close pairs, docs/numerics.md). AUROC and average precision of :math:`s` against the per-object
``out_of_context`` flag measure how well the distance flags the misplaced objects (0.5 AUROC and AP
equal to the positive rate = chance); the AUROC comes with its 95 % DeLong interval (``auroc_ci``).

[1] S. Ge, S. Mishra, S. Kornblith, C.-L. Li, D. Jacobs. "Hyperbolic Contrastive Learning for Visual
    Representations beyond Objects". CVPR 2023.
"""

from __future__ import annotations

from typing import Dict, Optional

from torch import Tensor

from hcl_plugin.eval.metrics import auroc, auroc_interval, average_precision
from hcl_plugin.geometry import dist

__all__ = ["object_scene_distances", "out_of_context_metrics"]


def object_scene_distances(object_points: Tensor, scene_points: Tensor, object_scene: Tensor, c: float) -> Tensor:
    """Distance of each object embedding (M, D) to the embedding of its scene.

    Args:
        object_points: (M, D) points in the ball.
        scene_points: (N, D) points in the ball, one per image (whole image or scene crop).
        object_scene: (M,) index into ``scene_points`` of each object's image.
        c: curvature magnitude.
    Returns:
        (M,) float64 distances.
    """
    if object_points.dim() != 2 or scene_points.dim() != 2 or object_points.shape[1] != scene_points.shape[1]:
        raise ValueError(
            f"need object_points (M, D) and scene_points (N, D), got {tuple(object_points.shape)} and {tuple(scene_points.shape)}"
        )
    if object_scene.shape != (object_points.shape[0],):
        raise ValueError(f"object_scene must have shape ({object_points.shape[0]},), got {tuple(object_scene.shape)}")
    if object_scene.numel() and (int(object_scene.min()) < 0 or int(object_scene.max()) >= scene_points.shape[0]):
        raise ValueError(f"object_scene indices must lie in [0, {scene_points.shape[0]})")
    return dist(object_points.double(), scene_points.double()[object_scene.long()], c)


def out_of_context_metrics(distances: Tensor, out_of_context: Tensor) -> Dict[str, Optional[float]]:
    """AUROC (with its 95 % DeLong interval ``auroc_ci``) and AP of ``distances`` as a score for
    ``out_of_context`` (bool, same length), the number of objects and of positives, and the mean
    distance of each group."""
    flags = out_of_context.bool()
    if flags.shape != distances.shape:
        raise ValueError(f"distances and out_of_context must have the same shape, got "
                         f"{tuple(distances.shape)} and {tuple(flags.shape)}")
    d = distances.double()
    n_pos = int(flags.sum())
    return {
        "auroc": auroc(flags, d),
        "auroc_ci": auroc_interval(flags, d),
        "ap": average_precision(flags, d),
        "num_objects": int(flags.numel()),
        "num_out_of_context": n_pos,
        "positive_rate": float(n_pos / flags.numel()) if flags.numel() else None,
        "mean_distance_out_of_context": float(d[flags].mean()) if n_pos else None,
        "mean_distance_in_context": float(d[~flags].mean()) if n_pos < flags.numel() else None,
    }
