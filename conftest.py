"""Collection rules for the whole tree (tests and the package's doctests).

The Flower modules import ``flwr`` (the ``flower`` extra): without it their
doctests are not collected, and tests/test_federated_flower.py skips with a
reason instead.
"""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("flwr") is None:
    collect_ignore += ["gradchain/federated/flower.py", "gradchain/app/examples/flower_digits.py"]
