"""The ``gradchain demo``: several optimizer configs train an MLP on the digits.

Each config is a plain JSON-able dict in declearn's schema, built into a
:class:`gradchain.Optimizer`; the run prints a progress bar per config, a
final table (test accuracy and loss, wall time, compile time) and saves a
plot of the loss curves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradchain.app.examples.digits import load_digits_split
from gradchain.app.examples.progress import EpochProgress
from gradchain.app.examples.training import TrainResult, train_classifier
from gradchain.optimizers.optimizer import Optimizer

__all__ = ["DEMO_CONFIGS", "format_table", "plot_losses", "run_demo", "train_config"]

DEMO_CONFIGS: dict[str, dict[str, Any]] = {
    "sgd": {"lrate": 0.1},
    "declearn pipeline: ridge + clipping + adam": {
        "lrate": 0.003,
        "w_decay": 1e-5,
        "regularizers": [["ridge", {"alpha": 1e-4}]],
        "modules": [["l2-global-clipping", {"max_norm": 1.0}], ["adam", {}]],
    },
    "normalized gradient + momentum, cosine lrate": {
        "lrate": ["cosine-annealing", {"base": 0.002, "max_lr": 0.05, "duration": 440}],
        "modules": [["l2-normalize", {"param_ndim": None}], ["momentum", {"beta": 0.9}]],
    },
    "nesterov with warmup": {
        "lrate": ["warmup", {"base": 0.05, "warmup": 50}],
        "modules": [["momentum", {"beta": 0.9, "nesterov": True}]],
    },
}


def train_config(
    config: Mapping[str, Any], epochs: int, batch_size: int, seed: int, label: str | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Build the Optimizer of ``config`` and train the digits MLP with it, with a live bar.

    The bar (labelled ``label``; none when ``quiet``) shows the compilation,
    then each epoch as it ends with its loss and throughput.
    """
    opt = Optimizer.from_config(config)
    data = load_digits_split(seed=seed)
    examples = max(1, len(data.x_train) // batch_size) * batch_size
    with EpochProgress(label or "training", epochs, examples, quiet=quiet) as bar:
        return train_classifier(opt, data, epochs=epochs, batch_size=batch_size, seed=seed,
                                on_epoch=bar.epoch, on_compiled=bar.compiled)


def format_table(results: Mapping[str, TrainResult]) -> str:
    """A fixed-width table: accuracy, loss, wall time and compile time per config."""
    width = max(len(name) for name in results) + 2
    header = f"{'config':<{width}}{'test acc':>9}{'test loss':>11}{'train s':>9}{'compile s':>11}"
    lines = [header, "-" * len(header)]
    for name, r in results.items():
        lines.append(
            f"{name:<{width}}{r.test_accuracy:>9.3f}{r.test_loss:>11.4f}{r.train_s:>9.2f}{r.compile_s:>11.2f}"
        )
    return "\n".join(lines)


def plot_losses(results: Mapping[str, TrainResult], path: Path, title: str = "gradchain demo") -> Path:
    """Save the training-loss curves of every config to ``path`` (PNG), titled ``title``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in results.items():
        ax.plot(range(1, len(r.losses) + 1), r.losses, label=f"{name} (acc {r.test_accuracy:.3f})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(f"{title}: MLP on scikit-learn's digits")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_demo(
    out_dir: Path, epochs: int = 20, batch_size: int = 64, seed: int = 0, quiet: bool = False
) -> dict[str, TrainResult]:
    """Train every demo config (a live bar each unless ``quiet``); print the table; save the plot and the configs."""
    results = {}
    for name, config in DEMO_CONFIGS.items():
        results[name] = train_config(config, epochs, batch_size, seed, label=name, quiet=quiet)
    print()
    print(format_table(results))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = plot_losses(results, out_dir / "demo_loss.png")
    (out_dir / "demo_configs.json").write_text(json.dumps(DEMO_CONFIGS, indent=2))
    print(f"\nloss curves: {path}\nconfigs:     {out_dir / 'demo_configs.json'}")
    return results
