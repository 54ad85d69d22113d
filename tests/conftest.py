"""Shared test set-up."""

import jax

# Tests compare against float32 references unless they opt in to float64 themselves.
jax.config.update("jax_numpy_rank_promotion", "raise")
