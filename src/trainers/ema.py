"""An exponential moving average of a model's weights, evaluated instead of the weights.

torch's AveragedModel reads its step counter from the device on every update (a host sync per
batch); here the counter lives on the host and every tensor is updated by one foreach kernel.
"""
import copy

import torch


class EMA:
    """After update k (k >= 2): ema = decay * ema + (1 - decay) * weights; the first update copies.
    BatchNorm's running statistics are averaged the same way, so the EMA model tests with
    statistics that match its weights; integer buffers (batch counters) are copied."""

    def __init__(self, model, decay):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.updates = decay, 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))
        self._float = [pair for pair in pairs if pair[0].is_floating_point()]
        self._other = [pair for pair in pairs if not pair[0].is_floating_point()]

    @torch.no_grad()
    def update(self, model):
        """`model` must be the one given at construction: its tensors are held, not looked up."""
        averages, weights = (list(t) for t in zip(*self._float))
        if self.updates == 0:
            torch._foreach_copy_(averages, weights)
        else:
            torch._foreach_lerp_(averages, weights, 1 - self.decay)
        for average, weight in self._other:
            average.copy_(weight)
        self.updates += 1

    def state_dict(self):
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state):
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]
