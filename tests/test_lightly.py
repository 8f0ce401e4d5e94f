"""Lightly adapters, the Lightning models and examples: conventions, one curvature, training, resume, DDP, bf16, bad input."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from PIL import Image
from torch.utils.data import DataLoader, default_collate

from hcl_plugin.checkpoints import ModelHyperParameters
from hcl_plugin.geometry import Curvature, expmap0
from hcl_plugin.lightly import HCLLoss, HCLTransform, HyperbolicNTXentLoss, PoincareProjectionHead, scene_dataset
from hcl_plugin.lightly.models import DenseCLHCL, MoCoHCL, SimCLRHCL
from hcl_plugin.lightly.training import build_parser, fit
from hcl_plugin.losses import HCLLoss as CoreHCLLoss
from hcl_plugin.losses import HyperbolicInfoNCELoss, InfoNCELoss
from tests.data_helpers import FixedBatch, build_embedded, write_coco

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lightly_examples"))

import densecl_hcl  # noqa: E402
import moco_hcl  # noqa: E402
import simclr_hcl  # noqa: E402

EXAMPLES = {"moco": moco_hcl, "simclr": simclr_hcl, "densecl": densecl_hcl}
MODULES = {"moco": MoCoHCL, "simclr": SimCLRHCL, "densecl": DenseCLHCL}
TINY = dict(image_size=32, proj_hidden_dim=64, proj_output_dim=16, hyp_hidden_dim=64, hyp_output_dim=16, feature_scale=0.25)
VIEWS = ("object_view_1", "object_view_2", "hyperbolic_scene", "hyperbolic_object")


def c_of(curvature: Curvature) -> float:
    return float(torch.as_tensor(curvature()).detach())


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    return build_embedded(tmp_path_factory.mktemp("embedded"), num_images=40, image_size=128, seed=1)


def cli(embedded: Path, out: Path, *extra: str) -> list:
    return ["--embedded-dir", str(embedded), "--image-size", "32", "--batch-size", "8", "--num-workers", "0",
            "--min-box-size", "12", "--expand-to", "48", "--proj-hidden-dim", "64", "--proj-output-dim", "16",
            "--out", str(out), "--log-every", "1", "--no-progress-bar", *extra]


def metrics(out: Path) -> list:
    import csv

    rows = []
    for path in sorted(out.glob("logs/version_*/metrics.csv")):
        rows += [r for r in csv.DictReader(path.open()) if r.get("loss")]
    return rows


# ---------------------------------------------------------------- conventions


def test_hcl_loss_is_a_drop_in_inside_a_lightly_moco_loop(gen):
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 32), torch.nn.ReLU())
    head, hyp_head = MoCoProjectionHead(32, 32, 8), PoincareProjectionHead(32, 32, 8, c=0.05, feature_scale=0.3)
    backbone_m, head_m, hyp_head_m = (copy.deepcopy(m) for m in (backbone, head, hyp_head))
    for m in (backbone_m, head_m, hyp_head_m):
        deactivate_requires_grad(m)
    criterion = HCLLoss(memory_bank_size=(16, 8), symmetric=True)
    params = [*backbone.parameters(), *head.parameters(), *hyp_head.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.1)
    for step in range(3):
        update_momentum(backbone, backbone_m, 0.99)
        update_momentum(head, head_m, 0.99)
        update_momentum(hyp_head, hyp_head_m, 0.99)
        x1, x2, scene, obj = (torch.randn(4, 3, 4, 4, generator=gen) for _ in range(4))
        q = (head(backbone(x1)), head(backbone(x2)))
        with torch.no_grad():
            k = (head_m(backbone_m(x1)), head_m(backbone_m(x2)))
            obj_key = hyp_head_m(backbone_m(obj))
        loss, parts = criterion(q, k, hyp_head(backbone(scene)), obj_key, return_parts=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss) and set(parts) == {"loss_euc", "loss_hyp"}
    # the banks advanced once per training step (4 keys each) and are saved with the module
    assert [int(b.ptr) for b in criterion.euclidean_banks] == [12, 12]
    assert int(criterion.hyperbolic.memory_bank.ptr) == 12
    assert "hyperbolic.memory_bank.bank" in criterion.state_dict()
    with torch.no_grad():  # evaluation does not update the queues
        criterion(q, k, hyp_head(backbone(scene)), obj_key)
    assert int(criterion.hyperbolic.memory_bank.ptr) == 12


def test_hyperbolic_ntxent_matches_the_core_loss(gen):
    z0, z1 = (expmap0(torch.randn(6, 8, generator=gen), 0.05) for _ in range(2))
    core = HyperbolicInfoNCELoss(0.2, 0.05)
    torch.testing.assert_close(HyperbolicNTXentLoss(0.2, 0.05)(z0, z1), core(z0, z1))
    with_bank = HyperbolicNTXentLoss(0.2, 0.05, memory_bank_size=(10, 8))
    bank = with_bank.memory_bank.negatives()
    torch.testing.assert_close(with_bank(z0.requires_grad_(), z1), core(z0, z1, bank))
    assert torch.equal(with_bank.memory_bank.bank[:6], z1)


@pytest.mark.parametrize("size", [10, (10,), (10, 0), (10, 8, 2)])
def test_memory_bank_size_is_validated_like_lightly(size):
    with pytest.raises(ValueError, match="memory_bank_size"):
        HyperbolicNTXentLoss(memory_bank_size=size)


def test_hcl_loss_baseline_skips_the_hyperbolic_branch(gen):
    q, k = torch.randn(4, 8, generator=gen), torch.randn(4, 8, generator=gen)
    loss, parts = HCLLoss(lambda_hyp=0.0)(q, k, None, None, return_parts=True)
    assert parts["loss_hyp"] == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="needs hyp_query"):
        HCLLoss()(q, k)
    with pytest.raises(ValueError, match="symmetric=True needs"):
        HCLLoss(symmetric=True)(q, k, q, k)


def test_lightly_hcl_loss_is_the_core_loss_plus_its_queues(gen):
    q1, q2, k1, k2 = (torch.randn(4, 8, generator=gen) for _ in range(4))
    scene, obj = (expmap0(torch.randn(4, 6, generator=gen), 0.05) for _ in range(2))
    criterion = HCLLoss(lambda_hyp=0.3, memory_bank_size=(16, 8), hyp_memory_bank_size=(12, 6), symmetric=True)
    core = criterion.objective
    assert isinstance(core, CoreHCLLoss) and criterion.hyperbolic.loss is core.hyperbolic
    euc_banks = [bank.negatives() for bank in criterion.euclidean_banks]
    hyp_bank = criterion.hyperbolic.memory_bank.negatives()
    loss, parts = criterion((q1.requires_grad_(), q2.requires_grad_()), (k1, k2), scene.requires_grad_(), obj,
                            return_parts=True)
    euc = 0.5 * (InfoNCELoss(0.2)(q1, k2, euc_banks[0]) + InfoNCELoss(0.2)(q2, k1, euc_banks[1]))
    hyp = HyperbolicInfoNCELoss(0.2, 0.05)(scene, obj, hyp_bank)
    torch.testing.assert_close(loss, euc + 0.3 * hyp)
    torch.testing.assert_close(parts["loss_hyp"], hyp.detach())
    # non-symmetric with in-batch negatives: exactly the core loss
    plain = HCLLoss(lambda_hyp=0.3)
    torch.testing.assert_close(plain(q1, k1, scene, obj), CoreHCLLoss(lambda_hyp=0.3)(q1, k1, scene, obj).loss)


@pytest.mark.parametrize("learnable", [False, True])
def test_lightly_losses_keep_the_curvature_object_they_are_given(learnable, gen):
    curvature = Curvature(0.05, learnable=learnable)
    criterion = HCLLoss(c=curvature, memory_bank_size=(8, 4))
    ntxent = HyperbolicNTXentLoss(c=curvature, memory_bank_size=(8, 4))
    for holder in (criterion, criterion.objective.hyperbolic, criterion.hyperbolic.memory_bank,
                   ntxent, ntxent.loss, ntxent.memory_bank):
        assert holder.curvature is curvature
    assert ntxent.memory_bank.stores_tangent is learnable
    z0, z1 = (expmap0(torch.randn(4, 4, generator=gen), 0.05) for _ in range(2))
    loss = ntxent(z0.requires_grad_(), z1)
    if learnable:  # the gradient reaches c through the queries and the queue's points
        (grad,) = torch.autograd.grad(loss, [curvature.log_c])
        assert torch.isfinite(grad) and grad != 0
    # a float builds one Curvature, shared by the loss and its queue
    floats = HyperbolicNTXentLoss(c=0.1, memory_bank_size=(8, 4))
    assert floats.memory_bank.curvature is floats.loss.curvature and floats.curvature() == 0.1


@pytest.mark.parametrize("name", sorted(MODULES))
@pytest.mark.parametrize("learn_c", [False, True])
def test_a_model_has_one_curvature_object(name, learn_c):
    model = MODULES[name](**TINY, c=1.0, learn_c=learn_c)
    holders = [m for m in model.modules() if isinstance(getattr(m, "curvature", None), Curvature)]
    assert len(holders) >= 3  # the Poincaré head, the hyperbolic loss (and the queue, the momentum head)
    assert all(m.curvature is model.curvature for m in holders)
    # one hyper-parameter c: a head on c = 1 with a loss on c = 0.05 cannot be built
    assert model.curvature.learnable is learn_c and c_of(model.curvature) == 1.0 and model.hparams.c == 1.0
    assert sum(p is getattr(model.curvature, "log_c", None) for p in model.parameters()) == int(learn_c)  # stepped once


def test_momentum_update_leaves_the_shared_curvature_alone():
    model = MoCoHCL(**TINY, learn_c=True)
    with torch.no_grad():
        model.curvature.log_c.add_(0.1)
    before = model.curvature.log_c.detach().clone()
    model.momentum_update()
    assert torch.equal(model.curvature.log_c.detach(), before)
    assert model.curvature.log_c.requires_grad  # the momentum copy did not freeze it


def test_models_are_built_from_the_example_command_line():
    for name, model_class in MODULES.items():
        args = build_parser(model_class).parse_args(["--learn-c", "--c", "0.1", "--proj-output-dim", "32"])
        hp = model_class.HyperParameters.from_args(args)
        assert hp.learn_c and hp.c == 0.1 and hp.hyp_output_dim == 32 and hp.feature_scale == pytest.approx(32 ** -0.5)
        assert ModelHyperParameters.from_mapping(vars(hp)).c == 0.1  # the checkpoint contract
        assert EXAMPLES[name].main is not None and getattr(EXAMPLES[name], model_class.__name__) is model_class
    assert build_parser(DenseCLHCL).parse_args([]).dense_weight == 0.5
    assert MoCoHCL.HyperParameters.from_args(build_parser(MoCoHCL).parse_args(["--memory-bank-size", "64"])).memory_bank_size == 64
    with pytest.raises(TypeError, match="hyp_lambda"):
        MoCoHCL(hyp_lambda=0.1)
    with pytest.raises(ValueError, match="lambda_hyp must be finite and >= 0"):
        SimCLRHCL(lambda_hyp=-1.0)


def test_value_check_interval_flag_sets_the_interval_before_training(monkeypatch):
    from hcl_plugin.lightly import training
    from hcl_plugin.utils import checks

    seen = []
    monkeypatch.setattr(training, "fit", lambda model, args, callbacks=None, **kw: seen.append(checks.set_value_check_interval(1)))
    training.train(MoCoHCL, ["--value-check-interval", "100", "--proj-output-dim", "16", "--proj-hidden-dim", "16"])
    assert seen == [100]  # in force while the model trains (and reset here)
    with pytest.raises(ValueError, match="value-check interval must be an integer >= 1, got 0"):
        training.train(MoCoHCL, ["--value-check-interval", "0"])


@pytest.mark.parametrize("image", [Image.new("L", (20, 14), 90), Image.new("RGBA", (128, 96), (10, 200, 30, 128)),
                                   Image.new("P", (8, 8)), Image.new("RGB", (3, 500), (5, 5, 5))])
@pytest.mark.parametrize("boxes", [[], [[0, 0, 60, 40], [30, 20, 120, 90]]])
def test_hcl_transform_handles_grayscale_rgba_tiny_and_boxless_images(image, boxes):
    views = HCLTransform(input_size=32, min_box_size=8, expand_to=48)(image, boxes)
    assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 4
    assert all(torch.isfinite(v).all() for v in views)


def test_bad_image_is_named(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    write_coco(tmp_path / "ann.json", [{"id": 1, "file_name": "broken.jpg", "width": 64, "height": 64}],
               [{"id": 1, "image_id": 1, "bbox": [0, 0, 30, 30], "category_id": 1, "iscrowd": 0, "area": 900}])
    dataset = scene_dataset(tmp_path, tmp_path / "ann.json", input_size=32)
    with pytest.raises(OSError, match="broken.jpg"):
        dataset[0]
    with pytest.raises(FileNotFoundError, match="missing.json"):
        scene_dataset(tmp_path, tmp_path / "missing.json")


# ---------------------------------------------------------------- training (Lightning, CPU)


class RecordLoss(pl.Callback):
    def __init__(self) -> None:
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # pytorch_lightning 2.6 vs torch 2.14, not ours
def test_learnable_curvature_trains_is_shared_and_reloads(tmp_path, gen):
    batch = {key: torch.randn(4, 3, 32, 32, generator=gen) for key in VIEWS}
    pl.seed_everything(0)
    model = MoCoHCL(**TINY, learn_c=True, memory_bank_size=16)
    start = model.curvature.log_c.detach().clone()
    trainer = pl.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(FixedBatch(batch, 3), batch_size=None))
    assert model.curvature.log_c.detach() != start
    curvature = model.curvature
    for holder in (model.hyperbolic_head, model.hyperbolic_head_momentum, model.criterion, model.criterion.objective,
                   model.criterion.hyperbolic.memory_bank):
        assert holder.curvature is curvature
    bank = model.criterion.hyperbolic.memory_bank
    assert bank.stores_tangent and int(bank.ptr) == 12
    no_decay = trainer.optimizers[0].param_groups[-1]
    assert no_decay["weight_decay"] == 0 and no_decay["params"] == [curvature.log_c]

    trainer.save_checkpoint(tmp_path / "learn_c.ckpt")
    reloaded = MoCoHCL.load_from_checkpoint(tmp_path / "learn_c.ckpt", map_location="cpu")
    assert reloaded.hparams.learn_c and reloaded.hparams.c == 0.05  # the initial value; the learnt one is log_c
    assert c_of(reloaded.curvature) == c_of(curvature) != 0.05
    for holder in (reloaded.hyperbolic_head, reloaded.hyperbolic_head_momentum, reloaded.criterion.hyperbolic.memory_bank):
        assert holder.curvature is reloaded.curvature
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key
    negatives = reloaded.criterion.hyperbolic.memory_bank.negatives()  # the queue's points, on the learnt ball
    assert bool((negatives.norm(dim=1) < reloaded.curvature().detach() ** -0.5).all())
    # the analysis loads the same checkpoint and works on the learnt ball
    from hcl_plugin.eval import load_checkpoint

    analysed = load_checkpoint(tmp_path / "learn_c.ckpt")
    assert analysed.c == pytest.approx(c_of(curvature), rel=1e-6) and analysed.c != 0.05
    assert torch.equal(analysed.hyperbolic_head.curvature.log_c, curvature.log_c.detach())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODULES))
def test_loss_falls_on_a_fixed_batch(name, embedded):
    dataset = scene_dataset(embedded / "images", embedded / "annotations_train.json", input_size=32, min_box_size=12,
                            expand_to=48, seed=0)
    batch = default_collate([dataset[i] for i in range(8)])
    pl.seed_everything(0)
    extra = {} if name == "simclr" else {"memory_bank_size": 0}  # a queue would fill with copies of the batch
    module = MODULES[name](**TINY, **extra)
    record = RecordLoss()
    trainer = pl.Trainer(max_steps=25, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[record])
    trainer.fit(module, DataLoader(FixedBatch(batch, 25), batch_size=None))
    first, last = sum(record.losses[:3]) / 3, sum(record.losses[-3:]) / 3
    assert all(torch.isfinite(torch.tensor(record.losses)))
    assert last < 0.9 * first, record.losses


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_script_trains_and_writes_an_extractable_checkpoint(name, embedded, tmp_path):
    EXAMPLES[name].main(cli(embedded, tmp_path, "--max-steps", "3", "--checkpoint-every", "2"))
    rows = metrics(tmp_path)
    assert len(rows) == 3 and all(float(r["loss"]) == float(r["loss"]) for r in rows)  # finite (not NaN)
    ckpt = torch.load(tmp_path / "final.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3
    backbone = {k[len("backbone."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("backbone.")}
    import torchvision

    resnet = torchvision.models.resnet18(weights=None)
    resnet.fc = torch.nn.Identity()
    resnet.load_state_dict(backbone, strict=True)  # torchvision's own key names
    assert {"backbone", "c", "image_size", "hyp_output_dim"} <= set(ckpt["hyper_parameters"])
    assert (tmp_path / "checkpoints" / "step2.ckpt").exists()


class CaptureStart(pl.Callback):
    def on_train_start(self, trainer, module):
        self.step = trainer.global_step
        self.bank = module.criterion.hyperbolic.memory_bank.bank.clone()
        self.euc_bank = module.criterion.euclidean_banks[0].bank.clone()


@pytest.mark.slow
def test_resume_continues_at_the_right_step_with_the_same_queues(embedded, tmp_path):
    keep = ("--save-top-k", "-1")  # keep step2.ckpt beside step4.ckpt (the default keeps the newest only)
    args = build_parser(MoCoHCL).parse_args(cli(embedded, tmp_path, "--max-steps", "4", "--checkpoint-every", "2",
                                                "--memory-bank-size", "64", *keep))
    moco_hcl.main(cli(embedded, tmp_path, "--max-steps", "4", "--checkpoint-every", "2", "--memory-bank-size", "64",
                      *keep))
    saved = torch.load(tmp_path / "checkpoints" / "step2.ckpt", map_location="cpu", weights_only=False)
    args.resume, args.max_steps, args.out = tmp_path / "checkpoints" / "step2.ckpt", 4, tmp_path / "resumed"
    capture = CaptureStart()
    module = MoCoHCL.from_args(args)
    trainer = fit(module, args, callbacks=[capture])
    assert capture.step == 2 and trainer.global_step == 4
    torch.testing.assert_close(capture.bank, saved["state_dict"]["criterion.hyperbolic.memory_bank.bank"], rtol=0, atol=0)
    torch.testing.assert_close(capture.euc_bank, saved["state_dict"]["criterion.euclidean_banks.0.bank"], rtol=0, atol=0)
    assert int(saved["state_dict"]["criterion.hyperbolic.memory_bank.ptr"]) == 2 * 8 % 64


@pytest.mark.slow
def test_bf16_training_runs_without_nan(embedded, tmp_path):
    moco_hcl.main(cli(embedded, tmp_path, "--max-steps", "3", "--precision", "bf16", "--memory-bank-size", "64"))
    rows = metrics(tmp_path)
    assert len(rows) == 3
    for row in rows:
        assert all(float(row[k]) == float(row[k]) for k in ("loss", "train/loss_euc", "train/loss_hyp"))


DDP_DRIVER = textwrap.dedent('''
    import sys, torch, pytorch_lightning as pl
    sys.path[:0] = [{root!r}]
    from hcl_plugin.lightly.models import MoCoHCL
    from hcl_plugin.lightly.training import build_parser, fit

    class SaveBanks(pl.Callback):
        def on_train_end(self, trainer, module):
            banks = {{k: v.clone() for k, v in module.criterion.state_dict().items() if "bank" in k or "ptr" in k}}
            banks["global_step"] = torch.tensor(trainer.global_step)
            torch.save(banks, {out!r} + f"/banks_rank{{trainer.global_rank}}.pt")

    args = build_parser(MoCoHCL).parse_args(sys.argv[1:])
    pl.seed_everything(0)
    fit(MoCoHCL.from_args(args), args, callbacks=[SaveBanks()])
''')


@pytest.mark.slow
def test_lightning_ddp_on_two_cpu_processes_keeps_the_banks_in_sync(embedded, tmp_path):
    driver = tmp_path / "ddp_driver.py"
    driver.write_text(DDP_DRIVER.format(root=str(ROOT), out=str(tmp_path)))
    args = cli(embedded, tmp_path / "run", "--max-steps", "3", "--memory-bank-size", "64", "--devices", "2",
               "--strategy", "ddp", "--accelerator", "cpu")
    done = subprocess.run([sys.executable, str(driver), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    rank0, rank1 = (torch.load(tmp_path / f"banks_rank{r}.pt") for r in (0, 1))
    assert set(rank0) == set(rank1) and any("hyperbolic" in k for k in rank0)
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0)
    # every step enqueued 2 ranks x 8 keys into each 64-slot queue
    steps = int(rank0["global_step"])
    assert steps >= 2 and int(rank0["hyperbolic.memory_bank.ptr"]) == steps * 2 * 8 % 64


# ---------------------------------------------------------------- silent mistakes now warn or raise


def test_keys_that_require_grad_warn_once_naming_the_argument():
    from hcl_plugin.geometry import expmap0
    from hcl_plugin.losses import HCLLoss as CoreHCLLoss

    q, k = torch.randn(4, 8), torch.randn(4, 8, requires_grad=True)
    scene, obj = expmap0(torch.randn(4, 8), 0.05), expmap0(torch.randn(4, 8), 0.05)
    core = CoreHCLLoss()
    with pytest.warns(UserWarning, match="object_key requires grad"):
        core(q, k, scene, obj)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        core(q, k, scene, obj)  # once per loss
        CoreHCLLoss()(q, k.detach(), scene, obj)  # detached keys: silent
    with pytest.warns(UserWarning, match=r"hyp_key requires grad"):
        HCLLoss()(q, k.detach(), scene, obj.clone().requires_grad_())


def test_a_data_root_without_train_annotations_is_refused_naming_the_file(embedded, tmp_path):
    from hcl_plugin.lightly.training import resolve_data

    assert resolve_data(embedded) == (embedded / "images", embedded / "annotations_train.json")
    with pytest.raises(FileNotFoundError, match=r"annotations_train.json.*pass its root, --data"):
        resolve_data(embedded / "images")  # the images folder: would have trained on train + val
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"annotations.json exists but holds every image"):
        resolve_data(tmp_path)
    assert resolve_data(embedded / "images", embedded / "annotations.json")[1] == embedded / "annotations.json"


@pytest.mark.parametrize("boxes, expected", [
    ([], "without boxes"),
    ([[10, 10, 5, 5], [40, 40, 20, 20]], r"\[x, y, w, h\] boxes\?"),  # xywh given as xyxy
    ([[200, 200, 300, 300], [-50, -50, -10, -10]], "beyond the image"),
])
def test_hcl_transform_fall_backs_warn_once_and_are_counted(boxes, expected):
    transform = HCLTransform(input_size=32, min_box_size=8, expand_to=48)
    image = Image.new("RGB", (64, 64))
    with pytest.warns(UserWarning, match=expected):
        transform(image, boxes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        transform(image, boxes)
    assert transform.stats["too_few_boxes"] == 2 and transform.stats["sampled_random_crops"] == 2
    assert re.search(expected, transform.fallback_report())


def test_lambda_convention_of_the_logs():
    from hcl_plugin.losses import HCLLossOutput

    module = MoCoHCL.from_args(build_parser(MoCoHCL).parse_args(["--lambda-hyp", "0.25", "--proj-hidden-dim", "16",
                                                                 "--proj-output-dim", "8", "--memory-bank-size", "0"]))
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)
    module.log_dict = lambda values, **kw: logged.update(values)
    module.log_step(HCLLossOutput(torch.tensor(1.5), torch.tensor(1.0), torch.tensor(2.0)), 4)
    assert float(logged["train/loss_hyp"]) == 2.0  # unweighted
    assert float(logged["train/loss_hyp_weighted"]) == 0.5  # λ · loss_hyp, its part of loss
