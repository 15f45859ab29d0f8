"""CIFAR-10 experiments with ConvMixer and a convolution-only ViT: the study, and the code that runs it."""
import os as _os
import signal as _signal
import sys as _sys

if _sys.argv[:1] == ["-m"]:  # `python -m src.COMMAND` is starting (Python sets "-m" while it imports)
    def _interrupted_while_starting(signum, frame):  # at once: an exception could land in a half-imported library
        print("\ninterrupted while starting: nothing was done", file=_sys.stderr, flush=True)
        _os._exit(128 + signum)

    for _signum in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(_signum, _interrupted_while_starting)
