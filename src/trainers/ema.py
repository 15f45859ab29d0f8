"""An exponential moving average of a model's weights, evaluated instead of the weights."""
import copy

import torch


class EMA:
    """ema = decay * ema + (1 - decay) * weights after the first update, which copies; BatchNorm statistics alike,
    integer buffers copied. Unlike torch's AveragedModel: no host sync per update, one foreach kernel for all."""

    def __init__(self, model, decay):
        self.decay, self.updates = decay, 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))  # held, not looked up
        floats = [pair for pair in pairs if pair[0].is_floating_point()]
        self._averages, self._weights = [average for average, _ in floats], [weight for _, weight in floats]
        self._other = [pair for pair in pairs if not pair[0].is_floating_point()]

    @torch.no_grad()
    def update(self):
        """Average in the current weights of the model given at construction."""
        if self.updates == 0:
            torch._foreach_copy_(self._averages, self._weights)
        else:
            torch._foreach_lerp_(self._averages, self._weights, 1 - self.decay)
        for average, weight in self._other:
            average.copy_(weight)
        self.updates += 1

    def state_dict(self):
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state):
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]
