"""What every command line of the project shares: the ``--help`` style."""

from __future__ import annotations

import argparse

__all__ = ["HelpFormatter"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` with each option's default and the description (its usage examples) kept as written.

    The default is appended as ``(default: X)`` unless the help text already speaks of its default,
    the option is required, a flag (``store_true``) or has no default (``None``).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.required or any(action.default is v for v in (None, False, argparse.SUPPRESS))
                or action.option_strings == [] and action.nargs in ("+", "*")):
            return text
        return super()._get_help_string(action)
