"""docs/options.md is what the parsers say: regenerated from them and compared, so no rename leaves the page behind."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("options_page", ROOT / "docs" / "options.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_options_page_is_the_parsers_own() -> None:
    generator = _generator()
    page = generator.page()
    assert (ROOT / "docs" / "options.md").read_text() == page, "run .venv/bin/python docs/options.py"
    assert "| `--amp` | `--train-precision` | finetune_lora.py |" in page  # renames come from the fields' `formerly`


def test_no_option_name_has_two_meanings_among_the_renamed() -> None:
    """An old name is never still taken, with its old meaning, by a script that renamed it."""
    generator = _generator()
    for title, parser in generator.parsers():
        taken = {flag for action in parser._actions for flag in action.option_strings}
        assert not set(getattr(parser, "renamed", {})) & taken, title
