"""The original pynmsnn per-step algorithm, written straight from DESIGN.md's formulas.

State is kept in the layer between calls, the Linear layer is called once per step, and each
layer returns its previous state (the one-step delay). Used only as an independent oracle.
"""

from __future__ import annotations

import torch
from torch import nn


class OriginalSpikingLayer:
    def __init__(self, fc: nn.Linear, decay, threshold, penalty, reset, dtype=torch.float32):
        self.fc, self.decay, self.threshold, self.penalty, self.reset = fc, decay, threshold, penalty, reset
        self.dtype = dtype
        self.reset_state()

    def reset_state(self) -> None:
        self.prev_inner = torch.zeros(self.fc.out_features, dtype=self.dtype)
        self.prev_outer = torch.zeros(self.fc.out_features, dtype=self.dtype)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.prev_inner.dim() == 1:  # first call: one state row per batch row
            self.prev_inner = torch.stack(x.shape[0] * [self.prev_inner])
            self.prev_outer = torch.stack(x.shape[0] * [self.prev_outer])
        input_excitation = self.fc(x)
        inner = input_excitation + self.prev_inner * self.decay
        outer = torch.relu(inner - self.threshold)
        gate = (outer > 0).to(outer.dtype)
        if self.reset == "scale":
            inner = inner - (self.penalty / self.threshold * inner) * gate
        else:
            inner = inner - (self.penalty + outer) * gate
        delayed_state, delayed_output = self.prev_inner, self.prev_outer
        self.prev_inner, self.prev_outer = inner, outer
        return delayed_state, delayed_output


def original_forward(layers: list[OriginalSpikingLayer], x: torch.Tensor, noise: torch.Tensor, reduce: str):
    """Logits of the original network: noise-masked input, last layer's delayed state reduced over T."""
    for layer in layers:
        layer.reset_state()
    states = []
    for t in range(noise.shape[0]):
        h = x * noise[t]
        for layer in layers:
            state, h = layer(h)
        states.append(state)
    stacked = torch.stack(states)
    return stacked.sum(0) if reduce == "sum" else stacked.mean(0)
