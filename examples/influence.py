"""Influence functions on digits: which training images drive a wrong prediction.

    python examples/influence.py [--quick] [--out DIR] [--seed S]

A softmax (multinomial logistic) regression on the 64 pixels of scikit-learn's 8×8 digits,
with an L2 penalty so that its Hessian is positive definite, is trained to its minimum by
Newton's method: each step solves H d = ∇L by conjugate gradients on Hessian-vector products
(`gradtx.curvature.inverse_hvp`). For a misclassified test digit, `gradtx.curvature.influence`
then gives every training image's influence on that digit's test loss (Koh & Liang, ICML 2017),

    I(z_i) = −∇L_test(θ)ᵀ H⁻¹ ∇ℓ(z_i, θ),

from one inverse Hessian-vector product and one pass over the training set. Positive: up-weighting
the image raises the test loss (harmful); negative: it lowers it (helpful). The script prints the
most helpful and the most harmful training digits, checks the prediction for the most harmful and
the most helpful one by actually retraining without it (leave-one-out changes the test loss by
about −I/N), and draws them (influence_digits.png).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import add_common_args, figure_dir, plt, save_figure

from gradtx.curvature import influence, inverse_hvp

L2 = 1e-3  # strength of the L2 penalty on the weights
SHOW = 8  # helpful and harmful images shown


def load(seed: int, train_size: int | None):
    """Digits scaled to [0, 1] (the pixels are the images of the figure), every fifth digit of each
    class (in a seeded random order) held out for testing."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(y))
    rank = np.empty(len(y), np.int64)
    for c in range(10):  # the position of each example among its class, in the shuffled order
        members = order[y[order] == c]
        rank[members] = np.arange(len(members))
    test = order[rank[order] % 5 == 0]
    train = order[rank[order] % 5 != 0][:train_size]
    return x[train], y[train], x[test], y[test]


def loss(params, x, y):
    """Mean cross-entropy of the batch plus (L2/2)‖W‖²: every example's loss carries the penalty."""
    logits = x @ params["w"] + params["b"]
    nll = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
    return nll + 0.5 * L2 * jnp.sum(params["w"] ** 2)


grad_fn = jax.jit(jax.value_and_grad(loss))


def train(x, y, params, steps: int):
    """Newton's method, each step an inverse Hessian-vector product by CG; returns params, gradient norm."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    for _ in range(steps):
        _, g = grad_fn(params, x, y)
        step, _ = inverse_hvp(loss, params, g, x, y, tol=1e-5)
        params = jax.tree.map(lambda p, d: p - d, params, step)
    _, g = grad_fn(params, x, y)
    return params, float(jnp.sqrt(sum(jnp.sum(v**2) for v in jax.tree.leaves(g))))


def predict(params, x):
    return np.asarray(jnp.argmax(x @ params["w"] + params["b"], axis=1))


@jax.jit
def example_losses(params, x, y):
    """The loss of each example on its own (a batch of one), for every row of `x`."""
    return jax.vmap(lambda xi, yi: loss(params, xi[None], yi[None]))(x, y)


def example_loss(params, x, y):
    return float(example_losses(params, x[None], y[None])[0])


def draw(path, test_image, test_label, test_pred, x_train, y_train, influences, helpful, harmful):
    fig = plt.figure(figsize=(11, 3.6))
    grid = fig.add_gridspec(2, SHOW + 2, width_ratios=[2.2, 0.3] + [1] * SHOW)
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(test_image.reshape(8, 8), cmap="gray_r")
    ax.set_title(f"test digit\nlabel {test_label}, predicted {test_pred}", fontsize=10)
    ax.set_xticks([]), ax.set_yticks([])
    for row, (name, idx) in enumerate((("helpful", helpful), ("harmful", harmful))):
        for col, i in enumerate(idx):
            ax = fig.add_subplot(grid[row, col + 2])
            ax.imshow(x_train[i].reshape(8, 8), cmap="gray_r")
            ax.set_title(f"{y_train[i]}: {influences[i]:+.2f}", fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
            ax.grid(False)
            if col == 0:
                ax.set_ylabel(f"most {name}", fontsize=9)
    fig.suptitle("Training digits with the largest influence on the test loss (label: influence; "
                 "helpful < 0 < harmful)", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.99, top=0.8, bottom=0.03, wspace=0.15, hspace=0.5)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    args = parser.parse_args(argv)
    out = figure_dir(args.out)
    start = time.perf_counter()

    x_train, y_train, x_test, y_test = load(args.seed, 600 if args.quick else None)
    n = len(x_train)
    init = {"b": jnp.zeros(10), "w": jnp.zeros((64, 10))}
    params, grad_norm = train(x_train, y_train, init, steps=8)
    accuracy = float(np.mean(predict(params, x_test) == y_test))
    print(f"softmax regression on {n} training digits: test accuracy {accuracy:.4f}, |grad| {grad_norm:.1e}")

    # the misclassified test digit with the largest loss
    wrong = predict(params, x_test) != y_test
    losses = np.where(wrong, np.asarray(example_losses(params, x_test, y_test)), -np.inf)
    k = int(np.argmax(losses))
    test_pred = int(predict(params, x_test[k:k + 1])[0])
    print(f"test digit #{k}: label {y_test[k]}, predicted {test_pred}, loss {losses[k]:.4f}")

    def train_batches():  # a generator factory: the training set streamed in two batches per pass
        half = (n + 1) // 2
        for i in range(0, n, half):
            yield x_train[i:i + half], y_train[i:i + half]

    report = influence(loss, params, train_batches, (jnp.asarray(x_test[k:k + 1]), jnp.asarray(y_test[k:k + 1])),
                       tol=1e-4)
    influences = np.asarray(report.influences)
    print(f"influence: {int(report.iterations)} CG iterations, relative residual "
          f"{float(report.relative_residual):.1e}, converged {bool(report.converged)}")
    order = np.argsort(influences)
    helpful, harmful = order[:SHOW], order[::-1][:SHOW]
    for name, idx in (("helpful", helpful), ("harmful", harmful)):
        print(f"most {name}:")
        for i in idx:
            print(f"  train #{i:4d}  label {y_train[i]}  influence {influences[i]:+.4f}")

    # leave-one-out check: retrain without the most harmful / most helpful image (warm start)
    base = example_loss(params, x_test[k], y_test[k])
    for name, i in (("harmful", int(harmful[0])), ("helpful", int(helpful[0]))):
        keep = np.arange(n) != i
        retrained, _ = train(x_train[keep], y_train[keep], params, steps=3)
        actual = example_loss(retrained, x_test[k], y_test[k]) - base
        print(f"leave-one-out, most {name} (#{i}): predicted change {-influences[i] / n:+.5f}, "
              f"actual {actual:+.5f}")

    draw(out / "influence_digits.png", x_test[k], int(y_test[k]), test_pred, x_train, y_train, influences,
         helpful, harmful)
    print(f"wrote {out / 'influence_digits.png'} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
