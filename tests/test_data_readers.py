"""COCO / OpenImages / proposals readers: boxes, labels, counts, and errors that name the bad input."""

from __future__ import annotations

import json

import pytest
import torch

from tests.data_helpers import annotation, write_coco, write_image
from hcl_plugin.data.readers import AnnotationError, read_coco, read_openimages, read_proposal_boxes


@pytest.fixture()
def coco_files(tmp_path):
    root = tmp_path / "train2017"
    for i in (1, 2, 3):
        write_image(root / f"{i:012d}.jpg", (100, 50), seed=i)
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 100, "height": 50, "context": "x"} for i in (1, 2, 3)]
    anns = [
        annotation(10, 1, [10, 5, 20, 10]),
        annotation(11, 1, [90, 40, 30, 30]),  # runs past the right/bottom edge: clipped
        annotation(12, 1, [5, 5, 0, 10]),  # zero width: dropped
        annotation(13, 2, [0, 0, 50, 50], iscrowd=1),  # crowd: skipped by default
        annotation(14, 2, [0, 0, 40, 20], category_id=7),
    ]
    categories = [{"id": 1, "name": "thing"}, {"id": 7, "name": "seven"}]  # every category_id used is declared
    return write_coco(tmp_path / "instances_train2017.json", images, anns, categories), root


def test_coco_boxes_labels_and_counts(coco_files):
    ann_file, root = coco_files
    result = read_coco(ann_file, root)
    assert [r.image_id for r in result.records] == [1, 2, 3]
    first = result.records[0]
    assert first.path == str(root / "000000000001.jpg")
    assert torch.allclose(first.pixel_boxes(50, 100), torch.tensor([[10.0, 5.0, 30.0, 15.0], [90.0, 40.0, 100.0, 50.0]]))
    assert result.records[1].labels.tolist() == [7]
    assert result.records[2].boxes.shape == (0, 4)
    assert result.records[0].extra == {"context": "x"}
    assert result.stats["boxes_clipped"] == 1
    assert result.stats["boxes_degenerate"] == 1
    assert result.stats["crowd_skipped"] == 1
    assert result.stats["images_without_boxes"] == 1
    with_crowd = read_coco(ann_file, root, include_crowd=True)
    assert with_crowd.records[1].boxes.shape == (2, 4)


def test_coco_images_without_boxes_can_be_dropped(coco_files):
    ann_file, root = coco_files
    result = read_coco(ann_file, root, keep_images_without_boxes=False)
    assert [r.image_id for r in result.records] == [1, 2]
    assert result.stats["images_dropped_without_boxes"] == 1


def test_coco_missing_image_raises_with_file_name_or_is_skipped(coco_files):
    ann_file, root = coco_files
    (root / "000000000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000000000002.jpg"):
        read_coco(ann_file, root)
    result = read_coco(ann_file, root, on_missing_image="skip")
    assert [r.image_id for r in result.records] == [1, 3]
    assert result.stats["images_missing_skipped"] == 1


def test_coco_annotation_pointing_to_missing_image_names_the_id(tmp_path):
    path = write_coco(tmp_path / "a.json", [{"id": 1, "file_name": "x.jpg", "width": 9, "height": 9}],
                      [annotation(77, 5, [0, 0, 1, 1])])
    with pytest.raises(AnnotationError, match="annotation 77 points to image_id 5"):
        read_coco(path, tmp_path)


