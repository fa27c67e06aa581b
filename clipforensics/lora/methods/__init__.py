"""Fine-tuning methods (`finetune_lora.py --method`): one module each, registered in `base.METHODS`.

Every module of this package is imported here, so a new method is one new module and nothing else.
"""

import importlib
import pkgutil

from clipforensics.lora.methods.base import METHODS, Method

__all__ = ["METHODS", "Method"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
