"""CIFAR-10 experiments with ConvMixer and a convolution-only ViT. The study: data, gpu_loader,
models, trainers, recipes, plots, analysis; the commands: `python -m src.train`, `src.evaluate`,
`src.bench`, `src.notebook`, `src.reproduce`, `src.sweep`; what runs and reports them: harness."""
import os as _os
import signal as _signal
import sys as _sys

if _sys.argv[:1] == ["-m"]:  # `python -m src.COMMAND` is starting (Python sets "-m" while it imports)
    def _interrupted_while_starting(signum, frame):
        """Ctrl-C before the command's main() takes over: nothing has been done yet, so the process ends
        at once (an exception raised here could land inside a half-imported library)."""
        print("\ninterrupted while starting: nothing was done", file=_sys.stderr, flush=True)
        _os._exit(128 + signum)

    _signal.signal(_signal.SIGINT, _interrupted_while_starting)
    _signal.signal(_signal.SIGTERM, _interrupted_while_starting)
