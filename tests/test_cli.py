"""Every script's ``--help``: exits 0, shows the defaults, and every option has a help text."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The scripts (files with a ``__main__`` block; helper modules such as benchmarks/peak_memory.py are not).
SCRIPTS = sorted(str(p.relative_to(ROOT)) for folder in ("tools", "lightly_examples", "benchmarks")
                 for p in (ROOT / folder).glob("*.py") if '__name__ == "__main__"' in p.read_text())
#: Parsers not (yet) brought to the help-text rule; their --help must still exit 0.
HELP_TEXT_EXEMPT: set = set()

def run_help(script: str) -> subprocess.CompletedProcess:
    """``script --help``, from the one forked driver run of tests/cli_helpers.py."""
    from tests.cli_helpers import all_help_targets, help_results

    result = help_results(all_help_targets())[script]
    return subprocess.CompletedProcess([script, "--help"], result["returncode"], result["stdout"], result["stderr"])


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_help_exits_0_and_every_option_has_a_help_text(script):
    result = run_help(script)
    missing_module = re.search(r"No module named '([^']+)'", result.stderr)
    if result.returncode != 0 and missing_module:
        pytest.skip(f"{script} needs the optional package {missing_module.group(1)!r}, not installed here")
    assert result.returncode == 0, f"{script} --help failed:\n{result.stderr[-3000:]}"
    assert "usage:" in result.stdout
    reports = [json.loads(line[len("MISSING_HELP "):]) for line in result.stderr.splitlines()
               if line.startswith("MISSING_HELP ")]
    assert reports, f"{script}: no argparse parser ran"
    if script not in HELP_TEXT_EXEMPT:
        assert reports[-1] == [], f"{script}: options without a help text: {reports[-1]}"
    assert not re.search(r"\bissue \d+", result.stdout, re.IGNORECASE), f"{script}: --help mentions an issue number"


def test_lightly_examples_parser_shows_defaults_one_spelling_per_precision_and_the_box_rule():
    from hcl_plugin.lightly.models import MoCoHCL
    from hcl_plugin.lightly.training import build_parser

    parser = build_parser(MoCoHCL, "MoCo-v2 + HCL")
    assert [a.dest for a in parser._actions if not a.help] == []
    text = " ".join(parser.format_help().split())
    assert "(default: 0.05)" in text and "(default: outputs/lightly)" in text
    assert "{fp32,bf16,fp16}" in text
    assert "area" in " ".join(a.help for a in parser._actions if a.dest == "min_box_size")


def test_old_precision_spellings_still_work_with_a_deprecation_message():
    from hcl_plugin.lightly.models import MoCoHCL
    from hcl_plugin.lightly.training import build_parser

    with pytest.warns(FutureWarning, match="--precision 16-mixed is deprecated.*--precision fp16"):
        args = build_parser(MoCoHCL).parse_args(["--precision", "16-mixed"])
    assert args.precision == "fp16"
    assert build_parser(MoCoHCL).parse_args([]).precision == "fp32"


def test_analyze_help_examples_use_paths_the_tools_write():
    result = run_help("tools/analyze.py")
    assert result.returncode == 0
    assert "outputs/lightly/final.ckpt" in result.stdout and "--data data/embedded" in result.stdout
    assert "data/scenes" not in result.stdout and "last.ckpt --data" not in result.stdout
