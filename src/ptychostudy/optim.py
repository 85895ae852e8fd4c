"""Adam whose square root is correctly rounded, so that training gives the same bits on every x86 CPU.

``torch.optim.Adam`` takes the square root of its second-moment estimate with ``torch.sqrt``, which
on the CPU is Intel MKL's vector math (VML): not correctly rounded (about one element in five is one
unit in the last place off) and, worse, rounded differently on Intel and AMD processors, whatever
``MKL_CBWR`` says. Traced with ``bench/op_trace.py``: it is the first operation of a training step
whose output differs between an Intel Xeon and an AMD EPYC from bit-identical inputs (Adam's update of
the first convolution's weights). The forward and backward passes (convolutions, FFTs, the physics)
gave the same bytes on both. This optimiser is the same update, operation for operation (the
single-tensor path of ``torch.optim.Adam``: ``lerp_``, ``mul_``/``addcmul_``, bias corrections as
Python floats, ``addcdiv_``), with the square root taken by the processor's IEEE instruction
(NumPy's ``sqrt``) on the CPU. On other devices ``torch.sqrt`` is used.
"""

from __future__ import annotations

import numpy as np
import torch


def exact_sqrt(values: torch.Tensor) -> torch.Tensor:
    """Correctly rounded square root (IEEE 754) of a real tensor: the same bits on every CPU."""
    if values.device.type != "cpu":
        return torch.sqrt(values)
    return torch.from_numpy(np.sqrt(values.detach().contiguous().numpy()))


class Adam(torch.optim.Optimizer):
    """Adam (Kingma & Ba) without weight decay or AMSGrad, with ``sqrt`` (default: ``exact_sqrt``)
    for the second moment's square root."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 sqrt=exact_sqrt):
        if not lr > 0 or not eps > 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Adam: lr and eps must be positive and betas in [0, 1), got lr={lr}, eps={eps}, "
                             f"betas={betas}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})
        self._sqrt = sqrt

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                step = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = group["lr"] / (1 - beta1**step)
                denom = (self._sqrt(exp_avg_sq) / ((1 - beta2**step) ** 0.5)).add_(group["eps"])
                param.addcdiv_(exp_avg, denom, value=-step_size)
        return loss
