"""Issue 12, data input: no silent wrong results, errors that name the input, one image loader.

Each test builds its own tiny files in ``tmp_path``.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hcl_plugin.data import image_io
from hcl_plugin.data.image_io import ImageLoadError, load_image_array, load_rgb_image, read_image_size
from hcl_plugin.data.proposals_file import images_from_coco
from hcl_plugin.data.readers import AnnotationError, read_coco, read_openimages, read_proposal_boxes
from tests.data_helpers import annotation, write_image

MMSELFSUP_REASON = (
    "mmselfsup (with mmcv and mmengine) is not installed here, so the MMEngine path "
    "(LoadSceneImageFromFile / SceneBoxDataset) cannot be built; `make venv` installs it"
)


# ----------------------------------------------------------------------------------- helpers


def _png_16bit(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA by the channel count), written without PIL."""
    pixels = pixels if pixels.ndim == 3 else pixels[..., None]
    height, width, channels = pixels.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def _gray3(values) -> np.ndarray:
    gray = np.asarray(values, dtype=np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def _coco(path: Path, images, annotations, categories=None) -> Path:
    document = {"images": images, "annotations": annotations,
                "categories": categories if categories is not None else [{"id": 1, "name": "thing"}]}
    path.write_text(json.dumps(document))
    return path


# ------------------------------------------------------------- item 1: duplicate image ids


def test_duplicate_image_ids_raise_naming_file_and_id(tmp_path):
    write_image(tmp_path / "a.jpg", (40, 30))
    write_image(tmp_path / "b.jpg", (40, 30))
    images = [{"id": 5, "file_name": "a.jpg", "width": 40, "height": 30},
              {"id": 5, "file_name": "b.jpg", "width": 40, "height": 30}]
    path = _coco(tmp_path / "dup.json", images, [annotation(1, 5, [0, 0, 10, 10])])
    with pytest.raises(AnnotationError, match=r"dup\.json: duplicate image id 5 \(images\[0\] and images\[1\]\)"):
        read_coco(path, tmp_path)
    with pytest.raises(AnnotationError, match=r"dup\.json: duplicate image id 5"):
        read_proposal_boxes(path, tmp_path)
    with pytest.raises(AnnotationError, match=r"dup\.json: duplicate image id 5"):
        images_from_coco(path)


def test_duplicate_annotation_ids_raise(tmp_path):
    write_image(tmp_path / "a.jpg", (40, 30))
    path = _coco(tmp_path / "dup.json", [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
                 [annotation(9, 1, [0, 0, 10, 10]), annotation(9, 1, [5, 5, 10, 10])])
    with pytest.raises(AnnotationError, match=r"dup\.json: duplicate annotation id 9 \(annotations\[0\] and annotations\[1\]\)"):
        read_coco(path, tmp_path)


def test_duplicate_category_ids_raise(tmp_path):
    write_image(tmp_path / "a.jpg", (40, 30))
    path = _coco(tmp_path / "dup.json", [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
                 [annotation(9, 1, [0, 0, 10, 10])],
                 categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}])
    with pytest.raises(AnnotationError, match=r"dup\.json: duplicate category id 1 \(categories\[0\] and categories\[1\]\)"):
        read_coco(path, tmp_path)


# ------------------------------------------------------------- item 2: one image loader


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 383, 511], [5000, 32896, 65279, 65535]], dtype=np.uint16)
    path = _png_16bit(tmp_path / "gray16.png", values)
    with Image.open(path) as image:
        assert image.mode == "I;16"
    expected = _gray3([[0, 1, 1, 2], [19, 128, 254, 255]])  # round(v / 257)
    assert np.array_equal(load_image_array(path), expected)
    assert np.array_equal(np.asarray(load_rgb_image(path)), expected)
    # the bug: PIL's convert("RGB") clips at 255, so almost everything became white
    with Image.open(path) as image:
        assert (np.asarray(image.convert("RGB")) == 255).mean() > 0.7


def test_16bit_mid_gray_is_not_white(tmp_path):
    path = _png_16bit(tmp_path / "mid.png", np.full((8, 8), 32896, dtype=np.uint16))
    assert np.array_equal(load_image_array(path), np.full((8, 8, 3), 128, dtype=np.uint8))


