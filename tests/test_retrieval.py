"""Recall@K (hand-computed fixtures, self-match excluded, blocking, precision) and the image-folder reader."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from hcl_plugin.eval import ImageReadError, RetrievalImageFolder, class_range, nearest_neighbours, recall_at_k
from hcl_plugin.geometry import expmap0
from tests.conftest import ball_points


def on_circle(degrees, norms):
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([torch.cos(rad), torch.sin(rad)], 1) * torch.tensor(norms, dtype=torch.float64)[:, None]


def test_cosine_recall_hand_computed():
    # angles 0, 10, 30, 100, 115, 200 degrees; classes 0 1 0 1 1 0; norms differ (cosine ignores them).
    # nearest others: q0 -> 10(1), 30(0): hit at 2 | q1 -> 0(0), 30(0), 100(1): hit at 3 | q2 -> 10(1), 0(0): 2
    #                 q3 -> 115(1): 1 | q4 -> 100(1): 1 | q5 -> 115(1), 100(1), 0(0): 3
    x = on_circle([0, 10, 30, 100, 115, 200], [1.0, 3.0, 0.5, 2.0, 1.0, 7.0])
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    assert recall_at_k(x, labels, ks=(1, 2, 3, 4), metric="cosine") == {1: 2 / 6, 2: 4 / 6, 3: 1.0, 4: 1.0}
    np.testing.assert_array_equal(nearest_neighbours(x, 2)[[0, 1, 5]].numpy(), [[1, 2], [0, 2], [4, 3]])


def test_self_match_is_excluded():
    # every point's only class-mate is far away: with self in the gallery R@1 would be 1
    x = on_circle([0, 90, 180, 270], [1.0] * 4)
    labels = torch.tensor([0, 1, 0, 1])
    assert recall_at_k(x, labels, ks=(1, 2, 3), metric="cosine") == {1: 0.0, 2: 0.0, 3: 1.0}
    assert not (nearest_neighbours(x, 3) == torch.arange(4)[:, None]).any()


def test_poincare_recall_hand_computed_differs_from_euclidean_order():
    # points on a diameter of the unit ball: d = |2 artanh(a) - 2 artanh(b)|.
    # q = 0.9: Euclidean nearest is 0.99 (0.09 away, class 1), hyperbolic nearest 0.75 (artanh gap 0.50 < 1.17).
    # 0.99 -> 0.9(0), 0.75(0), -0.5(1): hit at 3; the others hit at 1.
    t = torch.tensor([0.9, 0.99, 0.75, -0.5, -0.6], dtype=torch.float64)
    direction = torch.tensor([0.6, 0.8], dtype=torch.float64)
    x = t[:, None] * direction
    labels = torch.tensor([0, 1, 0, 1, 1])
    assert recall_at_k(x, labels, ks=(1, 2, 3), metric="poincare", c=1.0) == {1: 0.8, 2: 0.8, 3: 1.0}
    assert nearest_neighbours(x, 1, metric="poincare")[0].item() == 2
    # the same points at curvature c = 4 (radius 1/2): scaled by 1/2, same order
    assert recall_at_k(x / 2, labels, ks=(1, 3), metric="poincare", c=4.0) == {1: 0.8, 3: 1.0}


def test_poincare_ranking_resolves_close_pairs_of_float32_inputs(gen):
    # neighbours 1e-6 and 3e-6 away from a point at 0.9 r: the float32 matmul form would cancel to noise
    direction = torch.randn(2, 64, generator=gen, dtype=torch.float64)
    direction = direction / direction.norm(dim=1, keepdim=True)
    q = 0.9 * direction[0]
    x = torch.stack([q, q + 1e-6 * direction[1], q - 3e-6 * direction[1], -q]).float()
    labels = torch.tensor([0, 0, 1, 2])  # -q is a singleton: always a miss
    neighbours = nearest_neighbours(x, 2, metric="poincare")
    assert neighbours[:3].tolist() == [[1, 2], [0, 2], [0, 1]]
    assert recall_at_k(x, labels, ks=(1,), metric="poincare")[1] == 0.5  # q->1 hit, 1->0 hit, 2->0 miss


@pytest.mark.parametrize("metric", ["cosine", "poincare"])
def test_blocking_does_not_change_the_result_and_matches_brute_force(metric, gen):
    n, ks = 203, (1, 2, 4, 8, 16, 32)
    x = ball_points(n, 8, 1.0, gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    results = [recall_at_k(x, labels, ks, metric, 1.0, block_size=b) for b in (1, 17, 1024)]
    assert results[0] == results[1] == results[2]
    if metric == "cosine":
        unit = x / x.norm(dim=1, keepdim=True)
        full = 1 - unit @ unit.T
    else:
        sq = torch.cdist(x, x) ** 2
        gap = 1 - (x * x).sum(1)
        full = torch.acosh(1 + 2 * sq / (gap[:, None] * gap[None, :]))
    full.fill_diagonal_(float("inf"))
    order = full.argsort(dim=1)
    for k in ks:
        expected = (labels[order[:, :k]] == labels[:, None]).any(1).double().mean().item()
        assert results[0][k] == pytest.approx(expected, abs=1e-12)


def test_singleton_classes_count_as_misses():
    x = on_circle([0, 5, 90], [1.0] * 3)
    assert recall_at_k(x, torch.tensor([0, 0, 1]), ks=(1, 2)) == {1: 2 / 3, 2: 2 / 3}


def test_bad_input(gen):
    x = ball_points(10, 4, 1.0, gen)
    labels = torch.arange(10) % 3
    with pytest.raises(ValueError, match=r"between 1 and N - 1 = 9"):
        recall_at_k(x, labels, ks=(1, 10))
    with pytest.raises(ValueError, match="labels has 9 entries"):
        recall_at_k(x, labels[:9])
    with pytest.raises(ValueError, match="metric must be one of"):
        recall_at_k(x, labels, ks=(1,), metric="euclid")
    bad = x.clone()
    bad[4, 0] = float("nan")
    with pytest.raises(ValueError, match=r"embeddings contains 1 non-finite.*\(4, 0\)"):
        recall_at_k(bad, labels, ks=(1,))
    with pytest.raises(ValueError, match="outside the Poincaré ball"):
        recall_at_k(x * 10, labels, ks=(1,), metric="poincare")
    with pytest.raises(ValueError, match="zero row"):
        recall_at_k(torch.zeros(3, 2), torch.tensor([0, 0, 1]), ks=(1,))


@pytest.mark.slow
def test_fifty_thousand_items_fit_in_blocks(gen):
    n = 50_000
    x = expmap0(torch.randn(n, 32, generator=gen), 1.0)
    labels = torch.arange(n) % 500
    for metric in ("poincare",):  # the costlier metric; both share the block loop (tested at small n above)
        result = recall_at_k(x, labels, metric=metric, block_size=512)
        assert set(result) == {1, 2, 4, 8, 16, 32}
        assert all(0.0 <= r <= 1.0 for r in result.values())
        values = [result[k] for k in sorted(result)]
        assert values == sorted(values)


# ---------------------------------------------------------------- image-folder reader


def write_image(path, value: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (6, 5), (value, 0, 0)).save(path)


def test_class_layout_and_class_halves(tmp_path):
    for index in range(5):
        for n in range(index + 1):
            write_image(tmp_path / f"{index:03d}.class" / f"img{n}.png", 10 * index + n)
    (tmp_path / "README.txt").write_text("not a class")
    (tmp_path / "000.class" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    everything = RetrievalImageFolder(tmp_path)
    assert everything.class_names == [f"{i:03d}.class" for i in range(5)]
    assert len(everything) == 15 and everything.targets == [0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4]
    assert everything.ignored_entries == 2
    train, test = RetrievalImageFolder(tmp_path, split="train"), RetrievalImageFolder(tmp_path, split="test")
    assert sorted(set(train.targets)) == [0, 1] and sorted(set(test.targets)) == [2, 3, 4]
    image, label = test[0]
    assert label == 2 and image.size == (6, 5) and image.getpixel((0, 0)) == (20, 0, 0)
    transformed = RetrievalImageFolder(tmp_path, split="test", transform=lambda im: np.asarray(im).shape)
    assert transformed[0] == ((5, 6, 3), 2)


def test_superclass_layout(tmp_path):
    for superclass, classes in {"bicycle_final": ["111", "222"], "chair_final": ["333"]}.items():
        for name in classes:
            write_image(tmp_path / superclass / name / "a.jpg", 1)
            write_image(tmp_path / superclass / name / "b.JPG", 2)
    data = RetrievalImageFolder(tmp_path, layout="superclass/class")
    assert data.class_names == ["bicycle_final/111", "bicycle_final/222", "chair_final/333"]
    assert data.superclass_names == ["bicycle_final", "chair_final"]
    assert data.targets == [0, 0, 1, 1, 2, 2] and data.superclass_targets == [0, 0, 0, 0, 1, 1]
    assert RetrievalImageFolder(tmp_path, layout="superclass/class", split="test").targets == [1, 1, 2, 2]
    # read with the one-level layout, the superclass folders look like classes without images
    with pytest.raises(ValueError, match="bicycle_final.*holds no image files.*layout='class'"):
        RetrievalImageFolder(tmp_path)
    with pytest.raises(ValueError, match="superclass_targets needs"):
        RetrievalImageFolder(tmp_path / "chair_final").superclass_targets


def test_class_range():
    assert list(class_range(200, "train")) == list(range(100)) and list(class_range(200, "test")) == list(range(100, 200))
    assert list(class_range(5, "train")) == [0, 1] and len(class_range(5, "all")) == 5
    with pytest.raises(ValueError, match="split must be one of"):
        class_range(4, "val")


def test_reader_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RetrievalImageFolder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class folders"):
        RetrievalImageFolder(tmp_path)
    (tmp_path / "empty_class").mkdir()
    write_image(tmp_path / "full_class" / "a.png", 3)
    with pytest.raises(ValueError, match="empty_class.*holds no image files"):
        RetrievalImageFolder(tmp_path)
    (tmp_path / "empty_class" / "broken.jpg").write_bytes(b"not a jpeg")
    data = RetrievalImageFolder(tmp_path)
    with pytest.raises(ImageReadError, match="broken.jpg"):
        data[0]
    with pytest.raises(ValueError, match="layout must be one of"):
        RetrievalImageFolder(tmp_path, layout="flat")


def test_retrieval_set_builder_runs_as_a_module(tmp_path):
    """``python -m hcl_plugin.data.embedded.retrieval`` builds the class folders and says what to run next."""
    import subprocess
    import sys

    from tests.data_helpers import animals_or_skip

    animals_or_skip()
    out = subprocess.run([sys.executable, "-m", "hcl_plugin.data.embedded.retrieval", "--out", str(tmp_path),
                          "--per-class", "3"], capture_output=True, text=True, check=True).stdout
    root = tmp_path / "animal_mnist_3"
    assert sorted(len(list(d.glob("*.png"))) for d in root.iterdir() if d.is_dir()) == [3] * 10
    assert str(root) in out and "Next:" in out
    bad = subprocess.run([sys.executable, "-m", "hcl_plugin.data.embedded.retrieval", "--out", str(tmp_path),
                          "--per-class", "1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "per_class must be between 2 and 1000" in bad.stderr
