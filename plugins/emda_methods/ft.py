"""FT: supervised training on the source; adaptation only by finetuning on target labels.

The baseline of Roels et al. (2019). Target patches are never looked at during
``emda adapt``; ``emda finetune`` then trains on whatever target labels exist.
"""

from emda.methods import Method, hookimpl


class FineTuning(Method):
    name = "ft"
    description = "Source-only training; adapt by finetuning on target labels (baseline)."
    uses_target = False


@hookimpl
def emda_register_methods(register):
    register.add(FineTuning)
