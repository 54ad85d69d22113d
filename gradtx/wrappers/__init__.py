"""gradtx.wrappers."""

__all__: list[str] = []
