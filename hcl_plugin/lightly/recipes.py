"""Named training recipes of the Lightly examples: ``--recipe paper`` (the default) and ``--recipe small``.

A recipe is a set of command-line defaults. :func:`apply_recipe` sets every value of the chosen
recipe that the command line did not give explicitly (an explicit flag always wins) and that the
parser has (``--momentum`` only for the momentum models). ``paper`` changes nothing: the flags' own
defaults are the paper's settings scaled to the embedded set as before.

``small`` is a recipe that learns within a few hundred steps on a 2-core CPU (docs/recipe.md gives
each value and why):

* ``stem="small"``, ``image_size=32``: the CIFAR ResNet stem (3x3 stride-1 conv, no max-pool) on
  32 px views, a 4x4 ``layer4`` map (ImageNet stem at 64 px: 2x2) at about 3x the cost per view of
  the ImageNet stem at 64 px;
* ``momentum=0.98`` with ``momentum_schedule="cosine"`` (BYOL / MoCo-v3:
  :math:`m_t = 1 - (1 - m_0)(\\cos(\\pi t/T) + 1)/2`): summed over T = 300 steps the key encoder's
  updates :math:`\\sum_t (1 - m_t) = (1 - m_0) T/2 = 3`, so about :math:`e^{-3}` = 5 % of it is left
  at its random initialisation (0.999 constant: 74 % after 300 steps);
* ``memory_bank_size=256``: 8 batches of 32 keys, about a third of the embedded training set, so
  the queue holds keys of a recent encoder and few copies of a query's own image;
* ``warmup_steps=20``: a linear learning-rate warm-up before the cosine decay (SimCLR / MoCo-v3);
  ``lr`` stays 0.06.
"""

from __future__ import annotations

import argparse
import copy
from typing import Any, Dict, List, Optional, Sequence, Set

__all__ = ["RECIPES", "RELEASED_HCL_FLAGS", "apply_recipe", "comparison_protocol_flags", "explicit_destinations",
           "step_matched_schedule"]

#: recipe name -> {argparse destination: value}; ``paper`` keeps the flags' defaults
RECIPES: Dict[str, Dict[str, Any]] = {
    "paper": {},
    "small": {
        "stem": "small",
        "image_size": 32,
        "memory_bank_size": 256,
        "momentum": 0.98,
        "momentum_schedule": "cosine",
        "warmup_steps": 20,
        "lr": 0.06,
    },
}


def explicit_destinations(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> Set[str]:
    """The destinations the command line ``argv`` sets explicitly (parsed again with every default suppressed)."""
    quiet = copy.deepcopy(parser)
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
    quiet._defaults.clear()  # parser-level defaults (set_defaults) are not explicit either
    namespace, _ = quiet.parse_known_args(argv)
    return set(vars(namespace))


def apply_recipe(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """``args`` with the values of ``args.recipe`` that ``argv`` did not set explicitly (in place; returned).

    Raises:
        ValueError: ``args.recipe`` is not one of :data:`RECIPES`.
    """
    name = getattr(args, "recipe", None) or "paper"
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(map(repr, RECIPES))}, got {name!r}")
    explicit = explicit_destinations(parser, argv)
    for dest, value in RECIPES[name].items():
        if hasattr(args, dest) and dest not in explicit:
            setattr(args, dest, value)
    args.recipe = name
    return args


def step_matched_schedule(steps: int) -> Dict[str, float]:
    """The small recipe's momentum and warm-up for a run of ``steps`` steps (docs/recipe.md's rules).

    ``momentum`` :math:`m_0 = 1 - 6/T`: on the cosine momentum schedule the key encoder's summed
    updates are :math:`(1 - m_0) T / 2 = 3`, leaving about :math:`e^{-3}` = 5 % of its initialisation;
    ``warmup_steps`` = T/15 (at least 1). ``steps=300`` gives the recipe's own 0.98 and 20.

    Raises:
        ValueError: ``steps`` is below 7 (the rule would give a momentum of 0 or less).
    """
    if int(steps) != steps or steps < 7:
        raise ValueError(f"steps must be an integer >= 7 for the step-matched schedule, got {steps!r}")
    return {"momentum": 1.0 - 6.0 / steps, "warmup_steps": max(1, round(steps / 15))}


#: the released HCL model's options as flags of the Lightly examples (docs/hcl_options.md): the Euclidean
#: projection head's raw output mapped onto the ball, Riemannian gradient rescale, no feature scale
RELEASED_HCL_FLAGS = ["--hyperbolic-head", "shared", "--riemannian-grad", "--feature-scale", "1", "--fixed-scale"]


def comparison_protocol_flags(steps: int) -> List[str]:
    """The training flags of the CPU comparison protocol (``tools/demo.py``, ``benchmarks/hcl_vs_baseline.py``).

    ``--recipe small``'s queue (256) and cosine momentum schedule, with the momentum and warm-up matched
    to ``steps`` (:func:`step_matched_schedule`), at the ImageNet stem and 64 px (the small stem at
    32 px costs about twice as much per step on a CPU), batch 32 and LR 0.015 (linear scaling of
    Lightly's 0.06 for batch 128). A step budget, not a time budget, so the LR and momentum schedules end
    with the run. Data, seed, output and λ are the caller's.
    """
    schedule = step_matched_schedule(steps)
    return ["--recipe", "small", "--stem", "imagenet", "--image-size", "64", "--batch-size", "32", "--lr", "0.015",
            "--momentum", f"{schedule['momentum']:.4f}", "--warmup-steps", str(schedule["warmup_steps"]),
            "--epochs", "100000", "--max-steps", str(steps)]

