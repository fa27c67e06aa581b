"""Fit cheap heads (logistic regression, SVM, ridge, zero-shot prompts, one-class) on a feature cache.

    python fit_heads.py --cache cache/NAME.h5 --heads logreg,svm,zeroshot-v2 --out runs/NAME
    python fit_heads.py --cache cache/ffpp.h5 --test-cache cache/celebdf.h5 --out runs/ffpp   # train here, test there
    python fit_heads.py --cache cache/NAME.h5 --heads logreg --layer 8 --out runs/NAME-l8   # a stored block
    python fit_heads.py --cache cache/NAME.h5 --heads logreg --layer-sweep --out runs/NAME-layers

Hyper-parameters are chosen on the validation split (video AUC), never on test. Each head writes
runs/NAME/<head>/{model.joblib, head.json, scores.csv, scores.json}; evaluate.py reads the scores.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: Ctrl-C while they load is one line, not a traceback
    from clipforensics.core.errors import quiet_interrupts

    quiet_interrupts()

import argparse
from pathlib import Path

from clipforensics.core.errors import cli_entry
from clipforensics.core.settings import from_namespace, settings_parser
from clipforensics.data.protocol import CrossSettings, ProtocolSettings
from clipforensics.heads.settings import FitSettings


def build_parser() -> argparse.ArgumentParser:
    parser = settings_parser(__doc__, (FitSettings, "heads"), (ProtocolSettings, "protocol"),
                             (CrossSettings, "other data sets"))
    parser.add_argument("--list-heads", action="store_true", help="list the heads this cache supports and exit")
    return parser


def list_heads(cache: str) -> None:
    """Print the heads `cache` supports (the prompt heads need its prompt embeddings)."""
    from clipforensics.data.cache import read_cache
    from clipforensics.heads.heads import available_heads
    print("\n".join(available_heads(read_cache(cache).prompts)))


@cli_entry
def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    if ns.list_heads:
        list_heads(ns.cache)
        return 0
    settings, protocol = from_namespace(FitSettings, ns), from_namespace(ProtocolSettings, ns)
    # The stage (scikit-learn, h5py) loads only now: --help and a bad option answer without it.
    if settings.layer_sweep:
        from clipforensics.studies.layer_sweep import check_sweep_options, sweep
        check_sweep_options(settings.layer, ns.test_cache)
        sweep(settings.cache, settings.heads, protocol, Path(settings.out), overwrite=settings.overwrite)
    else:
        from clipforensics.heads.fit import fit_heads
        fit_heads(settings, protocol, from_namespace(CrossSettings, ns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
