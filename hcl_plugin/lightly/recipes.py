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
from typing import Any, Dict, Optional, Sequence, Set

__all__ = ["RECIPES", "apply_recipe", "explicit_destinations"]

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
