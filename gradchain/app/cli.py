"""The ``gradchain`` command (also ``python -m gradchain``).

Subcommands::

    gradchain demo [--epochs N --out DIR]        train the digits MLP with several configs
    gradchain train CONFIG.json [--epochs N --batch-size B --seed S --out DIR]
    gradchain list [--json]                      every registered plug-in and scheduler
    gradchain validate CONFIG.json [--params]    check an Optimizer config without training
                                                 (--params: each digits-MLP parameter's group)
    gradchain bench [--quick --gpu --out DIR]    the benchmark harness (--gpu: the GPU set alone)
    gradchain federated --engine {simulation,flower} [--clients N --rounds R --strategy S --seed S]

Bad input (an unreadable, non-UTF-8, malformed or too deeply nested
config, an unknown plug-in, a config that cannot train the demo model, an
out-of-range option, an ``--out`` that is a file) gets a one-line error
naming the problem and exit code 2, before any training starts;
``validate`` runs the same config checks as ``train``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

import gradchain as gc
from gradchain.app.bench import main as bench_main
from gradchain.app.examples.demo import format_table, plot_losses, run_demo, train_config
from gradchain.app.examples.digits import MLP, load_digits_split
from gradchain.app.examples.federated import (
    STRATEGIES,
    final_line,
    load_experiment,
    run_simulation,
    save_params,
)
from gradchain.app.flower_local import FederationError, run_local_federation
from gradchain.optimizers.optimizer import Optimizer

__all__ = ["describe_registries", "main"]

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C
DIGITS_FEATURES = 64  # the demo MLP's input: 8x8 images


class BadInputError(Exception):
    """A user error reported in one line (exit code 2)."""


def _one_line(error: BaseException) -> str:
    message = error.args[0] if error.args and isinstance(error.args[0], str) else str(error) or repr(error)
    return " ".join(message.split())


def _read_text(path: str) -> str:
    """The file's text: UTF-8 (a byte-order mark is allowed); anything else is bad input."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise BadInputError(f"cannot read {path}: {error.strerror or error}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BadInputError(f"{path} is UTF-16 text; save it as UTF-8.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadInputError(
            f"{path} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "is it a binary file?"
        ) from None


