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
(NumPy's ``sqrt``) on the CPU. On other devices (a GPU) ``torch.sqrt`` is used and the update is taken for
all parameters at once (``torch._foreach_*``: the same arithmetic in a few kernel launches instead of seven
per parameter, which on a GPU cost more than the arithmetic).
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
            params = self._advance(group)
            if params and params[0].device.type != "cpu":
                self.update_all(group, params)
                continue
            beta1, beta2 = group["betas"]
            for param in params:
                grad, state = param.grad, self.state[param]
                step = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = group["lr"] / (1 - beta1**step)
                denom = (self._sqrt(exp_avg_sq) / ((1 - beta2**step) ** 0.5)).add_(group["eps"])
                param.addcdiv_(exp_avg, denom, value=-step_size)
        return loss

    def _advance(self, group: dict) -> list[torch.Tensor]:
        """The group's parameters that have a gradient, each with its state created on first use and its
        step count advanced by one (before either update path)."""
        params = [p for p in group["params"] if p.grad is not None]
        for param in params:
            state = self.state[param]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["step"] += 1
        return params

    def update_all(self, group: dict, params: list[torch.Tensor]) -> None:
        """The same update of ``params`` (their step counts already advanced) with multi-tensor
        (``torch._foreach_*``) operations and ``torch.sqrt``: the GPU path."""
        beta1, beta2 = group["betas"]
        states = [self.state[p] for p in params]
        grads = [p.grad for p in params]
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, [(1 - beta2 ** s["step"]) ** 0.5 for s in states])
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(params, exp_avgs, denom, [-group["lr"] / (1 - beta1 ** s["step"]) for s in states])
