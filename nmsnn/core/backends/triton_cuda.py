"""The ``triton`` backend: the fused recurrence's two loops as Triton kernels (CUDA).

One program owns a block of neurons and walks T inside the kernel, holding the membrane, the
last output and the backward carry in registers; each step is one coalesced load/store per
tensor row. The walk along T is latency-bound when there are few neurons (the seed's 64 hidden
neurons x 64 rows fill one warp per SM): each step waits for its row of the current. The loops
therefore issue the loads of ``UNROLL`` steps (4 or 8) before computing them, so one memory
latency is paid per group of steps instead of per step; the arithmetic, and so every result, is
the same for every ``UNROLL``. ``NMSNN_TRITON_UNROLL`` (1, 4 or 8) overrides the default.

Inputs in fp32 compute in fp32, fp64 in fp64, bf16/fp16 (autocast) in fp32 with the outputs
stored in the input dtype and the saved pre-reset membrane kept in fp32. Pointers advance by
whole rows, so offsets never overflow 32 bits. The math is documented in
:mod:`nmsnn.core.backends.fused`. With ``TRITON_INTERPRET=1`` (set before first use) the same
kernels run on CPU tensors in Triton's interpreter, which is how the test suite checks them.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from nmsnn.core.backends.fused import BackwardResult, Flat, ForwardResult, fused_apply
from nmsnn.core.neuron import NeuronConfig, NeuronState, RecurrenceOutput
from nmsnn.errors import ConfigError

UNROLL_CHOICES = (1, 4, 8)
DEFAULT_UNROLL = 8


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
    SCALE: tl.constexpr, HEAVISIDE: tl.constexpr, SAVE: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """One step from the loaded current ``c``: store the delayed outputs (and ``a``), advance."""
    tl.store(spk_row, o.to(spk_row.dtype.element_ty), mask=mask)
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
    SCALE: tl.constexpr, HEAVISIDE: tl.constexpr, SAVE: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr,
    UNROLL: tl.constexpr,
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
    done = 0
    if UNROLL > 1:
        done = (steps // UNROLL) * UNROLL
        for _ in range(steps // UNROLL):
            # every load of the group is issued before the first step needs its row
            c0 = tl.load(cur_row, mask=mask, other=0).to(ACC)
            c1 = tl.load(cur_row + n, mask=mask, other=0).to(ACC)
            c2 = tl.load(cur_row + 2 * n, mask=mask, other=0).to(ACC)
            c3 = tl.load(cur_row + 3 * n, mask=mask, other=0).to(ACC)
            if UNROLL == 8:
                c4 = tl.load(cur_row + 4 * n, mask=mask, other=0).to(ACC)
                c5 = tl.load(cur_row + 5 * n, mask=mask, other=0).to(ACC)
                c6 = tl.load(cur_row + 6 * n, mask=mask, other=0).to(ACC)
                c7 = tl.load(cur_row + 7 * n, mask=mask, other=0).to(ACC)
            s, o = _forward_step(
                c0, s, o, dd, tt, pp, rr, spk_row, mem_row, pre_row, mask, SCALE, HEAVISIDE, SAVE, ACC
            )
            s, o = _forward_step(
                c1,
                s,
                o,
                dd,
                tt,
                pp,
                rr,
                spk_row + n,
                mem_row + n,
                pre_row + n,
                mask,
                SCALE,
                HEAVISIDE,
                SAVE,
                ACC,
            )
            s, o = _forward_step(
                c2,
                s,
                o,
                dd,
                tt,
                pp,
                rr,
                spk_row + 2 * n,
                mem_row + 2 * n,
                pre_row + 2 * n,
                mask,
                SCALE,
                HEAVISIDE,
                SAVE,
                ACC,
            )
            s, o = _forward_step(
                c3,
                s,
                o,
                dd,
                tt,
                pp,
                rr,
                spk_row + 3 * n,
                mem_row + 3 * n,
                pre_row + 3 * n,
                mask,
                SCALE,
                HEAVISIDE,
                SAVE,
                ACC,
            )
            if UNROLL == 8:
                s, o = _forward_step(
                    c4,
                    s,
                    o,
                    dd,
                    tt,
                    pp,
                    rr,
                    spk_row + 4 * n,
                    mem_row + 4 * n,
                    pre_row + 4 * n,
                    mask,
                    SCALE,
                    HEAVISIDE,
                    SAVE,
                    ACC,
                )
                s, o = _forward_step(
                    c5,
                    s,
                    o,
                    dd,
                    tt,
                    pp,
                    rr,
                    spk_row + 5 * n,
                    mem_row + 5 * n,
                    pre_row + 5 * n,
                    mask,
                    SCALE,
                    HEAVISIDE,
                    SAVE,
                    ACC,
                )
                s, o = _forward_step(
                    c6,
                    s,
                    o,
                    dd,
                    tt,
                    pp,
                    rr,
                    spk_row + 6 * n,
                    mem_row + 6 * n,
                    pre_row + 6 * n,
                    mask,
                    SCALE,
                    HEAVISIDE,
                    SAVE,
                    ACC,
                )
                s, o = _forward_step(
                    c7,
                    s,
                    o,
                    dd,
                    tt,
                    pp,
                    rr,
                    spk_row + 7 * n,
                    mem_row + 7 * n,
                    pre_row + 7 * n,
                    mask,
                    SCALE,
                    HEAVISIDE,
                    SAVE,
                    ACC,
                )
            cur_row += UNROLL * n
            spk_row += UNROLL * n
            mem_row += UNROLL * n
            if SAVE:
                pre_row += UNROLL * n
    for _ in range(steps - done):
        c = tl.load(cur_row, mask=mask, other=0).to(ACC)
        s, o = _forward_step(
            c, s, o, dd, tt, pp, rr, spk_row, mem_row, pre_row, mask, SCALE, HEAVISIDE, SAVE, ACC
        )
        cur_row += n
        spk_row += n
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
    ACC: tl.constexpr, BLOCK: tl.constexpr, UNROLL: tl.constexpr,
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
    if UNROLL > 1:
        for _ in range(steps // UNROLL):
            # all loads of the group (steps t, t-1, ...) first, then the steps in reverse
            a0, p0, m0, x0 = _backward_loads(
                t, steps, n, pre_row, gm_next, gs_next, mask, HAS_S, HAS_M, ACC, BLOCK
            )
            a1, p1, m1, x1 = _backward_loads(
                t - 1, steps, n, pre_row - n, gm_next - n, gs_next - n, mask, HAS_S, HAS_M, ACC, BLOCK
            )
            a2, p2, m2, x2 = _backward_loads(
                t - 2,
                steps,
                n,
                pre_row - 2 * n,
                gm_next - 2 * n,
                gs_next - 2 * n,
                mask,
                HAS_S,
                HAS_M,
                ACC,
                BLOCK,
            )
            a3, p3, m3, x3 = _backward_loads(
                t - 3,
                steps,
                n,
                pre_row - 3 * n,
                gm_next - 3 * n,
                gs_next - 3 * n,
                mask,
                HAS_S,
                HAS_M,
                ACC,
                BLOCK,
            )
            if UNROLL == 8:
                a4, p4, m4, x4 = _backward_loads(
                    t - 4,
                    steps,
                    n,
                    pre_row - 4 * n,
                    gm_next - 4 * n,
                    gs_next - 4 * n,
                    mask,
                    HAS_S,
                    HAS_M,
                    ACC,
                    BLOCK,
                )
                a5, p5, m5, x5 = _backward_loads(
                    t - 5,
                    steps,
                    n,
                    pre_row - 5 * n,
                    gm_next - 5 * n,
                    gs_next - 5 * n,
                    mask,
                    HAS_S,
                    HAS_M,
                    ACC,
                    BLOCK,
                )
                a6, p6, m6, x6 = _backward_loads(
                    t - 6,
                    steps,
                    n,
                    pre_row - 6 * n,
                    gm_next - 6 * n,
                    gs_next - 6 * n,
                    mask,
                    HAS_S,
                    HAS_M,
                    ACC,
                    BLOCK,
                )
                a7, p7, m7, x7 = _backward_loads(
                    t - 7,
                    steps,
                    n,
                    pre_row - 7 * n,
                    gm_next - 7 * n,
                    gs_next - 7 * n,
                    mask,
                    HAS_S,
                    HAS_M,
                    ACC,
                    BLOCK,
                )
            ga, acc_d, acc_t, acc_p = _backward_step(
                t,
                steps,
                a0,
                p0,
                m0,
                x0,
                ga,
                acc_d,
                acc_t,
                acc_p,
                dd,
                tt,
                pp,
                rr,
                kk,
                s_first,
                g_in,
                g_out,
                slope,
                gc_row,
                mask,
                SCALE,
                HEAVISIDE,
                ACC,
                BLOCK,
            )
            ga, acc_d, acc_t, acc_p = _backward_step(
                t - 1,
                steps,
                a1,
                p1,
                m1,
                x1,
                ga,
                acc_d,
                acc_t,
                acc_p,
                dd,
                tt,
                pp,
                rr,
                kk,
                s_first,
                g_in,
                g_out,
                slope,
                gc_row - n,
                mask,
                SCALE,
                HEAVISIDE,
                ACC,
                BLOCK,
            )
            ga, acc_d, acc_t, acc_p = _backward_step(
                t - 2,
                steps,
                a2,
                p2,
                m2,
                x2,
                ga,
                acc_d,
                acc_t,
                acc_p,
                dd,
                tt,
                pp,
                rr,
                kk,
                s_first,
                g_in,
                g_out,
                slope,
                gc_row - 2 * n,
                mask,
                SCALE,
                HEAVISIDE,
                ACC,
                BLOCK,
            )
            ga, acc_d, acc_t, acc_p = _backward_step(
                t - 3,
                steps,
                a3,
                p3,
                m3,
                x3,
                ga,
                acc_d,
                acc_t,
                acc_p,
                dd,
                tt,
                pp,
                rr,
                kk,
                s_first,
                g_in,
                g_out,
                slope,
                gc_row - 3 * n,
                mask,
                SCALE,
                HEAVISIDE,
                ACC,
                BLOCK,
            )
            if UNROLL == 8:
                ga, acc_d, acc_t, acc_p = _backward_step(
                    t - 4,
                    steps,
                    a4,
                    p4,
                    m4,
                    x4,
                    ga,
                    acc_d,
                    acc_t,
                    acc_p,
                    dd,
                    tt,
                    pp,
                    rr,
                    kk,
                    s_first,
                    g_in,
                    g_out,
                    slope,
                    gc_row - 4 * n,
                    mask,
                    SCALE,
                    HEAVISIDE,
                    ACC,
                    BLOCK,
                )
                ga, acc_d, acc_t, acc_p = _backward_step(
                    t - 5,
                    steps,
                    a5,
                    p5,
                    m5,
                    x5,
                    ga,
                    acc_d,
                    acc_t,
                    acc_p,
                    dd,
                    tt,
                    pp,
                    rr,
                    kk,
                    s_first,
                    g_in,
                    g_out,
                    slope,
                    gc_row - 5 * n,
                    mask,
                    SCALE,
                    HEAVISIDE,
                    ACC,
                    BLOCK,
                )
                ga, acc_d, acc_t, acc_p = _backward_step(
                    t - 6,
                    steps,
                    a6,
                    p6,
                    m6,
                    x6,
                    ga,
                    acc_d,
                    acc_t,
                    acc_p,
                    dd,
                    tt,
                    pp,
                    rr,
                    kk,
                    s_first,
                    g_in,
                    g_out,
                    slope,
                    gc_row - 6 * n,
                    mask,
                    SCALE,
                    HEAVISIDE,
                    ACC,
                    BLOCK,
                )
                ga, acc_d, acc_t, acc_p = _backward_step(
                    t - 7,
                    steps,
                    a7,
                    p7,
                    m7,
                    x7,
                    ga,
                    acc_d,
                    acc_t,
                    acc_p,
                    dd,
                    tt,
                    pp,
                    rr,
                    kk,
                    s_first,
                    g_in,
                    g_out,
                    slope,
                    gc_row - 7 * n,
                    mask,
                    SCALE,
                    HEAVISIDE,
                    ACC,
                    BLOCK,
                )
            t -= UNROLL
            pre_row -= UNROLL * n
            gc_row -= UNROLL * n
            gm_next -= UNROLL * n
            gs_next -= UNROLL * n
    for _ in range(t + 1):
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


def unroll() -> int:
    """Steps whose loads are issued together (``NMSNN_TRITON_UNROLL``, default 8)."""
    value = os.environ.get("NMSNN_TRITON_UNROLL", str(DEFAULT_UNROLL))
    if value not in {str(u) for u in UNROLL_CHOICES}:
        raise ConfigError(f"NMSNN_TRITON_UNROLL={value!r}: choose one of {UNROLL_CHOICES}.")
    return int(value)


class TritonKernels:
    """:class:`~nmsnn.core.backends.fused.Kernels` as Triton kernels (CUDA tensors)."""

    name = "triton"

    def forward(
        self, current: Tensor, params: Flat, inner0: Tensor, outer0: Tensor, config: NeuronConfig, save: bool
    ) -> ForwardResult:
        steps, n = current.shape
        acc_torch, acc = _acc(current.dtype)
        spikes = torch.empty_like(current)
        membrane = torch.empty_like(current)
        pre = current.new_empty((steps, n) if save else (1,), dtype=acc_torch)
        inner, outer = current.new_empty(n), current.new_empty(n)
        block, warps, grid = _launch(n)
        _forward_kernel[(grid,)](
            current, *params, inner0, outer0, spikes, membrane, pre, inner, outer, steps, n,
            SCALE=config.reset == "scale", HEAVISIDE=config.spike_fn == "heaviside", SAVE=save,
            ACC=acc, BLOCK=block, UNROLL=unroll(), num_warps=warps,
        )  # fmt: skip
        return ForwardResult(spikes, membrane, pre if save else None, inner, outer)

    def backward(
        self,
        pre: Tensor,
        params: Flat,
        inner0: Tensor,
        grad_spikes: Tensor | None,
        grad_membrane: Tensor | None,
        grad_inner: Tensor,
        grad_outer: Tensor,
        config: NeuronConfig,
        param_grads: bool = True,  # the kernel always computes them (cheap on a GPU)
    ) -> BackwardResult:
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
            HAS_S=has_s, HAS_M=has_m, ACC=acc, BLOCK=block, UNROLL=unroll(), num_warps=warps,
        )  # fmt: skip
        return BackwardResult(g_current, *g_params)


TRITON_KERNELS = TritonKernels()


def triton_recurrence(
    current: Tensor,
    decay: Tensor,
    threshold: Tensor,
    penalty: Tensor,
    config: NeuronConfig,
    state: NeuronState | None = None,
) -> RecurrenceOutput:
    """The ``triton`` backend (CUDA tensors; CPU tensors only under ``TRITON_INTERPRET=1``)."""
    from nmsnn.core.backends import triton_interpreted

    if current.device.type != "cuda" and not triton_interpreted():
        raise RuntimeError(
            f"backend='triton' runs on CUDA tensors, got {current.device}; use backend=auto, "
            "or set TRITON_INTERPRET=1 to run the kernels in Triton's CPU interpreter."
        )
    return fused_apply(TRITON_KERNELS, current, decay, threshold, penalty, config, state)
