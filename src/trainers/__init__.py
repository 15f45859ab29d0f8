"""The trainers by the command line's names (TRAINERS; KNOTS, their schedules' points) and what they run on."""
from . import one_cycle, wrapper
from .engine import Diverged, Engine
from .history import History
from .one_cycle import train_one_cycle
from .step import Step, adamw
from .wrapper import train_wrapper

TRAINERS = {"onecycle": train_one_cycle, "wrapper": train_wrapper}
KNOTS = {"onecycle": one_cycle.knots, "wrapper": wrapper.knots}
__all__ = ["KNOTS", "TRAINERS", "Diverged", "Engine", "History", "Step", "adamw", "train_one_cycle", "train_wrapper"]
