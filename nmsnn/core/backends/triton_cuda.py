"""The ``triton`` backend: the fused recurrence's two loops as Triton kernels (CUDA).

One program owns a block of neurons and walks T inside the kernel, holding the membrane, the
last output and the backward carry in registers; each step is one coalesced load/store per
tensor row. With few neurons (the seed's 64 hidden neurons x 64 rows fill one warp per SM) each
step waits for its row of the current; each step loads its own row (loading several steps
ahead was slower: ``experiments/kernel_design.md``).

Inputs in fp32 compute in fp32, fp64 in fp64, bf16/fp16 (autocast) in fp32 with the outputs
stored in the input dtype and the saved pre-reset membrane kept in fp32. Pointers advance by
whole rows, so offsets never overflow 32 bits. The math is documented in
:mod:`nmsnn.core.backends.fused`. With ``TRITON_INTERPRET=1`` (set before first use) the same
kernels run on CPU tensors in Triton's interpreter, which is how the test suite checks them.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from nmsnn.core.backends.fused import (
    BackwardJob,
    BackwardResult,
    ForwardJob,
    ForwardResult,
    kernel_backend,
)
from nmsnn.errors import ConfigError


@triton.jit
def _reset(a, tt, pp, rr, SCALE: tl.constexpr, HEAVISIDE: tl.constexpr, ACC: tl.constexpr):
    """Output ``o`` and post-reset membrane ``s`` from the pre-reset membrane ``a``."""
    v = a - tt
    if HEAVISIDE:
        o = tl.where(v > 0, 1.0, 0.0).to(ACC)
    else:
        o = tl.where(v > 0, v, 0.0).to(ACC)
    g = tl.where(o > 0, 1.0, 0.0).to(ACC)
    if SCALE:
        s = a - rr * a * g
    else:
        s = a - (pp + o) * g
    return s, o


@triton.jit
def _forward_step(
    c, s, o, dd, tt, pp, rr, spk_row, mem_row, pre_row, mask,
    SCALE: tl.constexpr, HEAVISIDE: tl.constexpr, SAVE: tl.constexpr, MEMBRANE: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """One step from the loaded current ``c``: store the delayed outputs (and ``a``), advance."""
    tl.store(spk_row, o.to(spk_row.dtype.element_ty), mask=mask)
    if MEMBRANE:
        tl.store(mem_row, s.to(mem_row.dtype.element_ty), mask=mask)
    a = c + dd * s
    s, o = _reset(a, tt, pp, rr, SCALE, HEAVISIDE, ACC)
    if SAVE:
        tl.store(pre_row, a, mask=mask)
    return s, o


@triton.jit
def _forward_kernel(
    cur, d, th, p, s0, o0, spikes, membrane, pre, s_out, o_out,
    steps, n,
    SCALE: tl.constexpr, HEAVISIDE: tl.constexpr, SAVE: tl.constexpr, MEMBRANE: tl.constexpr,
    ACC: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    dd = tl.load(d + offs, mask=mask, other=0).to(ACC)
    tt = tl.load(th + offs, mask=mask, other=1).to(ACC)
    pp = tl.load(p + offs, mask=mask, other=0).to(ACC)
    rr = pp / tt
    s = tl.load(s0 + offs, mask=mask, other=0).to(ACC)
    o = tl.load(o0 + offs, mask=mask, other=0).to(ACC)
    cur_row = cur + offs
    spk_row = spikes + offs
    mem_row = membrane + offs
    pre_row = pre + offs
    for _ in range(steps):
        c = tl.load(cur_row, mask=mask, other=0).to(ACC)
        s, o = _forward_step(
            c, s, o, dd, tt, pp, rr, spk_row, mem_row, pre_row, mask, SCALE, HEAVISIDE, SAVE, MEMBRANE, ACC
        )
        cur_row += n
        spk_row += n
        if MEMBRANE:
            mem_row += n
        if SAVE:
            pre_row += n
    tl.store(s_out + offs, s.to(s_out.dtype.element_ty), mask=mask)
    tl.store(o_out + offs, o.to(o_out.dtype.element_ty), mask=mask)


@triton.jit
def _backward_loads(
    t, steps, n, pre_row, gm_next, gs_next, mask,
    HAS_S: tl.constexpr, HAS_M: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """What step ``t`` reads: ``a_t``, ``a_{t-1}`` (0 at t=0) and the incoming gradients at t+1."""
    t_vec = tl.full((BLOCK,), t, tl.int32)  # per-lane step index: masks stay vectors
    has_next = t_vec + 1 < steps
    a = tl.load(pre_row, mask=mask, other=0).to(ACC)
    a_prev = tl.load(pre_row - n, mask=mask & (t_vec > 0), other=0).to(ACC)
    m_next = tl.zeros((BLOCK,), dtype=ACC)
    if HAS_M:
        m_next = tl.load(gm_next, mask=mask & has_next, other=0).to(ACC)
    s_next = tl.zeros((BLOCK,), dtype=ACC)
    if HAS_S:
        s_next = tl.load(gs_next, mask=mask & has_next, other=0).to(ACC)
    return a, a_prev, m_next, s_next


@triton.jit
def _backward_step(
    t, steps, a, a_prev, m_next, s_next, ga, acc_d, acc_t, acc_p,
    dd, tt, pp, rr, kk, s_first, g_in, g_out, slope, gc_row, mask,
    SCALE: tl.constexpr, HEAVISIDE: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """Step ``t`` of the reverse walk from its loaded values; stores ``dL/dc_t``."""
    t_vec = tl.full((BLOCK,), t, tl.int32)
    is_last = t_vec + 1 >= steps
    v = a - tt
    g = tl.where(v > 0, 1.0, 0.0).to(ACC)
    m_in = tl.where(is_last, g_in, 0.0) + m_next
    go = tl.where(is_last, g_out, 0.0) + s_next
    gs = m_in + dd * ga
    if not SCALE:
        go = go - g * gs
    if HEAVISIDE:
        r = 1.0 / (1.0 + slope * tl.abs(v))
        gv = go * (r * r).to(ACC)
    else:
        gv = go * g
    if SCALE:
        ga = gs * (1.0 - rr * g) + gv
        gsag = gs * a * g
        acc_t += gsag * kk - gv
        acc_p -= gsag / tt
    else:
        ga = gs + gv
        acc_t -= gv
        acc_p -= gs * g
    s_prev, _ = _reset(a_prev, tt, pp, rr, SCALE, HEAVISIDE, ACC)
    s_prev = tl.where(t_vec > 0, s_prev, s_first)
    acc_d += ga * s_prev
    tl.store(gc_row, ga.to(gc_row.dtype.element_ty), mask=mask)
    return ga, acc_d, acc_t, acc_p


@triton.jit
def _backward_kernel(
    pre, d, th, p, s0, g_spikes, g_membrane, g_inner, g_outer,
    g_current, g_decay, g_threshold, g_penalty, g_inner0, g_outer0,
    steps, n, last_row, slope,
    SCALE: tl.constexpr, HEAVISIDE: tl.constexpr, HAS_S: tl.constexpr, HAS_M: tl.constexpr,
    ACC: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    dd = tl.load(d + offs, mask=mask, other=0).to(ACC)
    tt = tl.load(th + offs, mask=mask, other=1).to(ACC)
    pp = tl.load(p + offs, mask=mask, other=0).to(ACC)
    rr = pp / tt
    kk = pp / (tt * tt)
    s_first = tl.load(s0 + offs, mask=mask, other=0).to(ACC)
    g_in = tl.load(g_inner + offs, mask=mask, other=0).to(ACC)
    g_out = tl.load(g_outer + offs, mask=mask, other=0).to(ACC)
    zero = tl.zeros((BLOCK,), dtype=ACC)
    ga, acc_d, acc_t, acc_p = zero, zero, zero, zero
    pre_row = pre + last_row + offs
    gc_row = g_current + last_row + offs
    gm_next = g_membrane + last_row + n + offs  # row t + 1 (masked off at t = T - 1)
    gs_next = g_spikes + last_row + n + offs
    t = steps - 1
    for _ in range(steps):
        a, a_prev, m_next, s_next = _backward_loads(
            t, steps, n, pre_row, gm_next, gs_next, mask, HAS_S, HAS_M, ACC, BLOCK
        )
        ga, acc_d, acc_t, acc_p = _backward_step(
            t, steps, a, a_prev, m_next, s_next, ga, acc_d, acc_t, acc_p,
            dd, tt, pp, rr, kk, s_first, g_in, g_out, slope, gc_row, mask, SCALE, HEAVISIDE, ACC, BLOCK,
        )  # fmt: skip
        t -= 1
        pre_row -= n
        gc_row -= n
        gm_next -= n
        gs_next -= n
    tl.store(g_decay + offs, acc_d, mask=mask)
    tl.store(g_threshold + offs, acc_t, mask=mask)
    tl.store(g_penalty + offs, acc_p, mask=mask)
    gm0 = zero
    if HAS_M:
        gm0 = tl.load(g_membrane + offs, mask=mask, other=0).to(ACC)
    tl.store(g_inner0 + offs, gm0 + dd * ga, mask=mask)
    gs0 = zero
    if HAS_S:
        gs0 = tl.load(g_spikes + offs, mask=mask, other=0).to(ACC)
    tl.store(g_outer0 + offs, gs0, mask=mask)


def _acc(dtype: torch.dtype) -> tuple[torch.dtype, tl.dtype]:
    """Compute dtype for an input dtype: fp64 stays fp64, everything else computes in fp32."""
    return (torch.float64, tl.float64) if dtype == torch.float64 else (torch.float32, tl.float32)


def _launch(n: int) -> tuple[int, int, int]:
    """Block size, warps and grid: small blocks when there are few neurons, to fill the GPU."""
    block = 128 if n >= 128 * 512 else 32
    return block, max(1, block // 32), triton.cdiv(n, block)


class TritonKernels:
    """:class:`~nmsnn.core.backends.fused.Kernels` as Triton kernels (CUDA tensors)."""

    name = "triton"

    def forward(self, job: ForwardJob) -> ForwardResult:
        """The saved ``pre`` is written over ``current`` (``into_current``) only when the current
        is already in the compute dtype (a bf16 current keeps an fp32 ``pre`` of its own)."""
        current, params, inner0, outer0, config, save, membranes, into_current = job
        steps, n = current.shape
        acc_torch, acc = _acc(current.dtype)
        spikes = torch.empty_like(current)
        membrane = torch.empty_like(current) if membranes else current.new_empty(1)
        if save and into_current and current.dtype == acc_torch:
            pre = current  # each step's row is read before its saved state is written there
        else:
            pre = current.new_empty((steps, n) if save else (1,), dtype=acc_torch)
        inner, outer = current.new_empty(n), current.new_empty(n)
        block, warps, grid = _launch(n)
        _forward_kernel[(grid,)](
            current, *params, inner0, outer0, spikes, membrane, pre, inner, outer, steps, n,
            SCALE=config.reset == "scale", HEAVISIDE=config.spike_fn == "heaviside", SAVE=save,
            MEMBRANE=membranes, ACC=acc, BLOCK=block, num_warps=warps,
        )  # fmt: skip
        return ForwardResult(spikes, membrane if membranes else None, pre if save else None, inner, outer)

    def backward(self, job: BackwardJob) -> BackwardResult:
        """The kernel always computes the parameters' gradients (cheap on a GPU)."""
        pre, params, inner0, grad_spikes, grad_membrane, grad_inner, grad_outer, config, _ = job
        steps, n = pre.shape
        _, acc = _acc(pre.dtype)
        g_current = torch.empty_like(pre)
        g_params = [pre.new_empty(n) for _ in range(5)]
        block, warps, grid = _launch(n)
        has_s, has_m = grad_spikes is not None, grad_membrane is not None
        _backward_kernel[(grid,)](
            pre, *params, inner0, grad_spikes if has_s else pre, grad_membrane if has_m else pre,
            grad_inner, grad_outer,
            g_current, *g_params, steps, n, (steps - 1) * n, float(config.surrogate_slope),
            SCALE=config.reset == "scale", HEAVISIDE=config.spike_fn == "heaviside",
            HAS_S=has_s, HAS_M=has_m, ACC=acc, BLOCK=block, num_warps=warps,
        )  # fmt: skip
        return BackwardResult(g_current, *g_params)


TRITON_KERNELS = TritonKernels()


def _cuda_tensors(current: Tensor) -> None:
    """CUDA tensors; CPU tensors only under ``TRITON_INTERPRET=1``."""
    from nmsnn.core.backends import triton_interpreted

    if current.device.type != "cuda" and not triton_interpreted():
        raise ConfigError(
            f"backend='triton' runs on CUDA tensors, got {current.device}; use backend=auto, "
            "or set TRITON_INTERPRET=1 to run the kernels in Triton's CPU interpreter."
        )


triton_recurrence = kernel_backend(TRITON_KERNELS, _cuda_tensors)
