"""Perturbed functions (`gradtx.perturbations`): differentiable Monte-Carlo smoothing of any
function, with optax's `optax.perturbations` names, signatures and samples.

`make_perturbed_fun(fun)` turns a function that may be piecewise constant (an argmax, a ranking, a
shortest path) into a stochastic function whose values and derivatives of every order are
unbiased estimates of those of its Gaussian- or Gumbel-smoothed version. The noise distributions
are small objects with a `sample` and a `log_prob` method; any object with both can be passed.

Same key, same samples as optax: the per-sample keys are `jax.random.split(key, num_samples)`,
and each sample's key is split again into one key per leaf of the input.
"""

import functools
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx._validation import check_bool, check_int, check_real

__all__ = ["Gumbel", "Normal", "make_perturbed_fun"]

Shape = tuple[int, ...]


class Normal:
    r"""The standard normal distribution $\mathcal N(0, 1)$, as noise for `make_perturbed_fun`.

    Its log-density, up to a constant (constants cancel in the score-function estimator), is

    $$
    \log p(z) = -\tfrac12 z^2 .
    $$

    Example:
        ```python
        import jax
        from gradtx.perturbations import Normal

        z = Normal().sample(jax.random.key(0), (3,))  # jax.random.normal(key, (3,))
        ```
    """

    def sample(self, key: jax.Array, sample_shape: Shape = (), dtype: Any = float) -> jax.Array:
        """Draw standard normal noise of shape `sample_shape` and dtype `dtype` (float: float32
        unless 64-bit mode is on)."""
        return jax.random.normal(key, sample_shape, dtype)

    def log_prob(self, inputs: jax.Array) -> jax.Array:
        r"""Elementwise log-density up to an additive constant, $-z^2/2$."""
        return -0.5 * inputs**2

    def __repr__(self) -> str:
        return "Normal()"


class Gumbel:
    r"""The standard Gumbel distribution (location 0, scale 1), the default noise of
    `make_perturbed_fun`.

    Perturbing scores with Gumbel noise and taking the argmax samples from the softmax of the
    scores (the Gumbel-max trick). Its log-density is

    $$
    \log p(z) = -z - e^{-z} .
    $$

    Example:
        ```python
        import jax
        from gradtx.perturbations import Gumbel

        z = Gumbel().sample(jax.random.key(0), (3,))  # jax.random.gumbel(key, (3,))
        ```
    """

    def sample(self, key: jax.Array, sample_shape: Shape = (), dtype: Any = float) -> jax.Array:
        """Draw standard Gumbel noise of shape `sample_shape` and dtype `dtype`."""
        return jax.random.gumbel(key, sample_shape, dtype)

    def log_prob(self, inputs: jax.Array) -> jax.Array:
        r"""Elementwise log-density, $-z - e^{-z}$."""
        return -inputs - jnp.exp(-inputs)

    def __repr__(self) -> str:
        return "Gumbel()"


def _magic_box(x: jax.Array) -> jax.Array:
    r"""DiCE's "magic box" $\square(x) = e^{x - \bot(x)}$: equal to 1 in value, with derivative
    $\partial\square(x) = \square(x)\,\partial x$ ($\bot$ is stop-gradient)."""
    return jnp.exp(x - jax.lax.stop_gradient(x))


