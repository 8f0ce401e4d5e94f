#!/usr/bin/env python
"""Train an MMSelfSup config with MMEngine's Runner (HCL components via ``custom_imports``).

    python tools/train.py mmconfigs/tiny/densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py --work-dir work_dirs/tiny
    tools/dist_train.sh mmconfigs/densecl-hcl_resnet50_8xb32-coslr-200e_coco.py 8           # torchrun, 8 processes

The options are those of OpenMMLab's ``tools/train.py``. On a machine without CUDA a distributed
launch uses gloo and CPU DDP (:func:`hcl_plugin.mmselfsup.runtime.prepare_distributed`).
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import warnings

from mmengine.config import Config, DictAction
from mmengine.runner import Runner


def parse_args() -> argparse.Namespace:
    from hcl_plugin.utils.cli import HelpFormatter

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--work-dir", help="the dir to save logs and models (default: work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", type=str, const="auto",
                        help="resume from this checkpoint; without a path, from the latest one in the work dir")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (AmpOptimWrapper)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config settings, key=value (e.g. train_cfg.max_iters=50)")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none", help="job launcher")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0,
                        help="set by the launcher (torch.distributed); not for manual use")
    args = parser.parse_args()
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if cfg.get("deprecated_config_name"):
        warnings.warn(f"{args.config} uses a deprecated config name ({cfg.deprecated_config_name}); the old "
                      "names stay as aliases for one release (CHANGELOG.md lists old -> new)", FutureWarning,
                      stacklevel=1)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir", None) is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        wrapper = cfg.optim_wrapper.get("type", "OptimWrapper")
        if wrapper not in ("OptimWrapper", "AmpOptimWrapper"):
            raise ValueError(f"--amp does not support the optimizer wrapper {wrapper!r}")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume

    import hcl_plugin.mmselfsup  # noqa: F401  (registers the components and the checkpoint loader)
    from hcl_plugin.mmselfsup.runtime import prepare_distributed

    prepare_distributed(cfg, args.launcher)
    runner = Runner.from_cfg(cfg)
    runner.train()
    if runner.rank == 0:
        print(f"wrote {cfg.work_dir}/ (checkpoints epoch_*.pth / iter_*.pth, last_checkpoint, logs in "
              f"{cfg.work_dir}/<timestamp>/)")
        print(f"next: python tools/extract_backbone.py <checkpoint from {cfg.work_dir}> backbone.pth, or "
              f"python tools/analyze.py <that checkpoint> --data <data_root of the config> --out outputs/analysis")


if __name__ == "__main__":
    main()