def test_16bit_colour_png_keeps_the_high_byte(tmp_path):
    values = np.array([[[0, 383, 511], [65535, 32896, 1000]]], dtype=np.uint16)
    path = _png_16bit(tmp_path / "rgb16.png", values)
    assert np.array_equal(load_image_array(path), np.array([[[0, 1, 1], [255, 128, 3]]], dtype=np.uint8))


def test_32bit_integer_image_is_read_as_16bit_range(tmp_path):
    path = tmp_path / "i32.tif"
    Image.fromarray(np.array([[0, 65535, 70000, -5, 32896]], dtype=np.int32), "I").save(path)
    with Image.open(path) as image:
        assert image.mode == "I"
    assert np.array_equal(load_image_array(path), _gray3([[0, 255, 255, 0, 128]]))


def test_grayscale_and_bilevel(tmp_path):
    Image.fromarray(np.array([[0, 37, 255]], dtype=np.uint8), "L").save(tmp_path / "l.png")
    assert np.array_equal(load_image_array(tmp_path / "l.png"), _gray3([[0, 37, 255]]))
    Image.fromarray(np.array([[0, 255, 0]], dtype=np.uint8)).convert("1").save(tmp_path / "b.png")
    with Image.open(tmp_path / "b.png") as image:
        assert image.mode == "1"
    assert np.array_equal(load_image_array(tmp_path / "b.png"), _gray3([[0, 255, 0]]))


def test_palette_with_and_without_transparency(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 0, 255, 10, 200, 30] + [0] * (256 * 3 - 9))
    image.putdata([0, 1, 2])
    image.save(tmp_path / "p.png")
    assert np.array_equal(load_image_array(tmp_path / "p.png"), np.array([[[255, 0, 0], [0, 0, 255], [10, 200, 30]]]))
    image.save(tmp_path / "p_index.png", transparency=1)  # entry 1 fully transparent
    assert np.array_equal(load_image_array(tmp_path / "p_index.png"),
                          np.array([[[255, 0, 0], [255, 255, 255], [10, 200, 30]]]))
    image.save(tmp_path / "p_alpha.png", transparency=bytes([255, 128, 0]))  # per-entry alpha
    with Image.open(tmp_path / "p_alpha.png") as opened:
        assert opened.mode == "P" and "transparency" in opened.info
    # blue at alpha 128 over white: round(0 * 128/255 + 127) = 127, round(255 * 128/255 + 127) = 255
    assert np.array_equal(load_image_array(tmp_path / "p_alpha.png"),
                          np.array([[[255, 0, 0], [127, 127, 255], [255, 255, 255]]]))