def _load_config(path: str) -> tuple[dict[str, Any], Any]:
    """Read ``path`` as JSON and build the Optimizer it describes."""
    text = _read_text(path)
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInputError(f"{path} is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None
    except RecursionError:
        raise BadInputError(f"{path} nests JSON too deeply to be a config.") from None
    try:
        return config, Optimizer.from_config(config)
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise BadInputError(f"{path}: {_one_line(error)}") from None
    except RecursionError:
        raise BadInputError(f"{path} nests its config too deeply.") from None


def _check_trains_the_demo_model(path: str, opt: Any) -> None:
    """Build the state for the demo MLP and trace one update, as ``train`` will (nothing runs)."""
    params = jax.eval_shape(MLP().init, jax.random.PRNGKey(0), jnp.zeros((1, DIGITS_FEATURES)))
    try:
        state = jax.eval_shape(opt.init, params)
        jax.eval_shape(opt.update, params, state, params)
    except Exception as error:  # whatever the config's plug-ins raise on this model: the config's fault
        raise BadInputError(f"{path}: cannot train the demo model: {_one_line(error)}") from None


def _check_run_options(args: argparse.Namespace, train_examples: int) -> Path:
    """``--epochs``, ``--batch-size``, ``--seed`` and ``--out``, checked before any training; the out dir."""
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise BadInputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if args.batch_size > train_examples:
        raise BadInputError(
            f"--batch-size {args.batch_size} is larger than the {train_examples} training examples."
        )
    if not 0 <= args.seed < 2**32:
        raise BadInputError(f"--seed must be an integer in [0, 2**32 - 1], got {args.seed}.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is an existing file, not a directory.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInputError(f"--out {out}: cannot create the directory ({error.strerror or error}).") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise BadInputError(f"--out {out} is not writable.")
    return out


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return "(required)"


def describe_registries() -> dict[str, dict[str, dict[str, Any]]]:
    """``{family: {name: {"class", "summary", "arguments": {arg: default}}}}`` of every registry."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for family, classes in (("modules", gc.modules.registry.snapshot()), ("regularizers", gc.regularizers.registry.snapshot()),
                            ("constraints", gc.constraints.registry.snapshot()), ("schedulers", gc.schedules.registry.snapshot())):
        out[family] = {
            name: {
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "summary": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
                "arguments": {f.name: _default(f) for f in cls.config_fields()},
            }
            for name, cls in sorted(classes.items())
        }
    return out


def _cmd_list(args: argparse.Namespace) -> int:
    described = describe_registries()
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for family, entries in described.items():
        print(f"{family}:")
        for name, info in entries.items():
            arguments = ", ".join(f"{k}={v!r}" if v != "(required)" else k for k, v in info["arguments"].items())
            print(f"  {name}({arguments})")
            print(f"      {info['summary']}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    _, opt = _load_config(args.config)
    _check_trains_the_demo_model(args.config, opt)
    names = [p.name for group in (opt.regularizers, opt.modules, opt.constraints) for p in group]
    print(f"{args.config}: valid Optimizer config ({len(names)} plug-ins: {', '.join(names) or 'none'}).")
    if args.params:
        _print_groups(opt)
    return 0


def _print_groups(opt: Optimizer) -> None:
    """Each parameter of the demo MLP (`gradchain train`'s model) with its group (checked by validate)."""
    params = jax.eval_shape(MLP().init, jax.random.PRNGKey(0), jnp.zeros((1, DIGITS_FEATURES)))
    paths = gc.tree.paths(params)
    labels = opt.grouped.leaf_labels(params) if opt.grouped is not None else ("default",) * len(paths)
    for name, label in zip(paths, labels):
        print(f"  {name}: {label}")


def _cmd_train(args: argparse.Namespace) -> int:
    config, opt = _load_config(args.config)
    out = _check_run_options(args, len(load_digits_split(seed=0).x_train))
    _check_trains_the_demo_model(args.config, opt)
    result = train_config(config, args.epochs, args.batch_size, args.seed,
                          label=f"gradchain train {args.config}", quiet=args.quiet)
    results = {Path(args.config).stem: result}
    print(format_table(results))
    plot = plot_losses(results, out / "loss.png", title=f"gradchain train {Path(args.config).name}")
    metrics = {"config": config, "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
               "losses": result.losses, "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
               "train_s": result.train_s, "compile_s": result.compile_s}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"wrote {out / 'metrics.json'} and {plot}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    out = _check_run_options(args, len(load_digits_split(seed=0).x_train))
    run_demo(out, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, quiet=args.quiet)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    return bench_main(args.rest)  # the harness parses its own options


def _cmd_federated(args: argparse.Namespace) -> int:
    for name in ("clients", "rounds"):
        if getattr(args, name) < 1:
            raise BadInputError(f"--{name} must be >= 1, got {getattr(args, name)}.")
    try:
        experiment = load_experiment(args.clients, args.seed)
    except ValueError as error:  # too many clients for the data
        raise BadInputError(f"--clients: {error}") from None
    from tqdm import tqdm  # an optional dependency (gradchain[examples])

    label = f"gradchain federated --engine {args.engine} --strategy {args.strategy}"
    with tqdm(total=args.rounds, desc=label, unit="round", disable=args.quiet, dynamic_ncols=True) as bar:
        def on_round(record: dict[str, Any]) -> None:
            if not args.quiet:
                bar.write(f"round {record['round']}/{args.rounds}  test accuracy {record['accuracy']:.4f}  "
                          f"train loss {record['train_loss']:.4f}")
            bar.update(1)
            bar.set_postfix(acc=f"{record['accuracy']:.3f}")

        try:
            if args.engine == "simulation":
                params = run_simulation(args.clients, args.rounds, args.strategy, args.seed, on_round)
            else:  # tears the federation down on the way out, whatever happens
                params = run_local_federation(args.clients, args.rounds, args.strategy, args.seed, on_round)
        except FederationError as error:
            bar.close()
            print(f"gradchain: error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            bar.close()
            print("gradchain: interrupted; every process of the run was stopped.", file=sys.stderr)
            return EXIT_INTERRUPTED
    if args.out:
        save_params(params, Path(args.out))
    print(final_line(params, experiment))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradchain", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train the digits MLP with several optimizer configs",
                          description="Train the digits MLP with four optimizer configs; print a table, save the loss curves.")
    _training_options(demo, out="out", out_help="directory for the loss plot and the configs (default: out/)")
    demo.set_defaults(func=_cmd_demo)

    train = sub.add_parser("train", help="train the digits MLP with an Optimizer config (JSON)",
                           description="Train the digits MLP with the Optimizer a JSON config describes.")
    train.add_argument("config", help="an Optimizer config in declearn's schema (JSON file)")
    _training_options(train, out="out/train", out_help="directory for metrics.json and loss.png (default: out/train/)")
    train.set_defaults(func=_cmd_train)

    listing = sub.add_parser("list", help="every registered plug-in and scheduler with its arguments",
                             description="Every registered module, regularizer, constraint and scheduler, with its arguments.")
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing.set_defaults(func=_cmd_list)

    validate = sub.add_parser("validate", help="check an Optimizer config without training",
                              description="Check an Optimizer config: build it and report its plug-ins, without training.")
    validate.add_argument("config", help="an Optimizer config in declearn's schema (JSON file)")
    validate.add_argument("--params", action="store_true",
                          help="list the parameters of the digits MLP (`gradchain train`'s model) with their group")
    validate.set_defaults(func=_cmd_validate)

    federated = sub.add_parser(
        "federated", help="federated digits: in-process simulation or a local Flower federation",
        description="Federated training on the digits split by label; both engines print the same last line for a seed.")
    federated.add_argument("--engine", choices=("simulation", "flower"), default="simulation",
                           help="in-process (simulation) or a real local Flower federation (default: simulation)")
    federated.add_argument("--clients", type=int, default=3, help="number of clients, all taking part in every round (default: 3)")
    federated.add_argument("--rounds", type=int, default=2, help="number of rounds (default: 2)")
    federated.add_argument("--strategy", choices=STRATEGIES, default="scaffold", help="the federated algorithm (default: scaffold)")
    federated.add_argument("--seed", type=int, default=0, help="seed of the split, the init and the clients' batches (default: 0)")
    federated.add_argument("--out", default=None, help="save the final global params here (.npz)")
    federated.add_argument("--quiet", action="store_true", help="no progress bar and no per-round lines, only the last line")
    federated.set_defaults(func=_cmd_federated)

    bench = sub.add_parser("bench", help="the benchmark harness (see `gradchain bench --help`)", add_help=False)
    bench.set_defaults(func=_cmd_bench)
    return parser


def _training_options(parser: argparse.ArgumentParser, out: str, out_help: str) -> None:
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training set (default: 20)")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per step (default: 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data split, the init and the shuffling (default: 0)")
    parser.add_argument("--out", default=out, help=out_help)
    parser.add_argument("--quiet", action="store_true", help="no progress bars (the results are still printed)")


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status (2 for bad input, with a one-line message)."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        args.rest = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.func(args)
    except BadInputError as error:
        print(f"gradchain: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. `gradchain list | head`: the reader left, nothing to say
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
