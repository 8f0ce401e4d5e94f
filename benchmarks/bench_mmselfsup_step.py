"""Per-iteration time of ``HCLDenseCL`` vs MMSelfSup's ``DenseCL`` (and ``HCLMoCoV2`` vs ``MoCo``).

Models come from the tiny configs (``mmconfigs/tiny/*_synthetic.py``: ResNet-18, 64 px views, batch
16) built through MMSelfSup's registry; each iteration is the model's ``train_step`` (data
preprocessor, momentum update, all forwards, losses, backward, SGD step, queue updates) on one fixed
batch of real views made by the configs' own pipelines from the embedded data set (data loading runs
in worker processes and is not part of this number; ``bench_views.py`` measures it). Iterations
alternate HCL, baseline, baseline, HCL, ... and the table gives medians and the ratio. The paper
reports 0.757 vs 0.616 s/iter (1.23x) for MoCo on 4 GPUs.

``--hyp-image-size`` resizes only the two hyperbolic views (the config's ``scene_view_pipeline``), the
knob that trades the branch's extra backbone passes against resolution.

    python benchmarks/bench_mmselfsup_step.py [--steps 20] [--batch-size 16] [--image-size 64]
        [--hyp-image-size 64] [--depth 18] [--device cpu|cuda] [--out outputs/bench_mmselfsup_step.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAIRS = {"densecl": ("densecl_hcl_synthetic.py", "densecl_synthetic.py"),
         "mocov2": ("mocov2_hcl_synthetic.py", "mocov2_synthetic.py")}


def load_config(name: str, args: argparse.Namespace):
    from mmengine.config import Config

    cfg = Config.fromfile(str(ROOT / "mmconfigs" / "tiny" / name))
    cfg.model.backbone.depth = args.depth
    width = 512 if args.depth < 50 else 2048
    for key in ("neck", "hyp_neck"):
        if key in cfg.model:
            cfg.model[key].update(in_channels=width, hid_channels=width)
    dataset = cfg.train_dataloader.dataset
    dataset.data_root = str(args.embedded_dir) + "/"
    multiview = dataset.pipeline[2]
    multiview.object_transforms[0]["size"] = args.image_size
    if multiview.get("hyperbolic_views", True):
        multiview.scene_transforms[0]["scale"] = (args.hyp_image_size, args.hyp_image_size)
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", nargs="+", default=["densecl", "mocov2"], choices=sorted(PAIRS))
    parser.add_argument("--depth", type=int, default=18)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--hyp-image-size", type=int, default=None, help="default: --image-size")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--embedded-dir", type=Path, default=Path("data/embedded"))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_mmselfsup_step.json"))
    args = parser.parse_args()
    args.hyp_image_size = args.hyp_image_size or args.image_size
    warnings.filterwarnings("ignore")

    import hcl_plugin.mmselfsup  # noqa: F401
    from mmengine.dataset import default_collate
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmselfsup.registry import DATASETS, MODELS

    from hcl_plugin.lightly import ensure_embedded_dataset

    ensure_embedded_dataset(args.embedded_dir)
    init_default_scope("mmselfsup")
    results = {"device": args.device, "torch_threads": torch.get_num_threads(), "args": {k: str(v) for k, v in vars(args).items()}}
    for pair in args.pairs:
        models, batches, times = {}, {}, {"hcl": [], "baseline": []}
        for role, name in zip(("hcl", "baseline"), PAIRS[pair]):
            cfg = load_config(name, args)
            dataset = DATASETS.build(cfg.train_dataloader.dataset)
            torch.manual_seed(0)
            import numpy as np
            np.random.seed(0)
            batches[role] = default_collate([dataset[i] for i in range(args.batch_size)])
            torch.manual_seed(0)
            model = MODELS.build(cfg.model).to(args.device)
            model.init_weights()
            optim = build_optim_wrapper(model, dict(optimizer=dict(type="SGD", lr=0.03, momentum=0.9, weight_decay=1e-4)))
            models[role] = (model, optim)
        order = ["hcl", "baseline", "baseline", "hcl"]
        for step in range(args.warmup + args.steps):
            for role in order if step % 2 == 0 else order[::-1]:
                model, optim = models[role]
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                model.train_step(copy.deepcopy(batches[role]), optim)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                if step >= args.warmup:
                    times[role].append(time.perf_counter() - start)
        hcl, base = statistics.median(times["hcl"]), statistics.median(times["baseline"])
        results[pair] = {"hcl_s": hcl, "baseline_s": base, "ratio": hcl / base, "n": len(times["hcl"])}
        print(f"{pair}: HCL {hcl * 1000:.1f} ms / baseline {base * 1000:.1f} ms per iteration = {hcl / base:.2f}x "
              f"(target <= 1.25x; {len(times['hcl'])} interleaved iterations each)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print("| pair | HCL s/iter | baseline s/iter | ratio |\n|---|---|---|---|")
    for pair in args.pairs:
        r = results[pair]
        print(f"| {pair} | {r['hcl_s']:.3f} | {r['baseline_s']:.3f} | {r['ratio']:.2f}x |")


if __name__ == "__main__":
    main()