def test_alpha_is_composited_on_white(tmp_path):
    la = np.array([[[100, 0], [100, 255], [100, 128]]], dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert np.array_equal(load_image_array(tmp_path / "la.png"), _gray3([[255, 100, 177]]))
    rgba = np.array([[[10, 200, 30, 0], [10, 200, 30, 255], [10, 200, 30, 128], [0, 0, 0, 1]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    expected = np.array([[[255, 255, 255], [10, 200, 30], [132, 227, 142], [254, 254, 254]]], dtype=np.uint8)
    assert np.array_equal(load_image_array(tmp_path / "rgba.png"), expected)


def test_cmyk_uses_the_documented_formula(tmp_path):
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255], [100, 50, 25, 128]]], dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")  # lossless
    expected = np.array([[[255, 255, 255], [0, 255, 255], [0, 0, 0], [77, 102, 115]]], dtype=np.uint8)
    assert np.array_equal(load_image_array(tmp_path / "c.tif"), expected)


def test_rgb_jpeg_unchanged_and_float_images_refused(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    assert np.array_equal(load_image_array(tmp_path / "x.png"), pixels)
    Image.fromarray(np.zeros((2, 2), dtype=np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(ImageLoadError, match=r"f\.tif' has mode 'F'"):
        load_image_array(tmp_path / "f.tif")


@pytest.mark.parametrize("content, message", [
    (b"", "cannot decode image file .*empty.png"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "cannot decode image file .*empty.png"),
    (None, "image file .*empty.png' does not exist"),
])
def test_bad_image_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "empty.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=message):
        load_image_array(path)
    with pytest.raises(ImageLoadError, match=message):
        load_rgb_image(path)


def test_every_image_reader_of_the_package_is_the_one_loader():
    from hcl_plugin.data import proposals_file, scene_dataset
    from hcl_plugin.eval import features
    from hcl_plugin.uhml import image_folder

    assert scene_dataset.load_rgb_image is image_io.load_rgb_image
    assert features.load_rgb_image is image_io.load_rgb_image
    assert image_folder.load_rgb_image is image_io.load_rgb_image
    assert proposals_file.load_image_array is image_io.load_image_array
    assert image_folder.ImageReadError is ImageLoadError


def test_lightly_and_eval_paths_read_16bit_through_the_loader(tmp_path):
    from hcl_plugin.data.box_sampler import SceneObjectSampler
    from hcl_plugin.data.scene_dataset import HCLSceneDataset
    from hcl_plugin.data.views import HCLViews
    from hcl_plugin.eval import RetrievalImageFolder

    (tmp_path / "cls").mkdir()
    _png_16bit(tmp_path / "cls" / "a.png", np.full((64, 64), 32896, dtype=np.uint16))
    mid_gray = np.full((64, 64, 3), 128, dtype=np.uint8)
    assert np.array_equal(np.asarray(RetrievalImageFolder(tmp_path)[0][0]), mid_gray)

    seen = []

    class Recording(HCLViews):
        def render(self, image, sample):
            seen.append(np.asarray(image))
            return super().render(image, sample)

    records = read_coco(_coco(tmp_path / "ann.json", [{"id": 1, "file_name": "cls/a.png", "width": 64, "height": 64}],
                              []), tmp_path)
    views = Recording(SceneObjectSampler(min_box_area=16, too_few_boxes="random_crops"), euclidean_size=16,
                      hyperbolic_size=16)
    HCLSceneDataset(records, views, seed=0)[0]
    assert len(seen) == 1 and np.array_equal(seen[0], mid_gray)


def test_read_image_size_reads_the_header(tmp_path):
    write_image(tmp_path / "a.jpg", (40, 30))
    assert read_image_size(tmp_path / "a.jpg") == (40, 30)
    with pytest.raises(ImageLoadError, match=r"nothing\.jpg' does not exist"):
        read_image_size(tmp_path / "nothing.jpg")


# ------------------------------------------------------------- item 3: sizes that disagree


def test_annotation_size_that_disagrees_with_the_file_raises(tmp_path):
    write_image(tmp_path / "a.jpg", (100, 50))
    path = _coco(tmp_path / "ann.json", [{"id": 7, "file_name": "a.jpg", "width": 200, "height": 100}],
                 [annotation(1, 7, [10, 10, 50, 20])])
    with pytest.raises(AnnotationError, match=r"ann\.json: image 7 \(a\.jpg\) is 100x50 px in the file .*"
                                              r"but width x height = 200x100"):
        read_coco(path, tmp_path)


def test_size_check_reads_headers_only(tmp_path, monkeypatch):
    from PIL import ImageFile

    for i in (1, 2):
        write_image(tmp_path / f"{i}.jpg", (100, 50), seed=i)
    path = _coco(tmp_path / "ann.json", [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 50} for i in (1, 2)],
                 [annotation(1, 1, [10, 10, 50, 20])])
    decodes = []
    original = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decodes.append(self) or original(self))
    result = read_coco(path, tmp_path)
    assert decodes == []
    assert torch.allclose(result.records[0].pixel_boxes(50, 100), torch.tensor([[10.0, 10.0, 60.0, 30.0]]))


def test_unreadable_header_is_left_to_the_decoder(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"not an image")
    path = _coco(tmp_path / "ann.json", [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}], [])
    assert len(read_coco(path, tmp_path)) == 1  # HCLSceneDataset / the loader then names the file


# ------------------------------------------------------------- item 4: unknown category


def test_unknown_category_raises_naming_annotation_and_category(tmp_path):
    write_image(tmp_path / "a.jpg", (40, 30))
    path = _coco(tmp_path / "ann.json", [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
                 [annotation(5, 1, [0, 0, 10, 10], category_id=9)])
    with pytest.raises(AnnotationError, match=r"ann\.json: annotation 5 has category_id 9, which is not in 'categories'"):
        read_coco(path, tmp_path)
    no_categories = tmp_path / "nocat.json"
    no_categories.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
                                         "annotations": [annotation(5, 1, [0, 0, 10, 10])]}))
    with pytest.raises(AnnotationError, match=r"nocat\.json: annotation 5 has category_id 1, which is not in"):
        read_coco(no_categories, tmp_path)
    # proposals do not need categories
    assert read_proposal_boxes(path, tmp_path)[str(tmp_path / "a.jpg")].shape == (1, 4)


