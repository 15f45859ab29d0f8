"""An exponential moving average of a model's weights, evaluated instead of the weights."""
import copy

import torch


class EMA:
    """Unlike torch's AveragedModel, no host sync per update and one foreach kernel for all float tensors."""

    def __init__(self, model, decay):
        self.decay, self.updates = decay, 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))  # held, not looked up
        self._averages, self._weights = zip(*[pair for pair in pairs if pair[0].is_floating_point()])
        self._other = [pair for pair in pairs if not pair[0].is_floating_point()]

    @torch.no_grad()
    def update(self):
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
