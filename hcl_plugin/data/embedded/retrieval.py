"""The embedded retrieval set: Animal-MNIST object images written into class folders (for UHML).

No CUB/Cars/SOP can be downloaded here (docs/background.md, data available offline), so the UHML example's default data
set is built from the project's Animal-MNIST silhouettes
(:func:`hcl_plugin.data.embedded.animal_mnist.load_animal_mnist`):
``root/animal_mnist_<n>/<class>/<index>.png``, the first ``n`` images of each of the ten classes
(28 x 28 grayscale PNGs, 0 = background), written once. Read it with
:class:`hcl_plugin.uhml.RetrievalImageFolder` (``layout="class"``).

Ten classes are too few for the usual class-disjoint protocol with many classes per half: the
sorted halves give 5 training classes (bear, bird, cat, cow, dog) and 5 held-out classes
(elephant, giraffe, horse, sheep, zebra). Recall@K on 5 test classes with hundreds of images each is
much easier than on CUB's 100 (a random embedding already has R@1 near the nearest-neighbour
accuracy of the raw pixels); the set exercises the pipeline, it is not a benchmark.

Build it from the command line (as ``python -m hcl_plugin.data.embedded.scenes`` builds the scene set)::

    python -m hcl_plugin.data.embedded.retrieval --out data/embedded_retrieval --per-class 200
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ["DEFAULT_EMBEDDED_RETRIEVAL_DIR", "ensure_embedded_retrieval_set"]

#: Where the UHML example builds the set when no ``--data`` is given (relative to the working directory).
DEFAULT_EMBEDDED_RETRIEVAL_DIR = Path("data") / "embedded_retrieval"
_DONE = ".complete"


def ensure_embedded_retrieval_set(
    root: "os.PathLike[str] | str" = DEFAULT_EMBEDDED_RETRIEVAL_DIR,
    per_class: int = 200,
    cache: Optional[Path] = None,
) -> Path:
    """Write ``per_class`` Animal-MNIST images of each class into ``root/animal_mnist_<per_class>/<class>/``.

    Returns the class-folder root. Nothing is written when the folder is already complete (a hidden
    marker file records completion, so an interrupted build is redone).

    Raises:
        ValueError: ``per_class`` outside [2, 1000].
        hcl_plugin.data.embedded.animal_mnist.AnimalMNISTUnavailable: the wheel cannot be found or fetched.
    """
    from PIL import Image

    from hcl_plugin.data.embedded.animal_mnist import load_animal_mnist

    if not 2 <= per_class <= 1000:
        raise ValueError(f"per_class must be between 2 and 1000 (Animal-MNIST has 1,000 per class), got {per_class}")
    out = Path(root) / f"animal_mnist_{per_class}"
    if (out / _DONE).is_file():
        return out
    animals = load_animal_mnist(cache=cache)
    for label, name in enumerate(animals.class_names):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in np.flatnonzero(animals.labels == label)[:per_class]:
            Image.fromarray(animals.images[index]).save(folder / f"{int(index):05d}.png")
    (out / _DONE).write_text(f"Animal-MNIST 0.4, first {per_class} images per class\n")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point: build the set, print where it is and what to run next; returns the exit status."""
    from hcl_plugin.data.embedded.animal_mnist import AnimalMNISTUnavailable

    parser = argparse.ArgumentParser(prog="python -m hcl_plugin.data.embedded.retrieval",
                                     description="Write the embedded Animal-MNIST retrieval set (class folders).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_EMBEDDED_RETRIEVAL_DIR, help="parent folder of the set")
    parser.add_argument("--per-class", type=int, default=200, help="images per class (2 to 1000)")
    args = parser.parse_args(argv)
    try:
        root = ensure_embedded_retrieval_set(args.out, per_class=args.per_class)
    except (ValueError, AnimalMNISTUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"retrieval set: {root} (10 class folders). Next: python tools/train.py mmconfigs/tiny/uhml_resnet18_1xb32-adam-3e_embedded-retrieval.py"
          f" or python lightly_examples/uhml.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
