"""Progress bars only on a terminal; the precision line says who chose the precision; evaluate's tables on request."""
from __future__ import annotations

import io

from clipforensics.core.progress import progress, say
from clipforensics.extract.encoders import load_model
from clipforensics.extract.models import precision_chosen_by
from clipforensics.extract.settings import ModelSettings


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_draws_on_a_terminal_only() -> None:
    log, tty = io.StringIO(), Terminal()
    for stream in (log, tty):
        with progress(total=3, desc="extract", file=stream) as bar:
            bar.update(3)
    assert log.getvalue() == "" and "extract" in tty.getvalue() and "3/3" in tty.getvalue()
    hidden = Terminal()
    with progress(total=3, desc="epoch", file=hidden, enabled=False) as bar:
        bar.update(3)
    assert hidden.getvalue() == ""


def test_say_prints_one_line() -> None:
    out = io.StringIO()
    say("a line", file=out)
    assert out.getvalue() == "a line\n"


def test_precision_line_names_who_chose_it(capsys) -> None:
    settings = ModelSettings(model="tiny-vit", pretrained="none")
    load_model(settings, "cpu", "fp32")
    assert "precision fp32: asked for (--precision fp32)" in capsys.readouterr().err
    with precision_chosen_by("fine-tuning trains fp32 weights"):
        loaded = load_model(settings, "cpu", "fp32")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("precision")]
    assert lines == ["precision fp32: fine-tuning trains fp32 weights"]
    assert loaded.precision_reason == "fine-tuning trains fp32 weights"
    with precision_chosen_by("the base cache's precision", say=False):
        quiet = load_model(settings, "cpu", "fp32")
    assert "precision" not in capsys.readouterr().err and quiet.precision_reason == "the base cache's precision"
