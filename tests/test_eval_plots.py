"""The analysis plots are written as readable, non-trivial PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.data_helpers import write_image
from hcl_plugin.eval.plots import (
    plot_class_norm_grid,
    plot_distance_histogram,
    plot_norm_vs_count,
    plot_out_of_context_examples,
)


def check_png(path, min_bytes=5_000, min_side=150):
    """The file is a PNG that PIL decodes, of a reasonable size, and not a blank canvas."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert path.stat().st_size >= min_bytes, path.stat().st_size
    assert min(pixels.shape) >= min_side, pixels.shape
    assert pixels.std() > 5, "blank image"


@pytest.fixture
def images(tmp_path):
    return [str(write_image(tmp_path / "img" / f"{i}.jpg", size=(48, 48), seed=i)) for i in range(12)]


def test_norm_vs_count_plot(tmp_path):
    rows = [{"count": k, "n": 10 + k, "mean": 1.0 + 0.1 * k, "std": 0.05 * k} for k in range(1, 7)]
    path = plot_norm_vs_count({"number of objects": rows, "number of distinct labels": rows[:4]},
                              tmp_path / "sub" / "norm.png", title="t")
    assert path == str(tmp_path / "sub" / "norm.png")
    check_png(tmp_path / "sub" / "norm.png")
    with pytest.raises(ValueError, match="at least one panel"):
        plot_norm_vs_count({}, tmp_path / "x.png")


def test_class_norm_grid(tmp_path, images):
    norms = list(np.linspace(0.1, 1.2, len(images)))
    selections = {1: ([0, 1, 2, 3, 4], [11, 10, 9, 8, 7]), 5: ([2, 3], [3, 2])}
    plot_class_norm_grid(selections, images, norms, {1: "cat", 5: "dog"}, tmp_path / "grid.png", thumb=32)
    check_png(tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as image:
        assert image.width > image.height  # two blocks of five thumbnails side by side, two rows
    with pytest.raises(ValueError, match="no class"):
        plot_class_norm_grid({}, images, norms, {}, tmp_path / "empty.png")


def test_out_of_context_examples(tmp_path, images):
    examples = [
        {"path": images[0], "boxes": np.array([[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]), "names": ["cat", "cow"],
         "distances": np.array([0.3, 1.7]), "out_of_context": np.array([False, True]), "title": "image 1"},
        {"path": images[1], "boxes": np.array([[0.0, 0.0, 1.0, 1.0]]), "names": ["dog"], "distances": [0.2],
         "out_of_context": None},
        {"path": images[2], "boxes": np.array([[0.2, 0.2, 0.4, 0.8]]), "names": ["bird"], "distances": [0.9],
         "out_of_context": [True]},
    ]
    plot_out_of_context_examples(examples, tmp_path / "ooc.png", title="examples")
    check_png(tmp_path / "ooc.png", min_bytes=10_000)
    with pytest.raises(ValueError, match="no example"):
        plot_out_of_context_examples([], tmp_path / "none.png")


def test_distance_histogram(tmp_path, gen):
    import torch

    d = torch.rand(200, generator=gen).numpy()
    flags = np.arange(200) % 10 == 0
    plot_distance_histogram(d, flags, tmp_path / "hist.png")
    plot_distance_histogram(d, None, tmp_path / "hist_plain.png")
    check_png(tmp_path / "hist.png")
    check_png(tmp_path / "hist_plain.png")
    with pytest.raises(ValueError, match="no distance"):
        plot_distance_histogram([], None, tmp_path / "x.png")


def test_plots_do_not_touch_pyplot_state(tmp_path):
    import sys

    rows = [{"count": 1, "n": 1, "mean": 1.0, "std": 0.0}]
    plot_norm_vs_count({"n": rows}, tmp_path / "a.png")
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []
