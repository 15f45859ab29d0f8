"""The trainers (TRAINERS, by the command line's names; KNOTS, their schedules' points) and what they run on."""
from .ema import EMA
from .engine import Diverged, Engine
from .history import History
from . import one_cycle, wrapper
from .one_cycle import lr_schedule, train_one_cycle
from .step import Step, adamw, param_groups
from .wrapper import train_wrapper

TRAINERS = {"onecycle": train_one_cycle, "wrapper": train_wrapper}
KNOTS = {"onecycle": one_cycle.knots, "wrapper": wrapper.knots}

__all__ = ["EMA", "KNOTS", "TRAINERS", "Diverged", "Engine", "History", "Step", "adamw", "lr_schedule",
           "param_groups", "train_one_cycle", "train_wrapper"]
