"""``--help`` of many scripts and modules from one interpreter: the heavy packages are imported once, then
each target runs as ``__main__`` in a forked child (its own ``sys.argv``, ``sys.path`` and module state),
with its stdout, stderr and exit status captured. Every ``ArgumentParser`` that parses reports its options
without a help text on stderr (``MISSING_HELP <json>``)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
Target = Tuple[str, str]  # ("script", "tools/x.py") or ("module", "hcl_plugin.x")

DRIVER = r"""
import argparse, io, json, os, runpy, sys, tempfile
for name in ("numpy", "torch", "torchvision", "matplotlib.pyplot", "sklearn", "scipy.cluster.hierarchy",
             "mmengine.runner", "mmcv.transforms", "mmselfsup.models", "mmdet.models", "lightly.loss",
             "pytorch_lightning", "hcl_plugin.mmselfsup", "hcl_plugin.lightly.models"):
    try:
        __import__(name)
    except Exception:
        pass
original = argparse.ArgumentParser.parse_known_args
def parse_known_args(self, args=None, namespace=None):
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in self._actions
               if not isinstance(a, argparse._HelpAction) and not a.help]
    print("MISSING_HELP " + json.dumps(missing), file=sys.stderr)
    return original(self, args, namespace)
argparse.ArgumentParser.parse_known_args = parse_known_args
results = {}
for kind, target in json.loads(sys.argv[1]):
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        sys.stdout = io.TextIOWrapper(out, write_through=True)
        sys.stderr = io.TextIOWrapper(err, write_through=True)
        try:
            if kind == "module":
                sys.argv = [target, "--help"]
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                sys.argv = [target, "--help"]
                sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
                runpy.run_path(target, run_name="__main__")
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
            if not isinstance(exit.code, (int, type(None))):
                print(exit.code, file=sys.stderr)
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    out.seek(0); err.seek(0)
    results[target] = {"returncode": os.waitstatus_to_exitcode(status), "stdout": out.read().decode(errors="replace"),
                       "stderr": err.read().decode(errors="replace")}
print("RESULTS " + json.dumps(results))
"""


@functools.lru_cache(maxsize=None)
def _run(targets: Tuple[Target, ...]) -> Dict[str, dict]:
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(list(targets))], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    assert done.returncode == 0 and lines, f"the --help driver failed:\n{done.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULTS "):])


def help_results(targets: Sequence[Target]) -> Dict[str, dict]:
    """``{target: {returncode, stdout, stderr}}`` of ``target --help`` for every target (run once per session)."""
    return _run(tuple(sorted(set(map(tuple, targets)))))


def all_help_targets() -> Tuple[Target, ...]:
    """Every target the test files ask about, so one driver run serves them all."""
    from tests.test_cli import SCRIPTS
    from tests.test_readme import python_targets

    return tuple(sorted({("script", s) for s in SCRIPTS} | {tuple(t) for t in python_targets()}
                        | set(EXTRA_MODULES)))


#: modules with a command line that the test files check beyond the README's
EXTRA_MODULES: Tuple[Target, ...] = (("module", "hcl_plugin.lightly.image_pretraining"),)
