"""The ``gradchain`` command.

``gradchain demo`` trains a small model with a declearn-style Optimizer and
prints the loss as it goes.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp

from gradchain.optimizer import Optimizer


def _demo(args: argparse.Namespace) -> int:
    key_x, key_w = jax.random.split(jax.random.PRNGKey(args.seed))
    x = jax.random.normal(key_x, (512, 8))
    true_w = jax.random.normal(key_w, (8,))
    y = (x @ true_w > 0).astype(jnp.float32)

    def loss_fn(params):
        logits = x @ params["w"] + params["b"]
        return jnp.mean(jnp.logaddexp(0.0, logits) - y * logits)

    opt = Optimizer(lrate=0.5, w_decay=1e-4)
    params = {"w": jnp.zeros(8), "b": jnp.zeros(())}
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        params, state = opt.apply_gradients(params, grads, state)
        return params, state, loss

    start = time.perf_counter()
    for epoch in range(args.steps):
        params, state, loss = step(params, state)
        if epoch % 20 == 0 or epoch == args.steps - 1:
            print(f"step {epoch:4d}  loss {float(loss):.4f}")
    print(f"trained {args.steps} steps in {time.perf_counter() - start:.2f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradchain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a small model and print its loss")
    demo.add_argument("--steps", type=int, default=100)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
