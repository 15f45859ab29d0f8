"""Failures a user causes and can mend (a bad option, missing data, a diverging run). The command
line prints each as one line; so does a notebook, since IPython shows `_render_traceback_`'s
lines instead of a traceback.

What to do depends on the command: `advice` holds (flag, phrase) pairs (flag: one, or a tuple that
all must be there), and a command shows the phrases of the flags it has (src/harness/cli.py's
one_line), else those whose flag is None; a notebook executed by src.notebook shows those of
src.notebook's flags (ADVICE_FLAGS, set for its kernel); another Python caller sees every phrase."""
import os

ADVICE_FLAGS = "ADVICE_FLAGS"  # comma-separated: the flags of the command a kernel runs for


class OneLine:
    def __init__(self, what, advice=()):
        super().__init__(what)
        self.what, self.advice = what, tuple(advice)

    def says(self, flags=None):
        """The line for a command whose flags are `flags` (None: any)."""
        if flags is None and os.environ.get(ADVICE_FLAGS):
            flags = set(os.environ[ADVICE_FLAGS].split(","))
        chosen = [text for flag, text in self.advice
                  if flag and (flags is None or set((flag,) if isinstance(flag, str) else flag) <= flags)]
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
