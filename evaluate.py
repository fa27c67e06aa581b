"""Evaluate scores tables: frame and video AUC / EER / AP with bootstrap intervals, plots, a report.

    python evaluate.py runs/NAME/logreg/scores.csv runs/NAME/svm/scores.csv --out reports/NAME
    python evaluate.py --predictions other_tool.json --out reports/other
    python evaluate.py matrix --cache cache/NAME.h5 --head logreg --out reports/matrix

Thresholds for accuracy / F1 come from the validation rows (EER threshold), never from test rows.
"""

from __future__ import annotations

import argparse
import sys

from clipforensics.core.commands import Command, parse_command
from clipforensics.core.errors import cli_entry
from clipforensics.core.settings import add_arguments, from_namespace
from clipforensics.data.protocol import ProtocolSettings
from clipforensics.evaluate.evaluation import EvaluateSettings, evaluate
from clipforensics.evaluate.matrix import MatrixSettings, cross_manipulation


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scores", nargs="*", help="scores.csv files written by fit_heads.py / finetune_lora.py")
    add_arguments(parser, EvaluateSettings, "evaluation")


def add_matrix_arguments(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, MatrixSettings, "matrix")
    add_arguments(parser, ProtocolSettings, "protocol")


COMMANDS = {
    "report": Command("metrics, figures and report.html for scores files (the default command)",
                      add_report_arguments,
                      lambda ns: evaluate(ns.scores, from_namespace(EvaluateSettings, ns))),
    "matrix": Command("cross-manipulation matrix: fit a head per training manipulation, test on each manipulation",
                      add_matrix_arguments,
                      lambda ns: cross_manipulation(from_namespace(MatrixSettings, ns),
                                                    from_namespace(ProtocolSettings, ns))),
}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    command, ns = parse_command(COMMANDS, "report", list(sys.argv[1:] if argv is None else argv), __doc__)
    command.run(ns)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
