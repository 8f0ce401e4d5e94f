"""ORL (Xie et al., NeurIPS 2021) as a three-stage pipeline, framework-free: torch, numpy, torchvision.

- stage 1, image-level BYOL: MMSelfSup's ``BYOL`` (``mmconfigs/orl/``) or Lightly's BYOL modules;
- stage 2, :mod:`~hcl_plugin.orl.discovery` (``tools/orl_correspondence.py``): image k-NN, RoI
  embeddings of the filtered proposals and the top RoI pairs, streamed into a correspondence store
  (:mod:`~hcl_plugin.orl.store`); the proposals come from a COCO-format file
  (:mod:`~hcl_plugin.orl.inputs`, ``tools/make_proposals.py``);
- stage 3, object-level BYOL on intra- and inter-RoI pairs beside image-level pairs:
  :mod:`~hcl_plugin.orl.sampling` draws each sample's boxes; the losses are the frameworks' BYOL heads
  (``hcl_plugin.mmselfsup``'s ``ORL`` / ``HCLORL``, ``lightly_examples/orl_hcl.py``).

docs/orl.md walks through the pipeline.
"""

from hcl_plugin.orl.sampling import BoxJitter, ORLBoxes, box_iou_xywh, jitter_box, sample_orl_boxes
from hcl_plugin.orl.store import CorrespondenceError, CorrespondenceStore, open_store

__all__ = [
    "BoxJitter",
    "CorrespondenceError",
    "CorrespondenceStore",
    "ORLBoxes",
    "box_iou_xywh",
    "jitter_box",
    "open_store",
    "sample_orl_boxes",
]
