"""Failures a user causes and can mend (a bad option, missing data, a diverging run). The command
line prints each as one line; so does a notebook, since IPython shows `_render_traceback_`'s
lines instead of a traceback."""


class OneLine:
    def _render_traceback_(self):
        return [f"error: {self}"]


class UserError(OneLine, ValueError):
    """A value or combination that cannot work; the message names the flag and what is allowed."""


class DataNotFound(OneLine, FileNotFoundError):
    """No CIFAR-10 where the run looked (and no download, or a failed one)."""


class Diverged(OneLine, RuntimeError):
    """Training blew up: the message says when (epoch, batch, learning rate) and what."""
