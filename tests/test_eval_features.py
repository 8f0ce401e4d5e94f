"""Scene sets and crop embeddings: split resolution, missing annotations, per-object flags aligned with
the boxes read, exact crops, batch-size invariance of the extraction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests.data_helpers import annotation, write_coco, write_image
from hcl_plugin.data.readers import AnnotationError
from hcl_plugin.eval.checkpoint import EuclideanProjectionHead, EvalModel
from hcl_plugin.eval.features import SceneCropDataset, crop_pixels, extract_features, preprocess_crop
from hcl_plugin.eval.scenes import AnnotationsNotFoundError, load_split, read_scene_set, resolve_annotation_file
from hcl_plugin.modules import PoincareProjectionHead

CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]


def _ooc(ann, flag):
    return {**ann, "out_of_context": flag}


@pytest.fixture
def folder(tmp_path):
    """Three 40 x 30 images; image 2 has a crowd box and a degenerate box between its real ones."""
    for i in (1, 2, 3):
        write_image(tmp_path / "images" / f"{i}.jpg", size=(40, 30), seed=i)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 40, "height": 30} for i in (1, 2, 3)]
    images[0]["num_objects"] = 2
    anns = [
        _ooc(annotation(1, 1, [0, 0, 20, 15], category_id=3), False),
        _ooc(annotation(2, 1, [20, 15, 20, 15], category_id=7), True),
        _ooc(annotation(3, 2, [5, 5, 10, 10], category_id=7), False),
        _ooc(annotation(4, 2, [0, 0, 40, 30], iscrowd=1, category_id=3), True),
        _ooc(annotation(5, 2, [10, 10, 0, 5], category_id=3), True),  # zero width: dropped by read_coco
        _ooc(annotation(6, 2, [30, 0, 10, 30], category_id=3), True),
    ]
    write_coco(tmp_path / "annotations.json", images, anns, CATEGORIES)
    write_coco(tmp_path / "annotations_val.json", images[:2], [a for a in anns if a["image_id"] <= 2], CATEGORIES)
    return tmp_path


def test_resolve_split_files(folder):
    assert resolve_annotation_file(folder).endswith("annotations_val.json")
    assert resolve_annotation_file(folder, "all").endswith("annotations.json")
    with pytest.raises(AnnotationsNotFoundError, match="annotations_train.json"):
        resolve_annotation_file(folder, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        resolve_annotation_file(folder, "test")


def test_folder_without_annotations_names_the_paths(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(AnnotationsNotFoundError) as info:
        load_split(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "annotations_val.json") in message and str(tmp_path / "annotations.json") in message
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError, match="data folder .*does_not_exist.* does not exist"):
        load_split(tmp_path / "does_not_exist")


def test_out_of_context_flags_follow_the_kept_boxes(folder):
    scenes = load_split(folder, "all")
    assert scenes.has_out_of_context and len(scenes) == 3 and scenes.num_objects_total == 4
    first, second, third = scenes.scenes
    assert first.out_of_context.tolist() == [False, True] and first.category_ids.tolist() == [3, 7]
    # image 2: crowd box 4 skipped and zero-width box 5 dropped: boxes 3 and 6 remain, in file order
    assert second.out_of_context.tolist() == [False, True] and second.category_ids.tolist() == [7, 3]
    assert torch.allclose(second.boxes, torch.tensor([[5 / 40, 5 / 30, 15 / 40, 15 / 30], [30 / 40, 0, 1, 1]]))
    assert third.boxes.shape == (0, 4) and third.out_of_context.numel() == 0
    assert [s.num_objects for s in scenes.scenes] == [2, 2, 0]  # the num_objects field, else the box count
    assert [s.num_labels for s in scenes.scenes] == [2, 2, 0]
    assert scenes.categories == {3: "cat", 7: "dog"}
    assert len(load_split(folder, "all", max_images=2)) == 2


def test_partial_out_of_context_field_is_an_error(folder):
    import json

    document = json.loads((folder / "annotations.json").read_text())
    del document["annotations"][0]["out_of_context"]
    (folder / "partial.json").write_text(json.dumps(document))
    with pytest.raises(AnnotationError, match="partial.json: 5 of 6 annotations have 'out_of_context'"):
        read_scene_set(folder / "partial.json", folder / "images")


def test_files_without_the_flag_have_none(folder):
    import json

    document = json.loads((folder / "annotations.json").read_text())
    for ann in document["annotations"]:
        del ann["out_of_context"]
    (folder / "plain.json").write_text(json.dumps(document))
    scenes = read_scene_set(folder / "plain.json", folder / "images")
    assert not scenes.has_out_of_context and scenes.scenes[0].out_of_context is None


def test_crop_pixels_rounds_outwards_and_stays_inside():
    assert crop_pixels(torch.tensor([0.25, 0.25, 0.75, 0.5]), 8, 4) == (2, 1, 6, 2)
    assert crop_pixels(torch.tensor([0.26, 0.3, 0.74, 0.45]), 8, 4) == (2, 1, 6, 2)
    assert crop_pixels(torch.tensor([0.5, 0.5, 0.5, 0.5]), 8, 4) == (4, 2, 5, 3)  # at least one pixel
    assert crop_pixels(torch.tensor([0.99, 0.99, 1.0, 1.0]), 8, 4) == (7, 3, 8, 4)
    assert crop_pixels(torch.tensor([0.0, 0.0, 1.0, 1.0]), 8, 4) == (0, 0, 8, 4)


def test_preprocess_crop_takes_the_box_region():
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:] = (0, 0, 255)
    image = Image.fromarray(array)
    left = preprocess_crop(image, 8, torch.tensor([0.0, 0.0, 0.5, 1.0]), mean=(0, 0, 0), std=(1, 1, 1))
    assert left.shape == (3, 8, 8)
    assert torch.allclose(left[0], torch.ones(8, 8)) and torch.allclose(left[2], torch.zeros(8, 8))
    whole = preprocess_crop(image, 8)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(whole[:, 0, 0], (torch.tensor([1.0, 0, 0]) - mean) / std, atol=1e-5)
    assert torch.allclose(whole[:, 0, -1], (torch.tensor([0, 0, 1.0]) - mean) / std, atol=1e-5)


def test_crop_dataset_items(folder):
    scenes = load_split(folder, "all")
    dataset = SceneCropDataset(scenes, 16)
    assert dataset.num_crops() == 3 * 2 + 4
    crops, kinds, objects = dataset[1]
    assert crops.shape == (4, 3, 16, 16) and kinds.tolist() == [0, 1, 2, 2] and objects.tolist() == [-1, -1, 0, 1]
    image = Image.open(scenes.scenes[1].path).convert("RGB")
    assert torch.allclose(crops[2], preprocess_crop(image, 16, scenes.scenes[1].boxes[0]))
    # scene crop = union of the boxes; a box-less image's scene crop is the whole image
    union = torch.tensor([5 / 40, 0.0, 1.0, 1.0])
    assert torch.allclose(crops[1], preprocess_crop(image, 16, union))
    crops3, _, _ = dataset[2]
    assert torch.allclose(crops3[0], crops3[1])
    with pytest.raises(ValueError, match="unknown crop kinds"):
        SceneCropDataset(scenes, 16, ("image", "patch"))


def _tiny_model(seed: int, c: float = 0.2) -> EvalModel:
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return EvalModel(backbone, EuclideanProjectionHead(6, 8, 4),
                     PoincareProjectionHead(6, 8, 5, c=c, feature_scale=0.5), c=c, image_size=16)


def test_extraction_is_batch_size_invariant_and_aligned(folder):
    scenes = load_split(folder, "all")
    model = _tiny_model(0).train()
    one = extract_features(model, scenes, batch_size=1, progress=False)
    many = extract_features(model, scenes, batch_size=3, progress=False)
    assert model.training  # restored
    for name in ("image", "scene", "objects"):
        a, b = getattr(one, name), getattr(many, name)
        for field in ("backbone", "euclidean", "hyperbolic"):
            assert torch.allclose(getattr(a, field), getattr(b, field), atol=1e-6), (name, field)
    assert len(one.image) == 3 and len(one.scene) == 3 and len(one.objects) == 4
    assert one.object_scene.tolist() == [0, 0, 1, 1] and one.object_box.tolist() == [0, 1, 0, 1]
    assert one.object_category.tolist() == [3, 7, 7, 3]
    assert one.object_out_of_context.tolist() == [False, True, False, True]
    # rows are the embeddings of the crops themselves
    crops, _, _ = SceneCropDataset(scenes, 16)[1]
    with torch.no_grad():
        direct = model.eval().embed(crops)
    assert torch.allclose(one.image.hyperbolic[1], direct["hyperbolic"][0], atol=1e-6)
    assert torch.allclose(one.objects.backbone[3], direct["backbone"][3], atol=1e-6)
    workers = extract_features(model, scenes, batch_size=2, num_workers=1, progress=False)
    assert torch.allclose(workers.objects.hyperbolic, one.objects.hyperbolic, atol=1e-6)
    only_images = extract_features(model, scenes, kinds=("image",), progress=False)
    assert only_images.objects is None and only_images.scene is None and only_images.object_scene.numel() == 0
    assert torch.allclose(only_images.image.backbone, one.image.backbone, atol=1e-6)


def test_extraction_progress_bar(folder, capsys):
    extract_features(_tiny_model(1), load_split(folder, "all"), batch_size=4, progress=True, desc="crops here")
    err = capsys.readouterr().err
    assert "crops here" in err and "10/10" in err
