"""Box utilities: conversions, clipping, filters, union, random expansion, the crop pixel window."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors

from hcl_plugin.data.boxes import (
    as_boxes,
    box_contains,
    box_to_pixel_window,
    clip_boxes,
    degenerate_mask,
    denormalize_boxes,
    expand_box_randomly,
    filter_by_min_area,
    normalize_boxes,
    to_bounding_boxes,
    union_box,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def test_xywh_xyxy_round_trip():
    xywh = torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 1.0, 2.0]])
    xyxy = xywh_to_xyxy(xywh)
    assert torch.equal(xyxy, torch.tensor([[10.0, 20.0, 40.0, 60.0], [0.0, 0.0, 1.0, 2.0]]))
    assert torch.equal(xyxy_to_xywh(xyxy), xywh)


def test_normalize_round_trip_uses_height_width_order():
    boxes = torch.tensor([[0.0, 0.0, 640.0, 480.0], [64.0, 48.0, 128.0, 96.0]])
    norm = normalize_boxes(boxes, (480, 640))
    assert torch.allclose(norm, torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.1, 0.1, 0.2, 0.2]]))
    assert torch.allclose(denormalize_boxes(norm, (480, 640)), boxes)


def test_clip_counts_only_boxes_that_changed():
    boxes = torch.tensor([[-5.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [90.0, 40.0, 120.0, 60.0]])
    clipped, changed = clip_boxes(boxes, (50, 100))
    assert changed == 2
    assert torch.equal(clipped, torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [90.0, 40.0, 100.0, 50.0]]))


def test_degenerate_and_min_area_filters():
    boxes = torch.tensor([[0.0, 0.0, 56.0, 56.0], [0.0, 0.0, 55.0, 56.0], [10.0, 10.0, 10.0, 80.0], [5.0, 5.0, 2.0, 90.0]])
    assert degenerate_mask(boxes).tolist() == [False, False, True, True]
    assert filter_by_min_area(boxes, 56 * 56).tolist() == [0]
    assert filter_by_min_area(torch.zeros(0, 4), 1).numel() == 0


def test_union_and_contains():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0], [5.0, 25.0, 15.0, 60.0]])
    union = union_box(boxes)
    assert union.tolist() == [5.0, 20.0, 30.0, 60.0]
    assert box_contains(union.expand(2, 4), boxes).all()
    with pytest.raises(ValueError, match="at least one box"):
        union_box(torch.zeros(0, 4))


def test_as_boxes_rejects_bad_shapes_and_names_the_input():
    assert as_boxes([]).shape == (0, 4)
    assert as_boxes([1, 2, 3, 4]).shape == (1, 4)
    with pytest.raises(ValueError, match="my_boxes must have shape"):
        as_boxes([[1, 2, 3]], "my_boxes")
    with pytest.raises(ValueError, match="non-finite coordinate at index 1"):
        as_boxes([[0, 0, 1, 1], [0, float("nan"), 1, 1]])


def test_to_bounding_boxes_is_a_tv_tensor():
    boxes = to_bounding_boxes([[0, 0, 5, 5]], (10, 20))
    assert isinstance(boxes, tv_tensors.BoundingBoxes)
    assert tuple(boxes.canvas_size) == (10, 20)


@settings(max_examples=150, deadline=None)
@given(
    height=st.integers(32, 600),
    width=st.integers(32, 600),
    fx=st.floats(0, 1),
    fy=st.floats(0, 1),
    fw=st.floats(0.01, 1),
    fh=st.floats(0.01, 1),
    target=st.sampled_from([0, 64, 256, 1000]),
    seed=st.integers(0, 2**31),
)
def test_expand_box_randomly_contains_box_and_stays_inside(height, width, fx, fy, fw, fh, target, seed):
    x1, y1 = int(fx * (width - 1)), int(fy * (height - 1))
    x2 = min(width, x1 + max(1, int(fw * width)))
    y2 = min(height, y1 + max(1, int(fh * height)))
    box = torch.tensor([x1, y1, x2, y2], dtype=torch.float32)
    out = expand_box_randomly(box, (height, width), target, torch.Generator().manual_seed(seed))
    assert bool(box_contains(out, box))
    assert out[0] >= 0 and out[1] >= 0 and out[2] <= width and out[3] <= height
    window_x, window_y = max(0, target - (x2 - x1)), max(0, target - (y2 - y1))
    assert (box[0] - out[0]) <= window_x and (out[2] - box[2]) <= window_x
    assert (box[1] - out[1]) <= window_y and (out[3] - box[3]) <= window_y
    again = expand_box_randomly(box, (height, width), target, torch.Generator().manual_seed(seed))
    assert torch.equal(out, again)


def test_expand_grows_small_boxes_on_average_and_keeps_large_ones():
    g = torch.Generator().manual_seed(0)
    small = torch.tensor([100.0, 100.0, 140.0, 140.0])
    grown = torch.stack([expand_box_randomly(small, (1000, 1000), 256, g) for _ in range(50)])
    assert float((grown[:, 2] - grown[:, 0]).mean()) > 100
    large = torch.tensor([0.0, 0.0, 300.0, 300.0])
    assert torch.equal(expand_box_randomly(large, (1000, 1000), 256, g), large)


@pytest.mark.parametrize(
    ("box", "window"),
    [
        ([2.5, 3.2, 4.1, 5.9], (2, 3, 5, 6)),  # fractional: start floored, end ceiled
        ([2.0, 3.0, 5.0, 6.0], (2, 3, 5, 6)),  # integral: exactly the box
        ([0.3 * 10, 0.0, 0.7 * 10, 1.0], (3, 0, 7, 1)),  # float noise (3.0000000000000004) adds no pixel
        ([0.0, 0.0, 10.0, 8.0], (0, 0, 10, 8)),  # the whole image
        ([-5.0, -5.0, 50.0, 50.0], (0, 0, 10, 8)),  # reaching outside: cut at the border
        ([9.5, 7.5, 10.0, 8.0], (9, 7, 10, 8)),  # on the right/bottom border
        ([10.0, 8.0, 12.0, 9.0], (9, 7, 10, 8)),  # past the border: the last pixel
        ([-3.0, -3.0, -1.0, -1.0], (0, 0, 1, 1)),  # before the border: the first pixel
        ([3.2, 3.2, 3.4, 3.4], (3, 3, 4, 4)),  # sub-pixel: the pixel it lies in
        ([3.9, 3.9, 4.1, 4.1], (3, 3, 5, 5)),  # sub-pixel across a pixel edge: both pixels
        ([4.0, 4.0, 4.0, 4.0], (4, 4, 5, 5)),  # zero size: one pixel
        ([9.9, 7.9, 9.95, 7.99], (9, 7, 10, 8)),  # sub-pixel in the last pixel
    ],
)
def test_box_to_pixel_window_edge_cases(box, window):
    assert box_to_pixel_window(box, 10, 8) == window
    assert box_to_pixel_window(torch.tensor(box), 10, 8) == window
    assert all(type(v) is int for v in box_to_pixel_window(box, 10, 8))


@settings(max_examples=200, deadline=None)
@given(
    coords=st.lists(st.floats(-20, 60, allow_nan=False), min_size=4, max_size=4),
    width=st.integers(1, 40),
    height=st.integers(1, 40),
)
def test_box_to_pixel_window_keeps_the_box_and_stays_in_the_image(coords, width, height):
    x1, y1, x2, y2 = coords
    left, top, right, bottom = box_to_pixel_window(coords, width, height)
    assert 0 <= left < right <= width and 0 <= top < bottom <= height  # inside, non-empty
    # the part of the box inside the image is inside the window (up to the float tolerance)
    if min(x2, width) > max(x1, 0) and min(y2, height) > max(y1, 0):
        assert left <= max(x1, 0) + 1e-6 and right >= min(x2, width) - 1e-6
        assert top <= max(y1, 0) + 1e-6 and bottom >= min(y2, height) - 1e-6
        # and it is the smallest such window: one pixel less on any side would cut the box
        assert left > max(x1, 0) - 1 - 1e-6 and right < min(x2, width) + 1 + 1e-6


def test_box_to_pixel_window_rejects_bad_input():
    with pytest.raises(ValueError, match="4 coordinates"):
        box_to_pixel_window([0, 0, 1], 10, 10)
    with pytest.raises(ValueError, match="non-finite"):
        box_to_pixel_window([0, 0, float("nan"), 1], 10, 10)
    with pytest.raises(ValueError, match="at least 1 x 1"):
        box_to_pixel_window([0, 0, 1, 1], 0, 10)
    with pytest.raises(ValueError, match="tolerance"):
        box_to_pixel_window([0, 0, 1, 1], 10, 10, tolerance=-1)
