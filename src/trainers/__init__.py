"""Two trainers of the same shape over one engine: each builds its optimizer and schedule, drives
Engine.fit and returns a History. TRAINERS maps the command line's names to them."""
from .engine import Engine
from .step import Step
from .optimizer import adamw, param_groups
from .history import History
from . import one_cycle, wrapper
from .one_cycle import lr_schedule, train_one_cycle
from .wrapper import Trainer, train_wrapper

TRAINERS = {"onecycle": train_one_cycle, "wrapper": train_wrapper}
KNOTS = {"onecycle": one_cycle.knots, "wrapper": wrapper.knots}  # each schedule's (epoch, learning rate) points

__all__ = ["Engine", "Step", "adamw", "param_groups", "History", "lr_schedule", "train_one_cycle", "Trainer",
           "train_wrapper", "TRAINERS", "KNOTS"]
