"""gradtx.second_order."""

__all__: list[str] = []
