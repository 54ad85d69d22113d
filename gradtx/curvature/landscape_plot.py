"""Matplotlib helpers for [`gradtx.curvature.landscape`][gradtx.curvature.landscape] reports.

matplotlib is an optional dependency: it is imported inside each function, so importing
gradtx (or this module) never needs it. Each function draws into the given axes (or a new
figure) and returns the axes.

    from gradtx.curvature import landscape, trajectory_landscape
    from gradtx.curvature.landscape_plot import plot_contour, plot_curve, plot_surface
"""

from typing import Any

import numpy as np

__all__ = ["plot_contour", "plot_curve", "plot_surface"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("gradtx.curvature.landscape_plot needs matplotlib: pip install matplotlib") from err
    return plt


def _surface(report: Any, owner: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    losses = np.asarray(report.losses)
    if losses.ndim != 2:
        raise ValueError(f"{owner}: needs a surface (two directions), got losses of shape {losses.shape}")
    a, b = (np.asarray(c) for c in report.coordinates)
    aa, bb = np.meshgrid(a, b, indexing="ij")
    return aa, bb, losses


def _path(trajectory: Any) -> np.ndarray | None:
    if trajectory is None:
        return None
    coords = getattr(trajectory, "coordinates", trajectory)
    return np.asarray(coords)


def plot_contour(report: Any, trajectory: Any = None, ax: Any = None, levels: int = 30, log: bool = False,
                 cmap: str = "viridis") -> Any:
    """Filled contour plot of a 2-D landscape, with an optional trajectory drawn over it.

    Args:
        report: a [`LandscapeReport`][gradtx.curvature.LandscapeReport] with two directions.
        trajectory: None, a [`TrajectoryProjection`][gradtx.curvature.TrajectoryProjection] or a
            `(T, 2)` array of coordinates. Default None.
        ax: matplotlib axes to draw into; None makes a new figure. Default None.
        levels: number of contour levels. Default 30.
        log: contour `log10(loss)` (for losses spanning decades; losses must be positive).
            Default False.
        cmap: colour map name. Default `"viridis"`.

    Returns:
        The axes.
    """
    plt = _pyplot()
    aa, bb, z = _surface(report, "plot_contour")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    z = np.log10(np.maximum(z, np.finfo(np.float64).tiny)) if log else z
    filled = ax.contourf(aa, bb, z, levels=levels, cmap=cmap)
    ax.contour(aa, bb, z, levels=levels, colors="k", linewidths=0.3, alpha=0.5)
    ax.figure.colorbar(filled, ax=ax, label="log10 loss" if log else "loss")
    path = _path(trajectory)
    if path is not None:
        ax.plot(path[:, 0], path[:, 1], "o-", color="tab:red", ms=3, lw=1.2, label="trajectory")
        ax.plot(path[-1:, 0], path[-1:, 1], "*", color="white", mec="k", ms=12, label="final params")
        ax.legend(loc="best", fontsize=8)
    ax.set(xlabel=r"$\alpha$", ylabel=r"$\beta$")
    return ax


def plot_surface(report: Any, trajectory: Any = None, ax: Any = None, trajectory_losses: Any = None,
                 cmap: str = "viridis") -> Any:
    """3-D surface plot of a 2-D landscape, with an optional trajectory drawn on it.

    Args:
        report: a [`LandscapeReport`][gradtx.curvature.LandscapeReport] with two directions.
        trajectory: None, a `TrajectoryProjection` or `(T, 2)` coordinates. Default None.
        ax: a 3-D matplotlib axes (`projection="3d"`); None makes a new figure. Default None.
        trajectory_losses: the loss at each trajectory point (its height); None draws the path
            at the surface's minimum height. Default None.
        cmap: colour map name. Default `"viridis"`.

    Returns:
        The axes.
    """
    plt = _pyplot()
    aa, bb, z = _surface(report, "plot_surface")
    if ax is None:
        fig = plt.figure(figsize=(6, 4.5))
        ax = fig.add_subplot(projection="3d")
    ax.plot_surface(aa, bb, z, cmap=cmap, linewidth=0, antialiased=True, alpha=0.85)
    path = _path(trajectory)
    if path is not None:
        heights = np.full(len(path), z.min()) if trajectory_losses is None else np.asarray(trajectory_losses)
        ax.plot(path[:, 0], path[:, 1], heights, "o-", color="tab:red", ms=2, lw=1.2, zorder=10)
    ax.set(xlabel=r"$\alpha$", ylabel=r"$\beta$", zlabel="loss")
    return ax


def plot_curve(report: Any, ax: Any = None, label: str | None = None) -> Any:
    """The loss along one direction (a 1-D landscape) against the step $\\alpha$.

    Args:
        report: a [`LandscapeReport`][gradtx.curvature.LandscapeReport] with one direction.
        ax: matplotlib axes; None makes a new figure. Default None.
        label: legend label. Default None.

    Returns:
        The axes.
    """
    plt = _pyplot()
    losses = np.asarray(report.losses)
    if losses.ndim != 1:
        raise ValueError(f"plot_curve: needs a curve (one direction), got losses of shape {losses.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(np.asarray(report.coordinates[0]), losses, label=label)
    ax.axvline(0.0, color="k", lw=0.5, ls=":")
    ax.set(xlabel=r"$\alpha$", ylabel="loss")
    if label is not None:
        ax.legend()
    return ax
