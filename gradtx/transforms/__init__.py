"""gradtx.transforms."""

__all__: list[str] = []
