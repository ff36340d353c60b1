"""Hydra loads Sweeper plugins only from the ``hydra_plugins`` namespace: this is a facade over ``vae_sweep.sweep``."""
