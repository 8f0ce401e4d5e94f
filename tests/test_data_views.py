"""HCLViews / MoCoV2TwoViews: keys, shapes, sizes, boxes returned, input types."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hcl_plugin.data.box_sampler import SceneObjectSampler
from hcl_plugin.data.boxes import box_to_pixel_window
from hcl_plugin.data.views import BOX_KEYS, VIEW_KEYS, HCLViews, MoCoV2TwoViews, _crop

BOXES = [[10, 10, 80, 90], [100, 40, 190, 140], [30, 100, 120, 150]]


def _image(width: int = 200, height: int = 160) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_four_views_with_stable_keys_and_sizes():
    views = HCLViews(euclidean_size=48, hyperbolic_size=40)
    out = views(_image(), BOXES, generator=torch.Generator().manual_seed(0))
    assert set(VIEW_KEYS) | set(BOX_KEYS) | {"source"} == set(out)
    for key in VIEW_KEYS[:2]:
        assert out[key].shape == (3, 48, 48) and out[key].dtype == torch.float32
    for key in VIEW_KEYS[2:]:
        assert out[key].shape == (3, 40, 40) and out[key].dtype == torch.float32
    assert out["source"] == "boxes"
    # the two Euclidean views are independent augmentations of the same crop
    assert not torch.equal(out["object_view_1"], out["object_view_2"])


def test_boxes_returned_are_the_sampled_ones():
    sampler = SceneObjectSampler(min_box_area=0)
    views = HCLViews(sampler=sampler, euclidean_size=32, hyperbolic_size=32)
    sample = sampler.sample((160, 200), BOXES, torch.Generator().manual_seed(3))
    out = views.render(_image(), sample)
    for key in BOX_KEYS:
        assert torch.equal(out[key], getattr(sample, key))


def test_without_normalisation_values_are_in_unit_range():
    views = HCLViews(euclidean_size=32, hyperbolic_size=32, normalize=None)
    torch.manual_seed(0)
    out = views(_image(), BOXES)
    for key in VIEW_KEYS:
        assert 0.0 <= float(out[key].min()) and float(out[key].max()) <= 1.0


def test_accepts_uint8_tensor_and_grayscale_pil():
    views = HCLViews(euclidean_size=24, hyperbolic_size=24)
    tensor_image = torch.randint(0, 256, (3, 160, 200), dtype=torch.uint8)
    assert views(tensor_image, BOXES)["hyperbolic_scene"].shape == (3, 24, 24)
    gray = _image().convert("L")
    assert views(gray, BOXES)["object_view_1"].shape == (3, 24, 24)
    with pytest.raises(TypeError, match="PIL image or a"):
        views(np.zeros((10, 10, 3), dtype=np.uint8), BOXES)


def test_too_few_boxes_with_resample_policy_gives_none():
    assert HCLViews()(_image(), [[0, 0, 100, 100]]) is None


def test_invalid_sizes_rejected():
    with pytest.raises(ValueError, match="hyperbolic_size"):
        HCLViews(hyperbolic_size=0)


def test_moco_two_views():
    first, second = MoCoV2TwoViews(size=40)(_image())
    assert first.shape == second.shape == (3, 40, 40)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("crop_size", [(40, 30), (300, 260)])
def test_photometric_at_smaller_scale_matches_the_standard_order_on_flat_colour(crop_size):
    """Per-pixel colour steps commute with resizing: on a flat-colour crop both orders give the same view."""
    from torchvision.transforms import v2

    from hcl_plugin.data.views import ResizeWithPhotometric, _flip_and_tensor_steps, _photometric_steps

    image = Image.new("RGB", crop_size, (200, 90, 40))
    fast = ResizeWithPhotometric(64)
    standard = v2.Compose([v2.Resize((64, 64), antialias=True)] + _photometric_steps((0.1, 2.0)) + _flip_and_tensor_steps(
        ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))))
    for seed in range(20):
        torch.manual_seed(seed)
        a = fast(image)
        torch.manual_seed(seed)
        b = standard(image)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


CROP_BOXES = [
    [10.0, 10.0, 80.0, 90.0],  # integral
    [12.4, 7.6, 80.5, 90.5],  # fractional (.5 ends: rounding half to even would differ)
    [0.49, 0.51, 199.5, 159.49],  # near the borders
    [150.3, 120.7, 230.0, 200.0],  # reaching outside the image
    [50.2, 50.2, 50.4, 50.4],  # sub-pixel
]


@pytest.mark.parametrize("box", CROP_BOXES)
def test_lightly_and_mmselfsup_crop_the_same_pixels(box):
    """Both frameworks' crops of one box are the same pixel window (``box_to_pixel_window``)."""
    pytest.importorskip("mmselfsup", reason="the MMEngine side of the comparison needs MMSelfSup")
    from hcl_plugin.mmselfsup import transforms

    image = _image()
    array = np.asarray(image)
    left, top, right, bottom = box_to_pixel_window(box, image.width, image.height)
    lightly_crop = np.asarray(_crop(image, torch.tensor(box)))  # HCLViews (Lightly adapter)
    mm_crop = transforms.crop_box(array, np.asarray(box, dtype=np.float32))  # SceneObjectMultiView
    assert np.array_equal(lightly_crop, array[top:bottom, left:right])
    assert np.array_equal(mm_crop, array[top:bottom, left:right])
