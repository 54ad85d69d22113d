"""Learning-rate schedules: pure functions of the integer step."""

__all__: list[str] = []
