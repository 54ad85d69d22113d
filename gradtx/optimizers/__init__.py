"""gradtx.optimizers."""

__all__: list[str] = []
