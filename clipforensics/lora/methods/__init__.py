"""Fine-tuning methods (`finetune_lora.py --method`): one module each, registered in `base.METHODS` under the
module's own name.

Every method module of this package is imported here, so a new method is one new module and nothing else. The
option's help lists the same modules without importing them (`lora.settings.method_names`), which is why a module
must register under its name: checked here, on import.
"""

import importlib

from clipforensics.lora.methods.base import METHODS, Method
from clipforensics.lora.settings import method_names

__all__ = ["METHODS", "Method"]

for _name in method_names():
    importlib.import_module(f"{__name__}.{_name}")
if sorted(METHODS) != list(method_names()):
    raise ImportError(f"each module of {__name__} must register one method under its own name: modules "
                      f"{', '.join(method_names())}, methods {', '.join(sorted(METHODS))}")
