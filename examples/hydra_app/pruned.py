import hydra
import optuna

from vae_sweep import current_trial


@hydra.main(version_base="1.3", config_path="conf", config_name="pruned")
def descend(cfg) -> float:
    trial, loss = current_trial(), 10.0
    for step in range(cfg.steps):
        loss -= cfg.lr * loss  # one step of training
        trial.report(loss, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")
    return loss


if __name__ == "__main__":
    descend()
