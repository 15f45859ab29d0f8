"""Two trainers over one engine: the user's wrapper (tqdm per batch) and the one-cycle loop."""
from .engine import Engine, NonFiniteLoss, param_groups
from .history import History
from .one_cycle import lr_schedule, train_one_cycle
from .wrapper import Trainer

TRAINERS = ("onecycle", "wrapper")

__all__ = ["Engine", "NonFiniteLoss", "param_groups", "History", "lr_schedule", "train_one_cycle",
           "Trainer", "TRAINERS"]
