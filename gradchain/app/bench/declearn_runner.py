"""Run a declearn Optimizer config on saved params and gradients (declearn's own venv).

Usage: python declearn_runner.py CONFIG.json DATA.npz OUT.npz STEPS

Imports declearn and numpy only: it runs in the benchmark's own virtual
environment where declearn is installed, never in gradchain's.
"""

import json
import sys
import time

import numpy as np
from declearn.model.sklearn import NumpyVector
from declearn.optimizer import Optimizer


class _Weights:
    """The one Model method the Optimizer needs: the current weights."""

    def __init__(self, weights):
        self.weights = weights

    def get_weights(self, trainable=False):
        return self.weights


def main():
    config_path, data_path, out_path, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with open(config_path) as handle:
        config = json.load(handle)
    data = np.load(data_path)
    names = sorted({k.split("/", 1)[1] for k in data.files})
    params = NumpyVector({n: data["params/" + n] for n in names})
    grads = NumpyVector({n: data["grads/" + n] for n in names})
    opt = Optimizer.from_config(config)
    model = _Weights(params)
    first = opt.compute_updates_from_gradients(model, grads)
    start = time.perf_counter()
    for _ in range(steps):
        opt.compute_updates_from_gradients(model, grads)
    elapsed = time.perf_counter() - start
    np.savez(out_path, seconds=elapsed, steps=steps, **{"first/" + n: first.coefs[n] for n in names})


if __name__ == "__main__":
    main()
