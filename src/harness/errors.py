"""Failures a user causes and can mend (a bad option, missing data, a diverging run). The command
line prints each as one line; so does a notebook, since IPython shows `_render_traceback_`'s
lines instead of a traceback.

What to do depends on the command: `advice` holds (flag, phrase) pairs, and a command shows the
phrases of the flags it has (src/harness/cli.py's one_line), else those whose flag is None; a
notebook or other Python caller sees every flag's phrase."""


class OneLine:
    def __init__(self, what, advice=()):
        super().__init__(what)
        self.what, self.advice = what, tuple(advice)

    def says(self, flags=None):
        """The line for a command whose flags are `flags` (None: any)."""
        chosen = [text for flag, text in self.advice if flag and (flags is None or flag in flags)]
        chosen = chosen or [text for flag, text in self.advice if flag is None]
        return f"{self.what}: {', or '.join(chosen)}" if chosen else self.what

    def __str__(self):
        return self.says()

    def _render_traceback_(self):
        return [f"error: {self}"]


class UserError(OneLine, ValueError):
    """A value or combination that cannot work; the message names the flag and what is allowed."""


class DataNotFound(OneLine, FileNotFoundError):
    """No CIFAR-10 where the run looked (and no download, or a failed one)."""


class Diverged(OneLine, RuntimeError):
    """Training blew up: the message says when (epoch, batch, learning rate) and what."""