def _leaf_noise(noise: Any, key: jax.Array, tree: Any) -> Any:
    """One independent noise draw per leaf, shaped and typed like the leaf (one split key each)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, treedef.num_leaves)
    return jax.tree.unflatten(
        treedef, [noise.sample(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
    )


def make_perturbed_fun(
    fun: Callable[[Any], Any],
    num_samples: int = 1000,
    sigma: float | jax.Array = 0.1,
    noise: Any = Gumbel(),  # noqa: B008 (a stateless instance, shared like optax's default)
    use_baseline: bool = True,
) -> Callable[[jax.Array, Any], Any]:
    r"""A differentiable stochastic approximation of `fun` built from perturbed evaluations.

    For noise $Z \sim \mu$ and a scale $\sigma > 0$, the smoothed function

    $$
    f_\sigma(x) = \mathbb E_{Z}\big[f(x + \sigma Z)\big]
    $$

    is differentiable in $x$ even where $f$ is not (for the Normal and Gumbel noises). The
    returned function `g(key, x)` estimates it from $N$ = `num_samples` draws $z_1, \dots, z_N$,

    $$
    g(x) = \frac1N \sum_{k=1}^N \Big( \square_k\, f(y_k)
        + (1 - \square_k)\, f(x) \Big), \qquad y_k = \bot(x + \sigma z_k), \qquad
    \square_k = \square\Big(\sum \log \mu\big((y_k - x)/\sigma\big)\Big),
    $$

    where $\bot$ stops gradients, $\square$ is DiCE's magic box (1 in value, derivative
    $\square\,\partial(\cdot)$) and the baseline term $(1 - \square_k) f(x)$, present when
    `use_baseline` is True, is 0 in value but reduces the variance of the derivatives. Because the
    samples $y_k$ do not depend on $x$ except through the log-density, `jax.grad` (and higher
    derivatives) of `g` are unbiased score-function (REINFORCE) estimates of the derivatives of
    $f_\sigma$; for the gradient,

    $$
    \nabla g(x) = \frac1N \sum_k \big(f(y_k) - f(x)\big)\, \nabla_x
        \sum \log\mu\big((y_k - x)/\sigma\big) .
    $$

    Only values of `fun` are used: `fun` need not be differentiable (an argmax, a sort, a
    solver). The value $g(x)$ itself is the plain Monte-Carlo mean of $f(y_k)$.

    Args:
        fun: the function to smooth, from a pytree of arrays to a pytree of arrays.
        num_samples: the number $N \ge 1$ of perturbed evaluations averaged (default 1000); they
            run as one `jax.vmap` of `fun`.
        sigma: the noise scale $\sigma > 0$ (default 0.1); a traced value is accepted.
        noise: the noise distribution, an object with `sample(key, shape, dtype)` and
            `log_prob(z)` (elementwise, up to a constant), like `Gumbel()` (the default) or
            `Normal()`.
        use_baseline: subtract the unperturbed value $f(x)$ as a control variate in the
            derivatives (default True); the value of $g$ is unchanged.

    Returns:
        `g(key, x)`: the estimate for the PRNG key `key` (sample $k$ uses
        `jax.random.split(key, num_samples)[k]`, split again into one key per leaf of `x`),
        with the output structure of `fun`.

    Raises:
        TypeError: `fun` is not callable, `num_samples` not an integer, `use_baseline` not a
            bool, or `noise` lacks `sample` / `log_prob`.
        ValueError: `num_samples < 1` or `sigma <= 0`.

    Example:
        ```python
        import jax
        import jax.numpy as jnp
        from gradtx.perturbations import make_perturbed_fun, Normal

        one_hot_argmax = lambda s: jax.nn.one_hot(jnp.argmax(s), s.shape[-1])
        soft = make_perturbed_fun(one_hot_argmax, num_samples=500, sigma=0.5, noise=Normal())
        scores = jnp.array([1.0, 1.2, 0.0])
        probs = soft(jax.random.key(0), scores)  # ~ P(argmax of scores + 0.5 Z)
        jac = jax.jacobian(soft, argnums=1)(jax.random.key(0), scores)  # finite, 3x3
        ```

    References:
        Berthet et al., [Learning with Differentiable Perturbed Optimizers](https://arxiv.org/abs/2002.08676),
        NeurIPS 2020.

        Foerster et al., [DiCE: The Infinitely Differentiable Monte Carlo Estimator](https://arxiv.org/abs/1802.05098),
        ICML 2018.

        Salimans et al., [Evolution Strategies as a Scalable Alternative to Reinforcement
        Learning](https://arxiv.org/abs/1703.03864), 2017.
    """
    owner = "make_perturbed_fun"
    if not callable(fun):
        raise TypeError(f"{owner}: fun must be callable, got {type(fun).__name__}: {fun!r}")
    check_int(owner, "num_samples", num_samples, low=1)
    check_real(owner, "sigma", sigma, low=0.0, low_inclusive=False)
    check_bool(owner, "use_baseline", use_baseline)
    for method in ("sample", "log_prob"):
        if not callable(getattr(noise, method, None)):
            raise TypeError(
                f"{owner}: noise must have a `{method}` method (like gradtx.perturbations.Gumbel()), "
                f"got {type(noise).__name__}: {noise!r}"
            )

    def one_sample(key: jax.Array, x: Any, baseline: Any) -> Any:
        z = _leaf_noise(noise, key, x)
        y = jax.lax.stop_gradient(jax.tree.map(lambda xi, zi: xi + sigma * zi, x, z))
        # z again, now as a function of x (same value): the score's only path to x
        z_of_x = jax.tree.map(lambda xi, yi: (yi - xi) / sigma, x, y)
        # summed from an initial 0, leaf by leaf in tree order (optax's order, for equal bits)
        log_density = functools.reduce(
            operator.add, [jnp.sum(noise.log_prob(zi)) for zi in jax.tree.leaves(z_of_x)], 0
        )
        box = _magic_box(jnp.asarray(log_density))
        out = jax.tree.map(lambda fy: box * fy, fun(y))
        if baseline is not None:
            weight = jnp.asarray(1 - box)
            out = jax.tree.map(lambda o, b: o + weight * b, out, baseline)
        return out

    def perturbed(key: jax.Array, x: Any) -> Any:
        baseline = fun(jax.lax.stop_gradient(x)) if use_baseline else None
        keys = jax.random.split(key, num_samples)
        samples = jax.vmap(one_sample, in_axes=(0, None, None))(keys, x, baseline)
        return jax.tree.map(lambda s: jnp.mean(s, axis=0), samples)

    return perturbed
