"""HCLSceneDataset: views per item, bad images (raise naming the file / skip and count), policies, seeding."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from tests.data_helpers import annotation, write_coco, write_image
from hcl_plugin.data.readers import read_coco, read_proposal_boxes
from hcl_plugin.data.box_sampler import SceneObjectSampler
from hcl_plugin.data.scene_dataset import HCLSceneDataset, ImageLoadError, load_rgb_image
from hcl_plugin.data.views import VIEW_KEYS, HCLViews


@pytest.fixture()
def scenes(tmp_path):
    """Three 120 x 100 images: 1 and 3 have two boxes each, 2 has none."""
    root = tmp_path / "images"
    for i in (1, 2, 3):
        write_image(root / f"{i}.jpg", (120, 100), seed=i)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 120, "height": 100} for i in (1, 2, 3)]
    anns = [annotation(1, 1, [0, 0, 60, 60]), annotation(2, 1, [50, 30, 70, 70]),
            annotation(3, 3, [10, 10, 60, 60]), annotation(4, 3, [40, 20, 80, 80])]
    return read_coco(write_coco(tmp_path / "ann.json", images, anns), root), root


def _views(**sampler_kwargs):
    return HCLViews(SceneObjectSampler(min_box_area=32 * 32, expand_to=64, **sampler_kwargs),
                    euclidean_size=32, hyperbolic_size=24)


def test_items_hold_four_views_and_batch_in_a_dataloader(scenes):
    records, _ = scenes
    dataset = HCLSceneDataset(records, _views(), seed=0)
    item = dataset[0]
    assert item["object_view_1"].shape == (3, 32, 32) and item["hyperbolic_scene"].shape == (3, 24, 24)
    assert item["image_id"] == 1 and item["index"] == 0
    batch = next(iter(DataLoader(dataset, batch_size=3, shuffle=False, num_workers=0)))
    for key in VIEW_KEYS[:2]:
        assert batch[key].shape == (3, 3, 32, 32)
    assert batch["scene_box"].shape == (3, 4)


def test_image_without_boxes_is_resampled_and_counted(scenes):
    records, _ = scenes
    dataset = HCLSceneDataset(records, _views(), seed=0)
    item = dataset[1]  # image 2 has no boxes
    assert item["index"] in (0, 2)
    assert dataset.views.sampler.stats["resampled"] >= 1


def test_image_without_boxes_random_crops_policy(scenes):
    records, _ = scenes
    dataset = HCLSceneDataset(records, _views(too_few_boxes="random_crops"), seed=0)
    item = dataset[1]
    assert item["index"] == 1 and item["source"] == "random_crops"


def test_image_without_boxes_proposals_policy(scenes, tmp_path):
    records, root = scenes
    proposals_file = write_coco(
        tmp_path / "proposals.json",
        [{"id": 2, "file_name": "2.jpg", "width": 120, "height": 100}],
        [dict(annotation(1, 2, [0, 0, 60, 50]), score=1.0), dict(annotation(2, 2, [50, 40, 70, 60]), score=0.5)],
    )
    dataset = HCLSceneDataset(records, _views(too_few_boxes="proposals"),
                              proposals=read_proposal_boxes(proposals_file, root), seed=0)
    item = dataset[1]
    assert item["index"] == 1 and item["source"] == "proposals"


def test_seeded_dataset_repeats_box_draws(scenes):
    records, _ = scenes
    first = HCLSceneDataset(records, _views(), seed=5)[2]
    second = HCLSceneDataset(records, _views(), seed=5)[2]
    assert torch.equal(first["scene_box"], second["scene_box"])
    assert torch.equal(first["expanded_object_box"], second["expanded_object_box"])


def test_corrupt_image_raises_naming_the_file_or_is_skipped(scenes):
    records, root = scenes
    (root / "3.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageLoadError, match="3.jpg"):
        HCLSceneDataset(records, _views(), seed=0)[2]
    dataset = HCLSceneDataset(records, _views(), on_bad_image="skip", seed=0)
    assert dataset[2]["index"] == 0
    assert dataset.stats["bad_images_skipped"] >= 1


def test_missing_image_file_named(tmp_path):
    with pytest.raises(ImageLoadError, match="gone.jpg' does not exist"):
        load_rgb_image(str(tmp_path / "gone.jpg"))


def test_no_usable_image_at_all_stops_with_counts(scenes):
    records, _ = scenes
    dataset = HCLSceneDataset([records.records[1]], _views(), seed=0, max_draws=5)
    with pytest.raises(RuntimeError, match="no usable image after 5 draws"):
        dataset[0]


def test_argument_checks(scenes):
    records, _ = scenes
    with pytest.raises(ValueError, match="on_bad_image"):
        HCLSceneDataset(records, on_bad_image="ignore")
    with pytest.raises(ValueError, match="at least one record"):
        HCLSceneDataset([])
