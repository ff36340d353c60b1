"""The Optuna side of a sweep: search space, study and storage, samplers, and the trial link."""
