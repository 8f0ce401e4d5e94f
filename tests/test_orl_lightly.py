"""ORL stage 3 + HCL on the Lightly path: views from a correspondence store, the model, the example script."""

from __future__ import annotations

import pickle
import random
import shutil
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, default_collate
from torchvision.transforms import v2

from hcl_plugin.checkpoints import build_resnet, safe_load
from hcl_plugin.data.image_io import ImageLoadError
from hcl_plugin.lightly.orl_data import HYPERBOLIC_VIEW_KEYS, ORL_VIEW_KEYS, ORLDataset, ORLViews, crop_box
from hcl_plugin.lightly.orl_model import ORLHCL, orl_momentum
from hcl_plugin.orl import CorrespondenceError, ORLBoxes, open_store
from hcl_plugin.orl.discovery import CorrespondenceSettings, discover_correspondences
from hcl_plugin.uhml.embedding import backbone_state_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lightly_examples"))
sys.path.insert(0, str(ROOT / "tools"))

import extract_backbone  # noqa: E402
import orl_hcl  # noqa: E402

NUM_IMAGES, SIDE = 12, 64
PLANTED = (4, 4, 24, 24)  # x, y, w, h: box 0 of every image, filled with the image's own colour
TINY = dict(image_size=32, patch_size=16, hyperbolic_size=24, proj_hidden_dim=64, proj_output_dim=32,
            pred_hidden_dim=64, hyp_hidden_dim=64, hyp_output_dim=16, memory_bank_size=16)


def colour(i: int) -> tuple:
    return (20 * i + 10, 255 - 15 * i, (97 * i) % 256)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    """12 noisy 64x64 PNGs; box 0 of image i is a constant-colour square of colour(i); stage 2 run on CPU."""
    root = tmp_path_factory.mktemp("orl")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    names, proposals = [], []
    for i in range(NUM_IMAGES):
        pixels = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
        x, y, w, h = PLANTED
        pixels[y:y + h, x:x + w] = colour(i)
        name = f"img_{i:02d}.png"
        Image.fromarray(pixels).save(images / name)
        names.append(name)
        boxes = [PLANTED, (34, 2, 26 - i % 3, 26), (2, 34, 24, 26), (36, 36, 24, 22 + i % 4)]
        if i % 2:
            boxes.append((12, 12, 44, 40))
        proposals.append(np.asarray(boxes, dtype=np.float32))
    torch.manual_seed(0)
    backbone = build_resnet("resnet18")[0]
    settings = CorrespondenceSettings(min_size=16, knn=2, patch_size=32, image_size=32, batch_size=32)
    sizes = np.full((NUM_IMAGES, 2), SIDE, dtype=np.int64)
    discover_correspondences(backbone, names, images, sizes, proposals, root / "store", settings,
                             device=torch.device("cpu"))
    return root


@pytest.fixture(scope="module")
def store(store_dir):
    return open_store(store_dir / "store", image_root=store_dir / "images")