@pytest.mark.parametrize(
    "document, message",
    [
        ({"annotations": []}, "missing key 'images'"),
        ({"images": [{"file_name": "x.jpg"}]}, r"images\[0\] has no key 'id'"),
        ({"images": [{"id": 1, "file_name": "x.jpg"}], "annotations": [{"id": 3, "image_id": 1}]},
         "annotation 3 has no key 'bbox'"),
        ({"images": [{"id": 1, "file_name": "x.jpg"}], "annotations": [{"id": 4, "image_id": 1, "bbox": [1, 2]}]},
         "annotation 4 has bbox"),
        ([], "expected a COCO dict"),
    ],
)
def test_coco_malformed_files_name_file_and_key(tmp_path, document, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(AnnotationError, match=message) as info:
        read_coco(path, tmp_path)
    assert "bad.json" in str(info.value)


def test_coco_invalid_json_names_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(AnnotationError, match="broken.json: not valid JSON"):
        read_coco(path, tmp_path)


OPENIMAGES_HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside\n"


def test_openimages_csv(tmp_path):
    root = tmp_path / "train"
    write_image(root / "000002b66c9c498e.jpg", (80, 40))
    write_image(root / "000002b97e5471a0.jpg", (80, 40))
    csv_path = tmp_path / "oidv6-train-annotations-bbox.csv"
    csv_path.write_text(
        OPENIMAGES_HEADER
        + "000002b66c9c498e,xclick,/m/01g317,1,0.1,0.5,0.2,0.6,0,1,0,0,0\n"
        + "000002b66c9c498e,xclick,/m/0284d,1,0.4,1.2,0.0,0.5,0,0,1,0,0\n"
        + "000002b97e5471a0,xclick,/m/01g317,1,0.3,0.3,0.2,0.6,0,0,0,0,0\n"
    )
    result = read_openimages(csv_path, root)
    first = result.records[0]
    assert first.image_id == "000002b66c9c498e" and first.path == str(root / "000002b66c9c498e.jpg")
    assert torch.allclose(first.boxes, torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.4, 0.0, 1.0, 0.5]]))
    assert torch.allclose(first.pixel_boxes(40, 80)[0], torch.tensor([8.0, 8.0, 40.0, 24.0]))
    assert [result.label_names[i] for i in first.labels.tolist()] == ["/m/01g317", "/m/0284d"]
    assert result.stats["boxes_clipped"] == 1
    assert result.stats["boxes_degenerate"] == 1
    assert result.stats["images_without_boxes"] == 1
    assert read_openimages(csv_path, root, skip_group_boxes=True).stats["group_skipped"] == 1


def test_openimages_errors_name_file_column_line(tmp_path):
    bad_columns = tmp_path / "a.csv"
    bad_columns.write_text("ImageID,XMin,XMax\nabc,0,1\n")
    with pytest.raises(AnnotationError, match=r"a.csv: missing column\(s\) LabelName, YMin, YMax"):
        read_openimages(bad_columns, tmp_path)
    bad_value = tmp_path / "b.csv"
    bad_value.write_text(OPENIMAGES_HEADER + "img1,x,/m/1,1,0.1,zero,0.2,0.6,0,0,0,0,0\n")
    with pytest.raises(AnnotationError, match="b.csv: line 2 .*img1"):
        read_openimages(bad_value, tmp_path)
    missing = tmp_path / "c.csv"
    missing.write_text(OPENIMAGES_HEADER + "nothere,x,/m/1,1,0.1,0.5,0.2,0.6,0,0,0,0,0\n")
    with pytest.raises(FileNotFoundError, match="nothere.jpg"):
        read_openimages(missing, tmp_path)
    assert read_openimages(missing, tmp_path, on_missing_image="skip").stats["images_missing_skipped"] == 1


def test_proposal_boxes_ranked_by_score(tmp_path):
    write_image(tmp_path / "a.jpg", (100, 100))
    images = [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100},
              {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100}]
    anns = [dict(annotation(1, 1, [0, 0, 50, 50]), score=0.2), dict(annotation(2, 1, [10, 10, 80, 80]), score=0.9)]
    path = write_coco(tmp_path / "proposals.json", images, anns)
    boxes = read_proposal_boxes(path, tmp_path)
    assert torch.allclose(boxes[str(tmp_path / "a.jpg")], torch.tensor([[0.1, 0.1, 0.9, 0.9], [0.0, 0.0, 0.5, 0.5]]))
    assert boxes[str(tmp_path / "b.jpg")].shape == (0, 4)
    # the same file is a valid ground-truth substitute for read_coco
    assert read_coco(path, tmp_path, on_missing_image="skip").records[0].boxes.shape == (2, 4)