# ------------------------------------------------------------- item 5: malformed boxes


@pytest.mark.parametrize("bbox, message", [
    ("1,2,3,4", r"annotation 5 has bbox '1,2,3,4', need 4 numbers \[x, y, w, h\]"),
    ("1234", r"annotation 5 has bbox '1234', need 4 numbers \[x, y, w, h\]"),  # was: too many dimensions 'str'
    ([1, 2, 3], r"annotation 5 has bbox \[1, 2, 3\], need 4 numbers"),
    (None, r"annotation 5 has bbox None, need 4 numbers"),
    (["1", 2, 3, 4], r"annotation 5 has bbox \['1', 2, 3, 4\]: every coordinate must be a finite number"),
    ([True, 2, 3, 4], r"annotation 5 has bbox \[True, 2, 3, 4\]: every coordinate must be a finite number"),
    ([[1], 2, 3, 4], r"annotation 5 has bbox \[\[1\], 2, 3, 4\]: every coordinate must be a finite number"),
    ([float("nan"), 2, 3, 4], r"annotation 5 has bbox \[nan, 2, 3, 4\]: every coordinate must be a finite number"),
    ([0, 0, float("inf"), 4], r"annotation 5 has bbox \[0, 0, inf, 4\]: every coordinate must be a finite"),
    ([0, 0, 1e39, 4], r"annotation 5 has bbox \[0, 0, 1e\+39, 4\]: every coordinate must be a finite"),
    ([0, 0, -5, 3], r"annotation 5 has bbox \[0, 0, -5, 3\] with a negative width or height"),
])
def test_malformed_bbox_names_file_annotation_and_value(tmp_path, bbox, message):
    write_image(tmp_path / "a.jpg", (40, 30))
    ann = {"id": 5, "image_id": 1, "bbox": bbox, "category_id": 1, "iscrowd": 0}
    path = _coco(tmp_path / "ann.json", [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}], [ann])
    with pytest.raises(AnnotationError, match=r"ann\.json: " + message):
        read_coco(path, tmp_path)
    with pytest.raises(AnnotationError, match=r"ann\.json: " + message):
        read_proposal_boxes(path, tmp_path)


def test_valid_edge_boxes_keep_their_behaviour(tmp_path):
    write_image(tmp_path / "a.jpg", (40, 30))
    anns = [annotation(1, 1, [0, 0, 0, 10]),  # zero width: dropped, counted
            annotation(2, 1, [30, 20, 20, 20]),  # past the edge: clipped, counted
            annotation(3, 1, [-10, -10, 5, 5])]  # entirely outside: clipped to nothing, dropped
    result = read_coco(_coco(tmp_path / "ann.json", [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
                             anns), tmp_path)
    assert torch.allclose(result.records[0].pixel_boxes(30, 40), torch.tensor([[30.0, 20.0, 40.0, 30.0]]))
    assert result.stats["boxes_degenerate"] == 2 and result.stats["boxes_clipped"] == 2


@pytest.mark.parametrize("image, message", [
    ({"id": [1], "file_name": "a.jpg"}, r"images\[0\] has id \[1\]; need an integer or a string"),
    ({"id": 1, "file_name": 3}, r"image 1 \(images\[0\]\) has file_name 3; need a non-empty string"),
    ({"id": 1, "file_name": "a.jpg", "width": "40", "height": 30}, r"image 1 \(a\.jpg\) has width '40'; need a positive"),
    ({"id": 1, "file_name": "a.jpg", "width": 40, "height": -3}, r"image 1 \(a\.jpg\) has height -3; need a positive"),
])
def test_malformed_image_entries_name_the_entry(tmp_path, image, message):
    path = _coco(tmp_path / "ann.json", [image], [])
    with pytest.raises(AnnotationError, match=r"ann\.json: " + message):
        read_coco(path, tmp_path)


@pytest.mark.parametrize("field, value, message", [
    ("iscrowd", "0", r"annotation 5 has iscrowd '0'; need 0 or 1"),
    ("score", "high", r"annotation 5 has score 'high'; need a finite number"),
    ("image_id", [1], r"annotation 5 points to image_id \[1\], which is not in 'images'"),
])
def test_malformed_annotation_fields(tmp_path, field, value, message):
    write_image(tmp_path / "a.jpg", (40, 30))
    ann = dict(annotation(5, 1, [0, 0, 10, 10]), **{field: value})
    path = _coco(tmp_path / "ann.json", [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}], [ann])
    with pytest.raises(AnnotationError, match=r"ann\.json: " + message):
        read_coco(path, tmp_path)


