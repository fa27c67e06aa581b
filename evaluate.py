"""Evaluate scores tables: frame and video AUC / EER / AP with bootstrap intervals, plots, a report.

    python evaluate.py runs/NAME/logreg/scores.csv runs/NAME/svm/scores.csv --out reports/NAME
    python evaluate.py --predictions other_tool.json --out reports/other
    python evaluate.py matrix --cache cache/NAME.h5 --head logreg --out reports/matrix

Thresholds for accuracy / F1 come from the validation rows (EER threshold), never from test rows.
"""

from __future__ import annotations

import argparse
import sys

from clipforensics.core.errors import cli_entry
from clipforensics.evaluate.evaluation import EvaluateSettings, evaluate
from clipforensics.evaluate.matrix import MatrixSettings, cross_manipulation
from clipforensics.data.protocol import ProtocolSettings
from clipforensics.core.settings import add_arguments, from_namespace


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scores", nargs="*", help="scores.csv files written by fit_heads.py / finetune_lora.py")
    add_arguments(parser, EvaluateSettings, "evaluation")
    return parser


def build_matrix_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evaluate.py matrix",
                                     description="Cross-manipulation matrix: fit a head per training "
                                                 "manipulation, test on each manipulation.")
    add_arguments(parser, MatrixSettings, "matrix")
    add_arguments(parser, ProtocolSettings, "protocol")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["matrix"]:
        ns = build_matrix_parser().parse_args(argv[1:])
        cross_manipulation(from_namespace(MatrixSettings, ns), from_namespace(ProtocolSettings, ns))
        return 0
    ns = build_parser().parse_args(argv)
    evaluate(ns.scores, from_namespace(EvaluateSettings, ns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
