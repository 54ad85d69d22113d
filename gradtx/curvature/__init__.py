"""gradtx.curvature."""

__all__: list[str] = []
