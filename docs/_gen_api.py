"""Regenerate the API reference pages (docs/api/*.md) from the package's `__all__` lists.

    python docs/_gen_api.py

Every public name gets one `::: gradtx.<name>` entry (mkdocstrings renders its docstring),
grouped by the module that defines it, under a heading taken from that module's docstring.
tests/test_docs.py checks that every name in `gradtx.__all__` (and in the `__all__` of
`gradtx.curvature`, `gradtx.second_order` and `gradtx.numerics`) has an entry.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gradtx  # noqa: E402

API = ROOT / "docs" / "api"

# page -> (title, introduction, package prefixes whose names go on the page)
PAGES = {
    "base.md": (
        "Core",
        "The gradient-transformation protocol, `chain`, `apply_updates`, the `describe` decorator "
        "that makes transformations printable and checks their state, inspection helpers, and "
        "`retype_state` for states restored from a checkpoint without their types. "
        "See [Concepts](../concepts.md).",
        ("gradtx.base", "gradtx.inspection", "gradtx.checkpoint"),
    ),
    "transforms.md": (
        "Transformations",
        "Building blocks: chain them with [`gradtx.chain`][gradtx.chain]. Update rules and "
        "references are in the guides ([SGD family](../guides/sgd.md), "
        "[adaptive methods](../guides/adaptive.md), [clipping](../guides/clipping.md)).",
        ("gradtx.transforms", "gradtx.linesearch"),
    ),
    "optimizers.md": (
        "Optimizers",
        "Ready-made chains with optax's names, arguments and defaults.",
        ("gradtx.optimizers",),
    ),
    "schedules.md": (
        "Schedules",
        "Functions of the integer step count; see the [schedules guide](../guides/schedules.md).",
        ("gradtx.schedules",),
    ),
    "wrappers.md": (
        "Wrappers",
        "Transformations of transformations; see the [wrappers guide](../guides/wrappers.md). "
        "`shard_state` keeps an optimizer's state split across a mesh axis (ZeRO-1).",
        ("gradtx.wrappers", "gradtx.sharding"),
    ),
    "microbatching.md": (
        "Microbatching (`gradtx.microbatching`)",
        "Evaluate a function (a loss, per-example gradients) on a large batch one slice at a time.",
        ("gradtx.microbatching",),
    ),
    "curvature.md": (
        "Curvature (`gradtx.curvature`)",
        "Matrix-free Hessian tools; see the [curvature guide](../guides/curvature.md).",
        ("gradtx.curvature",),
    ),
    "second_order.md": (
        "Second order (`gradtx.second_order`)",
        "Optimizers that use Hessian-vector products; see the "
        "[second-order guide](../guides/second_order.md).",
        ("gradtx.second_order",),
    ),
    "fusion.md": (
        "Fusion (`gradtx.fusion`)",
        "Opt-in many-leaf updates on a few contiguous buffers (`maybe_fuse`, `fused`); the "
        "optimizers run leaf by leaf unless wrapped.",
        ("gradtx.fusion",),
    ),
    "tree.md": (
        "Tree utilities (`gradtx.tree`, `gradtx.tree_utils`)",
        "optax's pytree helpers: leafwise arithmetic, norms, casting, random trees, moments, and "
        "access to optimizer-state values by name. `gradtx.tree_utils` holds the same functions "
        "under optax's `tree_`-prefixed names.",
        ("gradtx.tree", "gradtx.tree_utils"),
    ),
    "projections.md": (
        "Projections (`gradtx.projections`)",
        "Euclidean projections onto convex sets, for projected gradient descent.",
        ("gradtx.projections",),
    ),
    "perturbations.md": (
        "Perturbations (`gradtx.perturbations`)",
        "Differentiable Monte-Carlo smoothing of any function by random perturbations of its "
        "input (optax's `optax.perturbations`, same samples for the same key).",
        ("gradtx.perturbations",),
    ),
    "assignment.md": (
        "Assignment (`gradtx.assignment`)",
        "The Hungarian algorithm for the linear assignment problem, in JAX "
        "(optax's `optax.assignment`, same assignments).",
        ("gradtx.assignment",),
    ),
    "losses.md": (
        "Losses (`gradtx.losses`)",
        "optax's loss functions (`optax.losses`) with the same names, arguments and numbers; "
        "plain functions of arrays, most returning one loss per example. The most used are also "
        "at the top level (`gradtx.softmax_cross_entropy`, ...), as in optax.",
        ("gradtx.losses",),
    ),
    "numerics.md": (
        "Numerics and testing utilities",
        "Helpers shared by the transformations and optax's numerically safe functions "
        "(`gradtx.numerics`), optax's linear-algebra utilities (power iteration, inverse matrix "
        "roots, non-negative least squares), and finite-difference checks of gradients and "
        "Hessian-vector products (`gradtx.gradcheck`).",
        ("gradtx.numerics", "gradtx.linalg", "gradtx.gradcheck"),
    ),
    "contrib.md": (
        "Contrib (`gradtx.contrib`)",
        "Research optimizers that optax 0.2.8 keeps in `optax.contrib` (not at its top level), "
        "with the same names, arguments, states and numbers: `import gradtx as optax` keeps "
        "`optax.contrib.<name>` working.",
        ("gradtx.transforms.contrib_moments", "gradtx.optimizers.contrib_moments", "gradtx.transforms.contrib_sophia", "gradtx.transforms.contrib_galore", "gradtx.transforms.schedule_free", "gradtx.optimizers.schedule_free",
         "gradtx.transforms.muon", "gradtx.optimizers.muon", "gradtx.transforms.sam",
         "gradtx.transforms.lr_free", "gradtx.optimizers.lr_free", "gradtx.optimizers.momo"),
    ),
}

# order of the sections on a page (modules not listed come after, alphabetically)
MODULE_ORDER = [
    "gradtx.base", "gradtx.inspection", "gradtx.checkpoint",
    "gradtx.transforms.scaling", "gradtx.transforms.momentum", "gradtx.transforms.adam_family",
    "gradtx.transforms.adam_variants", "gradtx.transforms.adan_novograd_optimistic", "gradtx.transforms.rms_family",
    "gradtx.transforms.clipping", "gradtx.transforms.weight_decay", "gradtx.transforms.noise",
    "gradtx.transforms.surgery", "gradtx.transforms.privacy",
    "gradtx.transforms.sign", "gradtx.transforms.step_size_free",
    "gradtx.transforms.factored", "gradtx.transforms.blockwise", "gradtx.transforms.adadelta",
    "gradtx.optimizers.sgd", "gradtx.optimizers.adam", "gradtx.optimizers.adam_variants", "gradtx.optimizers.rms",
    "gradtx.optimizers.lion", "gradtx.optimizers.lamb", "gradtx.optimizers.privacy",
    "gradtx.optimizers.sign", "gradtx.optimizers.step_size_free",
    "gradtx.optimizers.adafactor", "gradtx.optimizers.layerwise",
    "gradtx.transforms.lbfgs", "gradtx.linesearch.zoom", "gradtx.linesearch.backtracking",
    "gradtx.linesearch.common", "gradtx.optimizers.lbfgs",
    "gradtx.schedules.polynomial", "gradtx.schedules.piecewise", "gradtx.schedules.exponential",
    "gradtx.schedules.cosine", "gradtx.schedules.onecycle", "gradtx.schedules.join",
    "gradtx.wrappers.masking", "gradtx.wrappers.finite", "gradtx.wrappers.accumulation",
    "gradtx.wrappers.hyperparams", "gradtx.wrappers.plateau", "gradtx.wrappers.flatten",
    "gradtx.wrappers.freezing", "gradtx.wrappers.conditional", "gradtx.wrappers.periodic",
    "gradtx.wrappers.lookahead", "gradtx.wrappers.monitoring", "gradtx.wrappers.protocol",
    "gradtx.microbatching",
    "gradtx.curvature.operators", "gradtx.curvature.lanczos", "gradtx.curvature.trace",
    "gradtx.curvature.density", "gradtx.curvature.analysis", "gradtx.curvature.data",
    "gradtx.curvature.streaming",
    "gradtx.curvature.fisher", "gradtx.curvature.diagonal",
    "gradtx.curvature.residuals", "gradtx.curvature.blocks",
    "gradtx.curvature.solve", "gradtx.curvature.logdet", "gradtx.curvature.influence",
    "gradtx.curvature.landscape_directions", "gradtx.curvature.landscape",
    "gradtx.curvature",
    "gradtx.second_order.saddle", "gradtx.second_order.newton_cg", "gradtx.second_order.sharpness",
    "gradtx.fusion", "gradtx.numerics", "gradtx.linalg", "gradtx.gradcheck",
    "gradtx.tree", "gradtx.tree_utils", "gradtx.projections",
    "gradtx.losses.classification", "gradtx.losses.smoothing", "gradtx.losses.regression", "gradtx.losses.kl",
    "gradtx.losses.fenchel_young", "gradtx.losses.ranking", "gradtx.losses.self_supervised",
    "gradtx.losses.segmentation", "gradtx.losses.ctc",
]

GRIFFE = None  # the package as griffe sees it (loaded in main)

# not exported, but linked from public docstrings
EXTRA = {"gradtx.curvature.data": ["gradtx.curvature.data.as_args"]}

# names exported from a sub-package namespace rather than the top level
NAMESPACES = (
    "curvature", "second_order", "numerics", "fusion", "contrib", "microbatching", "tree", "tree_utils",
    "projections", "perturbations", "assignment", "losses",
)
# namespaces of re-exported functions: their names are placed under the namespace, not the defining module
PLACED_BY_NAMESPACE = ("tree", "tree_utils")
# namespace -> namespace whose objects it re-exports under `tree_`-prefixed names (anchors only)
PREFIXED_TWINS = {"tree_utils": ("tree", "tree_")}


def _shadowed(path: str) -> str | None:
    """The canonical path of `path`'s object when griffe would resolve `path` to a module instead.

    Griffe (mkdocstrings' loader) cannot tell a submodule `pkg/adam.py` from a function `adam`
    re-exported by `pkg/__init__.py` (mkdocstrings/griffe#124): `::: gradtx.adam` would render the
    module `gradtx.optimizers.adam`. Such names are documented through their defining module
    (`gradtx.optimizers.adam.adam`) under a Markdown anchor with the public name.
    """
    obj = gradtx
    for part in path.split(".")[1:]:
        obj = getattr(obj, part)
    if inspect.ismodule(obj):
        return None
    try:
        target = GRIFFE[path[len("gradtx."):]]
        target = target.final_target if target.is_alias else target
    except Exception:
        return None
    if target.kind.value != "module":
        return None
    return f"{obj.__module__}.{obj.__qualname__}"


def _top_level_twin(path: str) -> bool:
    """True for `gradtx.<namespace>.<name>` that is also `gradtx.<name>` (one object, two names).

    Such a name is rendered once, under its top-level path; the namespaced path gets an anchor.
    """
    parts = path.split(".")
    if len(parts) != 3 or parts[2] not in gradtx.__all__:
        return False
    return getattr(importlib.import_module(".".join(parts[:2])), parts[2]) is getattr(gradtx, parts[2])


def _prefixed_twin(path: str) -> bool:
    """True for `gradtx.tree_utils.tree_<name>`, the same object as `gradtx.tree.<name>`."""
    parts = path.split(".")
    if len(parts) != 3 or parts[1] not in PREFIXED_TWINS:
        return False
    source, prefix = PREFIXED_TWINS[parts[1]]
    if not parts[2].startswith(prefix):
        return False
    twin = getattr(importlib.import_module(f"gradtx.{source}"), parts[2][len(prefix):], None)
    return twin is not None and twin is getattr(importlib.import_module(f"gradtx.{parts[1]}"), parts[2])


def _entry(path: str) -> list[str]:
    if _top_level_twin(path) or _prefixed_twin(path):
        return [f"[](){{#{path}}}", ""]
    canonical = _shadowed(path)
    if canonical is None:
        return [f"::: {path}", ""]
    return [f"[](){{#{path}}}", "", f"::: {canonical}", "    options:", f'      heading: "{path}"', ""]


def public_entries() -> list[tuple[str, str]]:
    """(documented path, defining module) for every public name."""
    entries = []
    for name in gradtx.__all__:
        obj = getattr(gradtx, name)
        if inspect.ismodule(obj):
            continue
        entries.append((f"gradtx.{name}", _defining_module(obj, "gradtx.base")))
    for ns in NAMESPACES:
        module = importlib.import_module(f"gradtx.{ns}")
        for name in module.__all__:
            obj = getattr(module, name)
            placed = f"gradtx.{ns}" if ns in PLACED_BY_NAMESPACE else _defining_module(obj, f"gradtx.{ns}")
            entries.append((f"gradtx.{ns}.{name}", placed))
    return entries


# modules split out of another for size, whose names stay documented in that module's section
SECTION_OF = {"gradtx.curvature.critical": "gradtx.curvature.analysis",
              "gradtx.curvature.krylov": "gradtx.curvature.streaming",
              "gradtx._microbatch_accumulators": "gradtx.microbatching"}


def _defining_module(obj: object, fallback: str) -> str:
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or not module.startswith("gradtx"):
        return fallback  # type aliases and constants
    return SECTION_OF.get(module, module)


def _order(path: str) -> tuple[int, str, int]:
    name = path.rsplit(".", 1)[1]
    kind = 2 if name.isupper() else (1 if name[0].isupper() else 0)
    return kind, name.lower(), 0 if _top_level_twin(path) else 1  # a twin's anchor first


def _page_of(module: str) -> str | None:
    """The page whose longest prefix matches `module` (contrib modules sit inside transforms/)."""
    matches = [
        (len(p), page)
        for page, (_, _, prefixes) in PAGES.items()
        for p in prefixes
        if module == p or module.startswith(p + ".")
    ]
    return max(matches)[1] if matches else None


def main() -> None:
    global GRIFFE
    import griffe

    GRIFFE = griffe.load("gradtx", search_paths=[str(ROOT)])
    entries = public_entries()
    placed = set()
    for page, (title, intro, _prefixes) in PAGES.items():
        groups: dict[str, list[str]] = {}
        for path, module in entries:
            if _page_of(module) == page:
                groups.setdefault(module, []).append(path)
                placed.add(path)
        lines = [f"# {title}", "", intro, ""]
        def rank(module: str) -> tuple[int, str]:
            return (MODULE_ORDER.index(module) if module in MODULE_ORDER else len(MODULE_ORDER), module)

        for module in sorted(groups, key=rank):
            paths = groups[module]
            # the module itself, docstring only, as the section heading (level 2)
            lines += [f"::: {module}", "    options:", "      members: false", "      heading_level: 2", ""]
            paths = paths + [p for p in EXTRA.get(module, []) if p not in paths]
            # functions first, then classes / states, then constants, each alphabetically
            for path in sorted(paths, key=_order):
                lines += _entry(path)
        (API / page).write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    missing = [path for path, _ in entries if path not in placed]
    if missing:
        raise SystemExit(f"no API page for {missing}; add their module to PAGES")


if __name__ == "__main__":
    main()