def plain_views(image_size: int = 32, patch_size: int = 16, hyperbolic: bool = True) -> ORLViews:
    """Deterministic views ([0, 1] values, resize only) to look at the pixels."""
    def resize(size: int) -> v2.Compose:
        return v2.Compose([v2.Resize((size, size), antialias=True), v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
    return ORLViews(image=(resize(image_size), resize(image_size)), patch=(resize(patch_size), resize(patch_size)),
                    scene=resize(24) if hyperbolic else None, object=resize(24) if hyperbolic else None)


def test_dataset_returns_the_eight_views_at_their_sizes(store):
    dataset = ORLDataset(store, ORLViews.default(32, 16, hyperbolic_size=24))
    torch.manual_seed(1)
    sample = dataset[3]
    sizes = {k: tuple(sample[k].shape) for k in ORL_VIEW_KEYS + HYPERBOLIC_VIEW_KEYS}
    assert sizes == {"image_view_1": (3, 32, 32), "image_view_2": (3, 32, 32), "intra_view_1": (3, 16, 16),
                     "intra_view_2": (3, 16, 16), "inter_view_1": (3, 16, 16), "inter_view_2": (3, 16, 16),
                     "hyperbolic_scene": (3, 24, 24), "hyperbolic_object": (3, 24, 24)}
    assert all(torch.isfinite(sample[k]).all() for k in sizes)
    # the boxes come from the store: a proposal of image 3, and a stored RoI pair with the neighbour drawn
    assert sample["index"] == 3 and sample["neighbour"] in store.knn[3].tolist()
    assert any(np.allclose(sample["intra_box"].numpy(), b) for b in store.image_boxes(3))
    k = store.knn[3].tolist().index(sample["neighbour"])
    _, pairs = store.neighbour_pairs(3, k)
    pair = torch.cat([sample["inter_first_box"], sample["inter_second_box"]]).numpy()
    assert any(np.allclose(pair, p) for p in pairs)
    pickle.loads(pickle.dumps(dataset))  # DataLoader workers started by spawn get a copy
    # plain ORL views: no hyperbolic pair
    assert not set(HYPERBOLIC_VIEW_KEYS) & set(ORLDataset(store, ORLViews.default(32, 16, hyperbolic=False))[0])


def test_seeded_draws_repeat_and_differ_between_seeds(store):
    dataset = ORLDataset(store, plain_views())
    def boxes(seed: int) -> list:
        torch.manual_seed(seed)
        return [dataset[i]["intra_jittered_box"].tolist() + [dataset[i]["neighbour"]] for i in range(6)]
    assert boxes(5) == boxes(5)
    assert boxes(5) != boxes(6)


def test_patch_views_are_crops_of_their_boxes(store):
    """Planted squares: intra/inter view 1 show image i's colour, inter view 2 the neighbour's."""
    def planted(s, index: int, rng: random.Random) -> ORLBoxes:
        neighbour = int(s.knn[index, 0])
        return ORLBoxes(index, neighbour, PLANTED, PLANTED, PLANTED, PLANTED)
    dataset = ORLDataset(store, plain_views(), sample_boxes=planted)
    for i in (0, 7):
        sample = dataset[i]
        j = sample["neighbour"]
        assert j != i
        for key, owner in (("intra_view_1", i), ("intra_view_2", i), ("inter_view_1", i), ("inter_view_2", j),
                           ("hyperbolic_object", i)):
            expected = torch.tensor(colour(owner), dtype=torch.float32)[:, None, None] / 255
            torch.testing.assert_close(sample[key], expected.expand_as(sample[key]), atol=1 / 255, rtol=0,
                                       msg=lambda m: f"{key} of image {i}: {m}")
    # drawn boxes: each patch view is its box's crop resized
    torch.manual_seed(0)
    dataset = ORLDataset(store, plain_views())
    sample = dataset[5]
    image = Image.open(store.image_path(5)).convert("RGB")
    neighbour = Image.open(store.image_path(sample["neighbour"])).convert("RGB")
    resize = plain_views().patch[0]
    for key, box_key, source in (("intra_view_1", "intra_box", image), ("intra_view_2", "intra_jittered_box", image),
                                 ("inter_view_1", "inter_first_box", image),
                                 ("inter_view_2", "inter_second_box", neighbour)):
        torch.testing.assert_close(sample[key], resize(crop_box(source, sample[box_key].tolist())))


def test_missing_or_changed_image_is_reported_with_its_file(store_dir, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(store_dir / "images", images)
    (images / "img_04.png").unlink()
    with pytest.raises(CorrespondenceError, match="img_04.png"):
        open_store(store_dir / "store", image_root=images)
    dataset = ORLDataset(open_store(store_dir / "store", image_root=images, check_files=False), plain_views())
    with pytest.raises(ImageLoadError, match="img_04.png"):
        dataset[4]
    Image.new("RGB", (48, 64)).save(images / "img_02.png")  # the file changed since stage 2
    with pytest.raises(CorrespondenceError, match=r"img_02\.png.*48x64"):
        dataset[2]


def _loader(store, hyperbolic: bool = True) -> DataLoader:
    dataset = ORLDataset(store, ORLViews.default(32, 16, hyperbolic=hyperbolic, hyperbolic_size=24))
    return DataLoader(dataset, batch_size=4, shuffle=True, drop_last=True, collate_fn=default_collate)


def _trainer(steps: int) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)


def test_orl_hcl_trains_with_finite_losses_and_logs_the_hyperbolic_term(store):
    pl.seed_everything(0)
    model = ORLHCL(lambda_hyp=0.5, **TINY)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    trainer = _trainer(3)
    trainer.fit(model, _loader(store))
    metrics: Dict[str, torch.Tensor] = trainer.callback_metrics
    for name in ("loss", "train/loss_global", "train/loss_local_intra", "train/loss_local_inter", "train/loss_hyp",
                 "train/loss_hyp_weighted", "health/hyp_norm_mean"):
        assert name in metrics and torch.isfinite(metrics[name]), name
    torch.testing.assert_close(metrics["train/loss_hyp_weighted"], 0.5 * metrics["train/loss_hyp"])
    total = sum(metrics[f"train/{k}"] for k in ("loss_global", "loss_local_intra", "loss_local_inter",
                                                "loss_hyp_weighted"))
    torch.testing.assert_close(metrics["loss"], total)
    assert -4.0 - 1e-4 <= float(metrics["train/loss_global"]) <= 4.0 + 1e-4  # -2cos per direction
    assert int(model.criterion_hyp.memory_bank.ptr) == 12  # 3 steps of 4 object keys queued
    assert model.hyperbolic_head_momentum.curvature is model.curvature is model.criterion_hyp.curvature
    assert any(not torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())
    assert not any(p.requires_grad for p in model.backbone_momentum.parameters())


def test_lambda_zero_is_plain_orl_without_hyperbolic_parameters(store):
    model = ORLHCL(lambda_hyp=0.0, **TINY)
    assert model.hyperbolic_head is None and model.criterion_hyp is None and model.curvature is None
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    assert not [n for n in names if "hyperbolic" in n or "curvature" in n or "memory_bank" in n]
    trainer = _trainer(1)
    trainer.fit(model, _loader(store, hyperbolic=False))  # no scene/object views in the batch: never asked for
    assert "train/loss_hyp" not in trainer.callback_metrics
    assert torch.isfinite(trainer.callback_metrics["loss"])


def test_momentum_is_annealed_from_base_to_one():
    assert orl_momentum(0, 100) == pytest.approx(0.99)
    assert orl_momentum(99, 100) == pytest.approx(1.0)
    assert 0.99 < orl_momentum(50, 100) < 1.0


def test_example_script_end_to_end_and_backbone_round_trip(store_dir, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--correspondence", str(store_dir / "store"), "--image-size", "32", "--patch-size", "16",
              "--batch-size", "4", "--workers", "0", "--proj-hidden-dim", "64", "--proj-output-dim", "32",
              "--hyp-output-dim", "16", "--memory-bank-size", "16", "--no-progress-bar", "--log-every", "1",
              "--accelerator", "cpu", "--devices", "1"]
    orl_hcl.main(common + ["--max-steps", "2", "--out", str(out), "--lambda-hyp", "0.1"])
    final = out / "final.ckpt"
    err = capsys.readouterr().err
    assert str(final) in err and "tools/extract_backbone.py" in err
    state = safe_load(final)["state_dict"]
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    resnet = build_resnet("resnet18")[0]
    resnet.load_state_dict(backbone, strict=True)
    assert any(k.startswith("hyperbolic_head.") for k in state)
    # tools/extract_backbone.py on the checkpoint, then --weights from its output (strict keys)
    weights = tmp_path / "backbone.pth"
    assert extract_backbone.main([str(final), str(weights)]) == 0
    extracted = safe_load(weights)["state_dict"]
    assert set(extracted) == set(resnet.state_dict())
    model = ORLHCL(lambda_hyp=0.0, **TINY)
    model.load_backbone(backbone_state_dict(weights)[0])
    for k, v in model.backbone_momentum.state_dict().items():
        torch.testing.assert_close(v, extracted[k])
    with pytest.raises(ValueError, match="resnet50.*Unexpected|resnet50.*Missing|resnet50"):
        ORLHCL(backbone="resnet50", lambda_hyp=0.0, **TINY).load_backbone(extracted, source="resnet18 weights")
    out2 = tmp_path / "run_weights"
    orl_hcl.main(common + ["--max-steps", "1", "--out", str(out2), "--lambda-hyp", "0", "--weights", str(weights)])
    assert (out2 / "final.ckpt").is_file()
    assert not any("hyperbolic" in k for k in safe_load(out2 / "final.ckpt")["state_dict"])
