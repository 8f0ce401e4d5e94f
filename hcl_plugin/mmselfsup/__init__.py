"""HCL as MMSelfSup 1.0 components (registered on import).

Load them from a config with::

    custom_imports = dict(imports=['hcl_plugin.mmselfsup'], allow_failed_imports=False)

Registered in MMSelfSup's registries (``default_scope='mmselfsup'``):

- ``MODELS``: ``HCLMoCoV2``, ``HCLDenseCL`` (:mod:`~hcl_plugin.mmselfsup.algorithms`), ``PoincareNeck``,
  ``BallMapNeck`` (the shared head's map; :mod:`~hcl_plugin.mmselfsup.necks`), ``HyperbolicContrastiveHead`` (:mod:`~hcl_plugin.mmselfsup.heads`);
  UHML's ``UHML`` and ``UHMLNeck`` (:mod:`~hcl_plugin.mmselfsup.uhml_model`); ORL's stage 3 ``ORL`` and
  ``HCLORL`` (:mod:`~hcl_plugin.mmselfsup.orl_model`);
- ``DATASETS`` (:mod:`~hcl_plugin.mmselfsup.datasets`): ``SceneBoxDataset`` (COCO JSON / COCO-format
  proposals / OpenImages CSV), UHML's ``UHMLImageFolder`` (a retrieval image tree, class halves) and
  ORL's ``ORLCorrespondenceDataset`` (a stage-2 correspondence store, :mod:`~hcl_plugin.mmselfsup.orl_data`);
- ``TRANSFORMS`` (:mod:`~hcl_plugin.mmselfsup.transforms`): ``SampleSceneObjectBoxes``, ``SceneObjectMultiView``;
  ORL's ``LoadORLImages``, ``ORLMultiView``;
- ``DATA_SAMPLERS`` (:mod:`~hcl_plugin.mmselfsup.samplers`): UHML's ``UHMLBalancedBatchSampler``;
- ``HOOKS`` (:mod:`~hcl_plugin.mmselfsup.hooks`): ``HCLLambdaWarmupHook``, ``CosineKeyMomentumHook`` and UHML's ``UHMLReclusterHook``.

UHML (docs/uhml_mmengine.md) is built on the framework-free :mod:`hcl_plugin.uhml`; the old module
``hcl_plugin.mmselfsup.uhml`` is a deprecated alias, kept for one release.

Importing this package also makes MMEngine's local checkpoint loading work under torch >= 2.6
(:mod:`hcl_plugin.mmengine_support.checkpoint_loading`) and lets :mod:`hcl_plugin.eval` / ``tools/analyze.py``
read these checkpoints (:mod:`hcl_plugin.mmselfsup.eval_adapter`). The framework-free core (``hcl_plugin.geometry``,
``losses``, ``modules``, ``data``) does the work; these are thin wrappers.
"""

from hcl_plugin.mmengine_support import checkpoint_loading
from hcl_plugin.mmselfsup import compat, eval_adapter
from hcl_plugin.mmselfsup.algorithms import HCLDenseCL, HCLMoCoV2
from hcl_plugin.mmselfsup.datasets import SceneBoxDataset, UHMLImageFolder
from hcl_plugin.mmselfsup.heads import HyperbolicContrastiveHead
from hcl_plugin.mmselfsup.hooks import CosineKeyMomentumHook, HCLLambdaWarmupHook, UHMLReclusterHook
from hcl_plugin.mmselfsup.necks import BallMapNeck, PoincareNeck
from hcl_plugin.mmselfsup.orl_data import LoadORLImages, ORLCorrespondenceDataset, ORLMultiView
from hcl_plugin.mmselfsup.orl_model import HCLORL, ORL
from hcl_plugin.mmselfsup.samplers import UHMLBalancedBatchSampler
from hcl_plugin.mmselfsup.transforms import SampleSceneObjectBoxes, SceneObjectMultiView
from hcl_plugin.mmselfsup.uhml_model import UHML, UHMLNeck

compat.drop_missing_registry_locations()
checkpoint_loading.install()
eval_adapter.register()

__all__ = [
    "HCLMoCoV2",
    "HCLDenseCL",
    "PoincareNeck",
    "BallMapNeck",
    "HyperbolicContrastiveHead",
    "SceneBoxDataset",
    "SampleSceneObjectBoxes",
    "SceneObjectMultiView",
    "HCLLambdaWarmupHook",
    "CosineKeyMomentumHook",
    "UHML",
    "UHMLNeck",
    "UHMLImageFolder",
    "UHMLBalancedBatchSampler",
    "UHMLReclusterHook",
    "ORL",
    "HCLORL",
    "ORLCorrespondenceDataset",
    "LoadORLImages",
    "ORLMultiView",
]
