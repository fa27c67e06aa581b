"""Evaluate scores tables: frame and video AUC / EER / AP with bootstrap intervals, plots, a report.

    python evaluate.py runs/NAME/logreg/scores.csv runs/NAME/svm/scores.csv --out reports/NAME
    python evaluate.py --predictions other_tool.json --out reports/other
    python evaluate.py matrix --cache cache/NAME.h5 --heads logreg --out reports/matrix
    python evaluate.py matrix --cache cache/ffpp.h5 --test-cache cache/celebdf.h5 --out reports/generalisation
    python evaluate.py robustness runs/NAME runs/NAME-lora --out reports/NAME-robustness
    python evaluate.py methods runs/NAME-lora runs/NAME-svd runs/NAME-layernorm --out reports/NAME-methods

Thresholds for accuracy / F1 come from the validation rows (EER threshold), never from test rows.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: Ctrl-C while they load is one line, not a traceback
    from clipforensics.core.errors import quiet_interrupts

    quiet_interrupts()

import argparse

from clipforensics.core.commands import Command, run_command
from clipforensics.core.errors import cli_entry
from clipforensics.core.settings import add_arguments, from_namespace
from clipforensics.data.protocol import CrossSettings, ProtocolSettings
from clipforensics.evaluate.settings import EvaluateSettings
from clipforensics.studies.settings import MatrixSettings, MethodsSettings, RobustnessSettings


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scores", nargs="*", help="scores.csv files written by fit_heads.py / finetune_lora.py")
    add_arguments(parser, EvaluateSettings, "evaluation")


def add_robustness_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", help="run folders written by fit_heads.py (runs/NAME), head folders "
                                                "(runs/NAME/logreg) or LoRA run folders (finetune_lora.py --out)")
    add_arguments(parser, RobustnessSettings, "robustness")


def add_methods_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", help="finetune_lora.py run folders (--out), one per method, trained on "
                                                "the same base cache and protocol")
    add_arguments(parser, MethodsSettings, "methods")


def add_matrix_arguments(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, MatrixSettings, "matrix")
    add_arguments(parser, ProtocolSettings, "protocol")
    add_arguments(parser, CrossSettings, "other data sets")
    parser.set_defaults(train_fakes=None, test_fakes=None)  # the matrix takes every manipulation: refused if given


# Each command imports its stage when it runs, after parsing: `--help` and a bad option answer without loading
# scikit-learn, matplotlib or h5py.

def run_report(ns: argparse.Namespace) -> None:
    from clipforensics.evaluate.evaluation import evaluate
    evaluate(ns.scores, from_namespace(EvaluateSettings, ns))


def run_matrix(ns: argparse.Namespace) -> None:
    from clipforensics.studies.matrix import cross_manipulation
    cross_manipulation(from_namespace(MatrixSettings, ns), from_namespace(ProtocolSettings, ns),
                       from_namespace(CrossSettings, ns))


def run_robustness(ns: argparse.Namespace) -> None:
    from clipforensics.studies.robustness import robustness
    robustness(ns.runs, from_namespace(RobustnessSettings, ns))


def run_methods(ns: argparse.Namespace) -> None:
    from clipforensics.studies.methods import compare_methods
    compare_methods(ns.runs, from_namespace(MethodsSettings, ns))


COMMANDS = {
    "report": Command("metrics, figures and report.html for scores files (the default command)",
                      add_report_arguments, run_report),
    "matrix": Command("generalisation matrix: a head per training source, tested on each manipulation and data set",
                      add_matrix_arguments, run_matrix),
    "robustness": Command("AUC of every fitted head and LoRA run on each perturbed copy of its cache "
                          "(extract --perturb), no refit", add_robustness_arguments, run_robustness),
    "methods": Command("fine-tuning methods side by side: trainable parameters, in-domain and unseen video AUC, "
                       "paired differences against one run (--compare-to, default the LoRA run)", add_methods_arguments,
                       run_methods),
}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    return run_command(COMMANDS, "report", argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
