"""SceneObjectSampler: invariants (hypothesis), official HCL rules, too-few-boxes policies, counting."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hcl_plugin.data.boxes import box_area, box_contains, clip_boxes, union_box
from hcl_plugin.data.box_sampler import SceneObjectSampler, TooFewBoxesError


@st.composite
def image_and_boxes(draw):
    height = draw(st.integers(64, 900))
    width = draw(st.integers(64, 900))
    n = draw(st.integers(0, 12))
    boxes = []
    for _ in range(n):
        # Corners may fall outside the image: the sampler must clip them.
        x1 = draw(st.floats(-0.2, 1.0)) * width
        y1 = draw(st.floats(-0.2, 1.0)) * height
        boxes.append([x1, y1, x1 + draw(st.floats(0, 1.0)) * width, y1 + draw(st.floats(0, 1.0)) * height])
    return (height, width), boxes


def _inside(box, size):
    height, width = size
    return bool(box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height)


@settings(max_examples=200, deadline=None)
@given(data=image_and_boxes(), seed=st.integers(0, 2**31), policy=st.sampled_from(["resample", "random_crops"]))
def test_sampler_invariants(data, seed, policy):
    size, boxes = data
    sampler = SceneObjectSampler(too_few_boxes=policy)
    sample = sampler.sample(size, boxes, torch.Generator().manual_seed(seed))
    usable, _ = SceneObjectSampler().usable_boxes(size, boxes)
    if usable.shape[0] < 2:
        if policy == "resample":
            assert sample is None and sampler.stats["resampled"] == 1
            return
        assert sample.source == "random_crops"
    else:
        assert sample.source == "boxes"
        # size rule: the object is a usable box of at least 56 x 56 px area
        assert float(box_area(sample.object_box[None])) >= 56 * 56
        clipped, _ = clip_boxes(torch.as_tensor(boxes, dtype=torch.float32), size)
        assert torch.equal(sample.object_box, clipped[sample.object_index])
        # scene = union of the chosen boxes, which include the object; 2-5 random boxes + the object
        assert sample.object_index in sample.scene_box_indices.tolist()
        assert torch.equal(sample.scene_box, union_box(clipped[sample.scene_box_indices]))
        assert 2 <= sample.scene_box_indices.numel() <= 6
    assert bool(box_contains(sample.scene_box, sample.object_box))
    assert bool(box_contains(sample.expanded_object_box, sample.object_box))
    for box in (sample.object_box, sample.expanded_object_box, sample.scene_box):
        assert _inside(box, size)
        assert box[2] > box[0] and box[3] > box[1]
    again = SceneObjectSampler(too_few_boxes=policy).sample(size, boxes, torch.Generator().manual_seed(seed))
    for field in ("object_box", "expanded_object_box", "scene_box", "scene_box_indices"):
        assert torch.equal(getattr(sample, field), getattr(again, field))


def test_scene_box_count_follows_official_formula():
    # official: k = randint(2, max(min(n, 6), 3)), upper bound exclusive, then + object if missing
    boxes = [[i * 60, 0, i * 60 + 58, 58] for i in range(10)]
    sampler = SceneObjectSampler()
    drawn = Counter()
    for seed in range(400):
        s = sampler.sample((100, 700), boxes, torch.Generator().manual_seed(seed))
        drawn[s.scene_box_indices.numel()] += 1
    assert set(drawn) == {2, 3, 4, 5, 6}  # 2-5 random boxes, +1 when the object was not among them
    two_boxes = [[0, 0, 60, 60], [100, 100, 200, 200]]
    for seed in range(20):
        s = sampler.sample((300, 300), two_boxes, torch.Generator().manual_seed(seed))
        assert sorted(s.scene_box_indices.tolist()) == [0, 1]
        assert s.scene_box.tolist() == [0.0, 0.0, 200.0, 200.0]


def test_small_boxes_dropped_and_objects_expanded_towards_256():
    boxes = [[0, 0, 55, 56], [10, 10, 70, 70], [300, 300, 400, 400]]  # first is under 56 x 56 in area
    sampler = SceneObjectSampler()
    for seed in range(30):
        s = sampler.sample((600, 600), boxes, torch.Generator().manual_seed(seed))
        assert s.object_index in (1, 2)
        assert 0 not in s.scene_box_indices.tolist()
    assert sampler.stats["boxes_too_small"] == 30
    sizes = [
        float(box_area(sampler.sample((600, 600), boxes, torch.Generator().manual_seed(i)).expanded_object_box[None]))
        for i in range(30)
    ]
    assert max(sizes) > 100 * 100


def test_boxes_outside_are_clipped_and_degenerate_dropped_and_counted():
    boxes = [[-20, -20, 100, 100], [50, 50, 250, 250], [10, 10, 10, 90]]
    sampler = SceneObjectSampler()
    s = sampler.sample((200, 200), boxes, torch.Generator().manual_seed(0))
    assert sampler.stats["boxes_clipped"] == 2
    assert sampler.stats["boxes_degenerate"] == 1
    assert _inside(s.scene_box, (200, 200))


def test_policy_raise_names_the_image():
    sampler = SceneObjectSampler(too_few_boxes="raise")
    with pytest.raises(TooFewBoxesError, match="img_42.jpg: 1 usable box"):
        sampler.sample((300, 300), [[0, 0, 100, 100]], torch.Generator(), image_name="img_42.jpg")


def test_policy_proposals_uses_them_then_falls_back_to_random_crops():
    sampler = SceneObjectSampler(too_few_boxes="proposals")
    g = torch.Generator().manual_seed(0)
    proposals = [[0, 0, 100, 100], [120, 120, 250, 250]]
    s = sampler.sample((300, 300), [], g, proposals=proposals)
    assert s.source == "proposals" and s.object_index in (0, 1)
    s = sampler.sample((300, 300), [], g, proposals=[[0, 0, 10, 10]])
    assert s.source == "random_crops"
    assert sampler.stats["sampled_from_proposals"] == 1
    assert sampler.stats["proposals_too_few"] == 1
    assert sampler.stats["sampled_random_crops"] == 1
    assert sampler.stats["too_few_boxes"] == 2
    with pytest.raises(TooFewBoxesError, match="no proposals"):
        sampler.sample((300, 300), [], g)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"too_few_boxes": "skip"}, "too_few_boxes must be one of"),
        ({"min_boxes": 0}, "min_boxes"),
        ({"scene_boxes": (3, 2)}, "scene_boxes"),
        ({"min_box_area": -1}, "min_box_area"),
        ({"expand_to": -5}, "expand_to"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SceneObjectSampler(**kwargs)


def test_bad_image_size_names_the_image():
    with pytest.raises(ValueError, match="a.jpg: image_size must be positive"):
        SceneObjectSampler().sample((0, 10), [], torch.Generator(), image_name="a.jpg")