def test_proposals_with_one_file_name_twice(tmp_path):
    path = _coco(tmp_path / "p.json", [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9},
                                       {"id": 2, "file_name": "a.jpg", "width": 9, "height": 9}], [])
    with pytest.raises(AnnotationError, match=r"p\.json: images 1 and 2 have the same file_name 'a\.jpg'"):
        read_proposal_boxes(path, tmp_path)


def test_images_from_coco_names_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[1, 2]")
    with pytest.raises(AnnotationError, match=r"x\.json: expected a COCO dict"):
        images_from_coco(path)
    path.write_text(json.dumps({"images": [{"id": 1}]}))
    with pytest.raises(AnnotationError, match=r"x\.json: images\[0\] has no key 'file_name'"):
        images_from_coco(path)
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(AnnotationError, match=r"x\.json: not UTF-8 text"):
        images_from_coco(path)


# ------------------------------------------------------------- OpenImages CSV

HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside\n"


@pytest.mark.parametrize("row, message", [
    ("img1,x,/m/1,1,nan,0.5,0.2,0.6,0,0,0,0,0\n", r"b\.csv: line 2 \(ImageID 'img1'\) has XMin = 'nan', which is not a finite number"),
    ("img1,x,/m/1,1,0.1,inf,0.2,0.6,0,0,0,0,0\n", r"b\.csv: line 2 \(ImageID 'img1'\) has XMax = 'inf', which is not a finite"),
    ("img1,x,/m/1,1,0.5,0.1,0.2,0.6,0,0,0,0,0\n", r"b\.csv: line 2 \(ImageID 'img1'\) has box \[0\.5, 0\.2, 0\.1, 0\.6\] "
                                                  r"\(x1, y1, x2, y2\) with x2 < x1 or y2 < y1"),
    ("img1,x,,1,0.1,0.5,0.2,0.6,0,0,0,0,0\n", r"b\.csv: line 2 has no LabelName \(value ''\)"),
    ("img1,x\n", r"b\.csv: line 2 has no LabelName \(value None\)"),
    (",x,/m/1,1,0.1,0.5,0.2,0.6,0,0,0,0,0\n", r"b\.csv: line 2 has no ImageID"),
    ("img1,x,/m/1,1,0.1,0.5\x00,0.2,0.6,0,0,0,0,0\n", r"b\.csv: line 2 \(ImageID 'img1'\) has XMax = '0\.5\\x00'"),
    ("img1,x,/m/1,1,0.1," + "9" * 200_000 + ",0.2,0.6,0,0,0,0,0\n",
     r"b\.csv: line 2: malformed CSV \(field larger than field limit"),
])
def test_openimages_rows_name_file_and_line(tmp_path, row, message):
    write_image(tmp_path / "img1.jpg", (20, 20))
    path = tmp_path / "b.csv"
    path.write_text(HEADER + row)
    with pytest.raises(AnnotationError, match=message):
        read_openimages(path, tmp_path)


def test_openimages_not_utf8_names_file(tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes(HEADER.encode() + b"img\xff1,x,/m/1,1,0.1,0.5,0.2,0.6,0,0,0,0,0\n")
    with pytest.raises(AnnotationError, match=r"b\.csv: not UTF-8 text"):
        read_openimages(path, tmp_path)


# ------------------------------------------------------------- item 6: the MMEngine path


@pytest.fixture()
def mm():
    pytest.importorskip("mmselfsup", reason=MMSELFSUP_REASON)
    from mmengine.registry import init_default_scope

    import hcl_plugin.mmselfsup  # noqa: F401  (registers the components)
    from hcl_plugin.mmselfsup.datasets import SceneBoxDataset
    from hcl_plugin.mmselfsup.transforms import LoadSceneImageFromFile

    init_default_scope("mmselfsup")
    return SceneBoxDataset, LoadSceneImageFromFile


def _special_images(root: Path) -> list:
    root.mkdir(parents=True, exist_ok=True)
    paths = [_png_16bit(root / "gray16.png", np.array([[0, 383, 32896, 65535]], dtype=np.uint16)),
             _png_16bit(root / "rgb16.png", np.array([[[0, 383, 511], [65535, 32896, 1000]]], dtype=np.uint16))]
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putdata([0, 1])
    palette.save(root / "p.png", transparency=1)
    Image.fromarray(np.array([[[100, 0], [100, 128]]], dtype=np.uint8), "LA").save(root / "la.png")
    Image.fromarray(np.array([[[100, 50, 25, 128]]], dtype=np.uint8), "CMYK").save(root / "c.tif")
    Image.fromarray(np.array([[0, 37]], dtype=np.uint8), "L").save(root / "l.png")
    return paths + [root / "p.png", root / "la.png", root / "c.tif", root / "l.png"]


def test_mmengine_loader_gives_the_same_pixels_as_the_lightly_path(mm, tmp_path):
    _, LoadSceneImageFromFile = mm
    for path in _special_images(tmp_path):
        expected = load_image_array(path)
        bgr = LoadSceneImageFromFile()(dict(img_path=str(path)))
        assert bgr["img"].dtype == np.uint8 and bgr["img_shape"] == expected.shape[:2]
        assert np.array_equal(bgr["img"][..., ::-1], expected), path.name
        rgb = LoadSceneImageFromFile(channel_order="rgb", to_float32=True)(dict(img_path=str(path)))
        assert rgb["img"].dtype == np.float32 and np.array_equal(rgb["img"], expected.astype(np.float32))


def test_mmengine_loader_matches_mmcv_channel_order_on_plain_rgb(mm, tmp_path):
    from mmcv.transforms import LoadImageFromFile

    _, LoadSceneImageFromFile = mm
    pixels = np.random.default_rng(1).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    ours = LoadSceneImageFromFile()(dict(img_path=str(tmp_path / "x.png")))["img"]
    mmcv_img = LoadImageFromFile()(dict(img_path=str(tmp_path / "x.png")))["img"]
    assert np.array_equal(ours, mmcv_img)


def _scene_box_dataset(SceneBoxDataset, tmp_path: Path, anns, pipeline_extra=()):
    images = [{"id": 1, "file_name": "gray16.png", "width": 4, "height": 1}]
    _coco(tmp_path / "ann.json", images, anns)
    return SceneBoxDataset(ann_file=str(tmp_path / "ann.json"), data_prefix=dict(img_path=str(tmp_path)),
                           pipeline=[dict(type="LoadSceneImageFromFile"), *pipeline_extra])


def test_scene_box_dataset_reads_with_the_project_loader(mm, tmp_path):
    SceneBoxDataset, LoadSceneImageFromFile = mm
    path = _special_images(tmp_path)[0]
    dataset = _scene_box_dataset(SceneBoxDataset, tmp_path, [])
    assert isinstance(dataset.pipeline.transforms[0], LoadSceneImageFromFile)
    assert np.array_equal(dataset[0]["img"][..., ::-1], load_image_array(path))
    assert np.array_equal(dataset[0]["img"][0, :, 0], [0, 1, 128, 255])


def test_scene_box_dataset_zero_byte_image_is_named(mm, tmp_path):
    SceneBoxDataset, _ = mm
    (tmp_path / "gray16.png").write_bytes(b"")
    dataset = _scene_box_dataset(SceneBoxDataset, tmp_path, [])
    with pytest.raises(ImageLoadError, match=r"cannot decode image file .*gray16\.png"):
        dataset[0]


def test_scene_box_dataset_without_boxes_fails_at_build_naming_the_file(mm, tmp_path):
    SceneBoxDataset, _ = mm
    _special_images(tmp_path)
    sampler = dict(type="SampleSceneObjectBoxes", min_box_size=1, min_boxes=2)
    with pytest.raises(ValueError, match=r"no image in '.*ann\.json' has 2 or more boxes of at least 1 x 1 px"):
        _scene_box_dataset(SceneBoxDataset, tmp_path, [], [sampler])
    with pytest.raises(ValueError, match=r"no image in '.*ann\.json' has 2 or more boxes"):
        _scene_box_dataset(SceneBoxDataset, tmp_path, [annotation(1, 1, [0, 0, 2, 1])], [sampler])
    two = [annotation(1, 1, [0, 0, 2, 1]), annotation(2, 1, [1, 0, 3, 1])]
    assert len(_scene_box_dataset(SceneBoxDataset, tmp_path, two, [sampler])) == 1
    # random crops need no boxes
    lenient = dict(sampler, too_few_boxes="random_crops")
    assert len(_scene_box_dataset(SceneBoxDataset, tmp_path, [], [lenient])) == 1
