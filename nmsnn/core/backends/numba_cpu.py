"""The ``numba`` backend: the fused recurrence's two loops compiled for CPU.

Each loop walks T for a contiguous range of neurons, reading whole row slices so that the inner
loop over neurons is contiguous and vectorized. Large problems are split into one range per torch
CPU thread and run on a small thread pool (the kernels release the GIL); the split is done by
hand because numba's ``prange`` lost the loops' vectorization (``experiments/kernel_design.md``).
The kernels read and write the tensors' memory directly (``Tensor.numpy()`` on
contiguous CPU tensors: no copies). float32 and float64 run natively; other dtypes (bf16, fp16)
are computed in float32 and cast back. The math is the one documented in
:mod:`nmsnn.core.backends.fused`, operation for operation as the reference evaluates it.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numba
import numpy as np
import torch
from numba.core import event as numba_event
from torch import Tensor

from nmsnn.core.backends.fused import (
    BackwardJob,
    BackwardResult,
    Flat,
    ForwardJob,
    ForwardResult,
    bias_grad,
    flat_grads,
    flat_inputs,
    input_grads,
    kernel_backend,
    node_outputs,
)
from nmsnn.core.backends.memory import retain_freed_memory
from nmsnn.core.neurons.lif import LIF

log = logging.getLogger(__name__)

TILE = 1024  # neurons walked through T together: their state stays in L1


class _FirstCompile(numba_event.Listener):
    """Says once per process, when numba starts compiling one of this module's kernels (a cache
    miss: the first run of a neuron variant after installing), why the run pauses a few seconds.
    Loading a kernel from numba's on-disk cache (``cache=True``) compiles nothing and says nothing."""

    said = False

    def on_start(self, event: Any) -> None:
        dispatcher = (event.data or {}).get("dispatcher")
        if (
            _FirstCompile.said
            or getattr(getattr(dispatcher, "py_func", None), "__module__", None) != __name__
        ):
            return
        _FirstCompile.said = True
        log.info(
            "numba: compiling the CPU kernels for this neuron variant (a few seconds, once after "
            "installing: they are cached on disk)"
        )

    def on_end(self, event: Any) -> None:
        pass


numba_event.register("numba:compile", _FirstCompile())


def _build(scale: bool, heaviside: bool, membranes: bool = True, biased: bool = False, inplace: bool = False):
    """Compile (or load from numba's cache) the forward loop for one neuron variant.

    The reset mode and spike function are closure constants, so every branch on them is resolved
    at compile time and the inner loops vectorize; numba's cache key includes closure values.
    Without ``membranes`` the delayed membrane is not written (a hidden layer in a training step
    that keeps only the loss: a quarter of the loop's memory traffic). With ``biased`` the
    layer's bias arrives per neuron (``bias [N]``) and is added to the current as it is read,
    ``(cur + bias) + d * s``: the same roundings as adding it in the Linear, without the Linear
    writing a broadcast copy of the bias into its ``[T*B, H]`` output first. With ``inplace``
    the pre-reset membrane ``a_t`` is written over the current as it is read (``pre`` is
    ignored; the caller passes a current it owns).
    """

    @numba.njit(cache=True, nogil=True)
    def forward(cur, bias, d, th, p, s0, o0, spikes, membrane, pre, s_out, o_out, save, zero, one, lo, hi):
        steps = cur.shape[0]
        for start in range(lo, hi, TILE):
            stop = min(hi, start + TILE)
            m = stop - start
            s = s0[start:stop].copy()
            o = o0[start:stop].copy()
            db, tb, pb = d[start:stop], th[start:stop], p[start:stop]
            bb = bias[start:stop] if biased else db
            rb = pb / tb
            scratch = np.empty(m, cur.dtype)  # a_t when it is not saved
            for t in range(steps):
                ct, st = cur[t, start:stop], spikes[t, start:stop]
                for j in range(m):
                    st[j] = o[j]
                if membranes:
                    mt = membrane[t, start:stop]
                    for j in range(m):
                        mt[j] = s[j]
                pt = ct if inplace else (pre[t, start:stop] if save else scratch)
                for j in range(m):
                    if biased:
                        a = (ct[j] + bb[j]) + db[j] * s[j]
                    else:
                        a = ct[j] + db[j] * s[j]
                    pt[j] = a
                    v = a - tb[j]
                    if heaviside:
                        oj = one if v > zero else zero
                    else:
                        oj = v if v > zero else zero
                    g = one if oj > zero else zero
                    if scale:
                        s[j] = a - rb[j] * a * g
                    else:
                        s[j] = a - (pb[j] + oj) * g
                    o[j] = oj
            s_out[start:stop] = s
            o_out[start:stop] = o

    return forward


@numba.njit(cache=True, nogil=True, inline="always")
def _fold_spike_grad(out, dense, g_next, w, rows_per_member, start, m, hid):
    """``out = dense + g_next @ w`` for the rows of one tile: the spikes' gradient through the
    next layer's Linear (``g_next [B, K]``, ``w [M, K, H]``: row ``b`` uses member
    ``b // rows_per_member``'s weight; one model is ``M = 1``), never materialized as ``[T, B, H]``.
    (Loops index row slices from ``range(len)``: offset indices there cost vectorization.)"""
    b0 = start // hid
    for r in range(m // hid):
        o = out[r * hid : (r + 1) * hid]
        dn = dense[r * hid : (r + 1) * hid]
        for h in range(o.shape[0]):
            o[h] = dn[h]
        wm = w[(b0 + r) // rows_per_member]
        for k in range(wm.shape[0]):
            gk = g_next[b0 + r, k]
            wk = wm[k]
            for h in range(o.shape[0]):
                o[h] += gk * wk[h]


@numba.njit(cache=True, nogil=True, inline="always")
def _fold_weight_grad(acc, spikes, g_next, start, m, hid):
    """``acc[k, j] += g_next[b, k] * spikes[j]`` (neuron ``j`` of row ``b``): per-neuron sums of
    the next layer's weight gradient, reduced over rows by the caller."""
    b0 = start // hid
    for r in range(m // hid):
        sr = spikes[r * hid : (r + 1) * hid]
        for k in range(acc.shape[0]):
            gk = g_next[b0 + r, k]
            ak = acc[k, start + r * hid : start + (r + 1) * hid]
            for h in range(sr.shape[0]):
                ak[h] += gk * sr[h]


def _build_backward(scale: bool, heaviside: bool, params: bool, fold: bool, inplace: bool = False):
    """Compile the backward loop for one neuron variant. Without ``params`` it skips the
    decay/threshold/penalty gradients (and recomputing the previous membrane they need). With
    ``fold`` the spikes' gradient arrives as the next Linear's current gradient ``g_next
    [T, B, K]`` and its weight ``w [K, H]``: the loop forms ``g_next @ w`` per tile and
    accumulates the weight's gradient per neuron in ``acc [K, N]`` (tiles hold whole rows).
    With ``inplace`` the current's gradient overwrites ``pre`` (``g_current`` is ignored): step
    ``t`` writes row ``t`` after reading it and reads only row ``t - 1`` besides, so no value is
    overwritten before its last use, and no second ``[T, N]`` buffer is written."""

    @numba.njit(cache=True, nogil=True)
    def backward(
        pre, d, th, p, s0, o0, g_spikes, g_membrane, g_inner, g_outer,
        g_current, g_decay, g_threshold, g_penalty, g_inner0, g_outer0,
        g_next, w, rpm, acc, hid, tile, slope, zero, one, lo, hi,
    ):  # fmt: skip
        steps = pre.shape[0]
        has_m, has_s = g_membrane.shape[0] > 0, g_spikes.shape[0] > 0
        for start in range(lo, hi, tile):
            stop = min(hi, start + tile)
            m = stop - start
            db, tb, pb = d[start:stop], th[start:stop], p[start:stop]
            rb = pb / tb
            kb = pb / (tb * tb)
            ib = one / tb  # multiply in the loop: a division there slows it down
            ga = np.zeros(m, pre.dtype)
            gd = np.zeros(m, pre.dtype)
            gt = np.zeros(m, pre.dtype)
            gp = np.zeros(m, pre.dtype)
            sp = np.empty(m, pre.dtype)
            no_grad = np.zeros(m, pre.dtype)
            folded = np.empty(m, pre.dtype)
            sprev = np.empty(m, pre.dtype)
            for t in range(steps - 1, -1, -1):
                at = pre[t, start:stop]
                if t + 1 < steps:
                    gm_next = g_membrane[t + 1, start:stop] if has_m else no_grad
                    gs_next = g_spikes[t + 1, start:stop] if has_s else no_grad
                    if fold:
                        _fold_spike_grad(folded, gs_next, g_next[t + 1], w, rpm, start, m, hid)
                        gs_next = folded
                else:
                    gm_next, gs_next = g_inner[start:stop], g_outer[start:stop]
                if fold:  # spikes[t] = o_{t-1}, recomputed from a_{t-1}
                    if t == 0:
                        sprev[:] = o0[start:stop]
                    else:
                        prev = pre[t - 1, start:stop]
                        for j in range(m):
                            vp = prev[j] - tb[j]
                            if heaviside:
                                sprev[j] = one if vp > zero else zero
                            else:
                                sprev[j] = vp if vp > zero else zero
                    _fold_weight_grad(acc, sprev, g_next[t], start, m, hid)
                # the previous step's post-reset membrane, recomputed from its pre-reset value
                if not params:
                    pass
                elif t == 0:
                    sp[:] = s0[start:stop]
                else:
                    prev = pre[t - 1, start:stop]
                    for j in range(m):
                        ap = prev[j]
                        vp = ap - tb[j]
                        if heaviside:
                            op = one if vp > zero else zero
                        else:
                            op = vp if vp > zero else zero
                        gpv = one if op > zero else zero
                        if scale:
                            sp[j] = ap - rb[j] * ap * gpv
                        else:
                            sp[j] = ap - (pb[j] + op) * gpv
                gct = at if inplace else g_current[t, start:stop]
                for j in range(m):
                    a = at[j]
                    v = a - tb[j]
                    g = one if v > zero else zero
                    gs = gm_next[j] + db[j] * ga[j]
                    go = gs_next[j]
                    if not scale:
                        go = go - g * gs
                    if heaviside:
                        r = one / (one + slope * abs(v))
                        gv = go * (r * r)
                    else:
                        gv = go * g
                    if scale:
                        new_ga = gs * (one - rb[j] * g) + gv
                    else:
                        new_ga = gs + gv
                    if params:
                        if scale:
                            gsag = gs * a * g
                            gt[j] += gsag * kb[j] - gv
                            gp[j] -= gsag * ib[j]
                        else:
                            gt[j] -= gv
                            gp[j] -= gs * g
                        gd[j] += new_ga * sp[j]
                    ga[j] = new_ga
                    gct[j] = new_ga
            g_decay[start:stop] = gd
            g_threshold[start:stop] = gt
            g_penalty[start:stop] = gp
            for j in range(m):
                g_inner0[start + j] = (g_membrane[0, start + j] if has_m else zero) + db[j] * ga[j]
                g_outer0[start + j] = g_spikes[0, start + j] if has_s else zero
            if fold:
                _fold_spike_grad(folded, g_outer0[start:stop], g_next[0], w, rpm, start, m, hid)
                g_outer0[start:stop] = folded

    return backward


_COMPILED: dict[tuple, object] = {}


def _forward_loop(config: LIF, membranes: bool = True, biased: bool = False, inplace: bool = False):
    key = ("forward", config.reset == "scale", config.spike_fn == "heaviside", membranes, biased, inplace)
    if key not in _COMPILED:
        _COMPILED[key] = _build(*key[1:])
    return _COMPILED[key]


def _backward_loop(config: LIF, params: bool, fold: bool, inplace: bool = False):
    key = ("backward", config.reset == "scale", config.spike_fn == "heaviside", params, fold, inplace)
    if key not in _COMPILED:
        _COMPILED[key] = _build_backward(*key[1:])
    return _COMPILED[key]


MIN_WORK_PER_THREAD = 1 << 18  # neuron-steps below which splitting over threads does not pay
_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0  # a forked child inherits the pool object but not its threads: make a new one


def run_split(kernel, args: tuple, steps: int, n: int, threads: int | None = None, align: int = 16) -> None:
    """Run ``kernel(*args, lo, hi)`` over contiguous neuron ranges, one per torch CPU thread.

    The kernels release the GIL, so a small thread pool runs the ranges in parallel; each range
    is a multiple of ``align`` neurons (16: whole cache lines) and small problems run inline.
    """
    global _POOL, _POOL_PID
    threads = torch.get_num_threads() if threads is None else threads
    threads = max(1, min(threads, steps * n // MIN_WORK_PER_THREAD, n // align))
    if threads == 1:
        kernel(*args, 0, n)
        return
    if _POOL is None or _POOL._max_workers < threads or _POOL_PID != os.getpid():
        _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="nmsnn-numba")
        _POOL_PID = os.getpid()
    size = -(-n // threads)
    size = -(-size // align) * align
    bounds = [(lo, min(n, lo + size)) for lo in range(0, n, size)]
    futures = [_POOL.submit(kernel, *args, lo, hi) for lo, hi in bounds[1:]]
    kernel(*args, *bounds[0])
    for future in futures:
        future.result()


_U32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


_P32, _Q32 = np.uint32(0x9E3779B1), np.uint32(0x85EBCA77)
_N1, _N2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)


@numba.njit(cache=True, nogil=True, inline="always")
def _fmix32(h):
    """MurmurHash3's finalizer in uint32 arithmetic (every product truncated to 32 bits, as the
    torch fallback's ``& 0xFFFFFFFF`` does): LLVM keeps it in 32-bit lanes, twice as many per
    vector register as the same hash in uint64."""
    h = h ^ (h >> np.uint32(16))
    h = np.uint32(h * _N1)
    h = h ^ (h >> np.uint32(13))
    h = np.uint32(h * _N2)
    return h ^ (h >> np.uint32(16))


@numba.njit(cache=True, nogil=True, inline="always")
def noise_row(x, row, base, key0, key1, lo, hi):
    """``row[j] = x[j] * u(base + j)`` for ``j`` in ``lo:hi``. Where the whole range shares the
    counter's high word (always, below 2**32 elements) the loop runs in 32-bit lanes."""
    scale = np.float32(1.0 / (1 << 24))
    first, last = base + np.uint64(lo), base + np.uint64(max(lo, hi - 1))
    if (first >> _S32) == (last >> _S32):
        low = np.uint32(first & _U32)
        high = np.uint32(np.uint32(first >> _S32) * _Q32)
        xs, rs = x[lo:hi], row[lo:hi]
        for j in range(hi - lo):
            h = _fmix32(np.uint32(np.uint32(low + np.uint32(j)) * _P32 + key0))
            h = _fmix32(np.uint32((h ^ key1) + high))
            rs[j] = xs[j] * (np.float32(h >> np.uint32(8)) * scale)
        return
    for j in range(lo, hi):
        i = base + np.uint64(j)
        h = _fmix32(np.uint32(np.uint32(i & _U32) * _P32 + key0))
        h = _fmix32(np.uint32((h ^ key1) + np.uint32(i >> _S32) * _Q32))
        row[j] = x[j] * (np.float32(h >> np.uint32(8)) * scale)


@numba.njit(cache=True, nogil=True)
def noise_kernel(x, out, k0, k1, lo, hi):
    """``out[t, j] = x[j] * u(t * N + j)`` for columns ``lo:hi``: the counter-based uniform of
    :mod:`nmsnn.core.backends.noise`, bit for bit (``u`` has 24 bits, exact in float32, so the
    product rounds once in the output's precision)."""
    steps, n = out.shape
    key0, key1 = np.uint32(k0), np.uint32(k1)
    for t in range(steps):
        noise_row(x, out[t], np.uint64(t) * np.uint64(n), key0, key1, lo, hi)


@numba.njit(cache=True)
def noise_at(x, base, k0, k1):
    """``x * u(base + j)`` for one row: :func:`noise_row` at any counter (for tests)."""
    row = np.empty_like(x)
    noise_row(x, row, np.uint64(base), np.uint32(k0), np.uint32(k1), 0, x.shape[0])
    return row


NATIVE = (torch.float32, torch.float64)


def _np(x: Tensor) -> np.ndarray:
    return x.detach().numpy()


def _consts(dtype: torch.dtype):
    npdt = np.float32 if dtype == torch.float32 else np.float64
    return npdt(0), npdt(1), npdt


class NumbaKernels:
    """:class:`~nmsnn.core.backends.fused.Kernels` compiled by numba (CPU tensors)."""

    name = "numba"

    def forward(self, job: ForwardJob, bias: Tensor | None = None) -> ForwardResult:
        """``bias [N]`` (optional) is added to ``current`` in the loop (see :func:`_build`). With
        ``into_current`` (and ``save``) the saved ``pre`` is ``current`` itself, overwritten."""
        current, params, inner0, outer0, config, save, membranes, into_current = job
        dtype = current.dtype
        if dtype not in NATIVE:  # the float32 copy of current is this call's own: nothing to overwrite
            promoted = ForwardJob(
                current.float(), Flat(*(x.float() for x in params)), inner0.float(), outer0.float(),
                config, save, membranes,
            )  # fmt: skip
            out = self.forward(promoted, None if bias is None else bias.float())
            return ForwardResult(
                out.spikes.to(dtype),
                None if out.membrane is None else out.membrane.to(dtype),
                out.pre,
                out.inner.to(dtype),
                out.outer.to(dtype),
            )
        retain_freed_memory()
        steps, n = current.shape
        spikes = torch.empty_like(current)
        membrane = torch.empty_like(current) if membranes else current.new_empty(0, n)
        inplace = into_current and save
        pre = current if inplace else (torch.empty_like(current) if save else current.new_empty(1, 1))
        inner, outer = current.new_empty(n), current.new_empty(n)
        zero, one, _ = _consts(dtype)
        in_bias = current.new_empty(0) if bias is None else bias.to(dtype).contiguous()
        args = (
            _np(current), _np(in_bias), *(_np(x) for x in params), _np(inner0), _np(outer0),
            _np(spikes), _np(membrane), _np(pre), _np(inner), _np(outer), save, zero, one,
        )  # fmt: skip
        run_split(_forward_loop(config, membranes, bias is not None, inplace), args, steps, n)
        return ForwardResult(spikes, membrane if membranes else None, pre if save else None, inner, outer)

    def backward(self, job: BackwardJob, fold: Fold | None = None, into_pre: bool = False) -> BackwardResult:
        """With ``into_pre`` the current's gradient is written over ``pre`` (then unusable)."""
        pre, params, inner0, grad_spikes, grad_membrane, grad_inner, grad_outer, config, param_grads = job
        # pre is float32/float64 (other dtypes were promoted in forward); grads follow pre's dtype
        steps, n = pre.shape
        dt = pre.dtype
        g_current = pre if into_pre else torch.empty_like(pre)
        g_params = [pre.new_zeros(n) for _ in range(3)]  # zeros unless param_grads
        g_params += [pre.new_empty(n) for _ in range(2)]
        zero, one, npdt = _consts(dt)
        absent = pre.new_empty(0, n)
        grad_spikes = absent if grad_spikes is None else grad_spikes
        grad_membrane = absent if grad_membrane is None else grad_membrane
        if fold is None:
            outer0, g_next, weight, acc = inner0, pre.new_empty(0, 0, 0), pre.new_empty(0, 0, 0), absent
            hid, tile, align, rpm = 1, TILE, 16, 1
        else:
            outer0, g_next, weight, acc = fold
            weight = weight if weight.dim() == 3 else weight.unsqueeze(0)
            hid = weight.shape[2]
            rpm = g_next.shape[1] // weight.shape[0]  # rows per member
            tile, align = max(1, TILE // hid) * hid, math.lcm(16, hid)
        args = (
            _np(pre), *(_np(x.to(dt)) for x in params), _np(inner0.to(dt)), _np(outer0.to(dt)),
            _np(grad_spikes), _np(grad_membrane), _np(grad_inner), _np(grad_outer),
            _np(g_current), *(_np(x) for x in g_params),
            _np(g_next), _np(weight), rpm, _np(acc), hid, tile,
            npdt(config.surrogate_slope), zero, one,
        )  # fmt: skip
        kernel = _backward_loop(config, param_grads, fold is not None, into_pre)
        run_split(kernel, args, steps, n, align=align)
        return BackwardResult(g_current, *g_params)


class Fold(NamedTuple):
    """The next layer's Linear folded into a backward pass (see :class:`FoldedRecurrence`)."""

    outer0: Tensor  # [N] the incoming state's output (it is spikes[0])
    g_next: Tensor  # [T, B, K] gradient of the next layer's current, contiguous
    weight: Tensor  # [K, H] the next layer's weight ([M, K, H]: one per member of B/M rows), contiguous
    acc: Tensor  # [K, N] zeros: per-neuron sums of the weight gradient, filled by the kernel


NUMBA_KERNELS = NumbaKernels()


def _cpu_tensors(current: Tensor) -> None:
    if current.device.type != "cpu":
        raise RuntimeError(
            f"backend='numba' runs on CPU tensors, got {current.device}; use backend=auto or triton."
        )


numba_recurrence = kernel_backend(NUMBA_KERNELS, _cpu_tensors)


def _next_current(spikes: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``spikes [R, H] @ weight.T + bias`` (the next layer's current, as ``nn.Linear`` computes it)."""
    return spikes @ weight.t() if bias is None else torch.addmm(bias, spikes, weight.t())


class FoldedRecurrence(torch.autograd.Function):
    r"""One layer's recurrence and the next layer's Linear as one autograd node (numba, CPU).

    Forward: the numba recurrence (its membrane only when ``record``: otherwise that output is
    an empty tensor), then ``next = spikes @ W.T + b`` (``W [K, H]``; a population of M models
    passes ``W [M, K, H]`` and ``b [M, K]``, and each member's block of rows uses its own, with
    every product and sum formed exactly as for that model alone). Backward:
    the spikes' gradient ``g_next @ W`` and the weight's gradient
    :math:`\sum_{t,b} g^{next}_{t,b} \otimes spikes_{t,b}` are formed inside the recurrence's
    backward loop, tile by tile (``spikes`` recomputed from the saved pre-reset membrane), so the
    ``[T, B, H]`` gradient of the spikes is never written and read back: with a small next layer
    (the seed's 64 -> 2) that tensor and its two GEMMs cost more than the loop itself.

    ``weight`` may be ``None``: then nothing is folded (the last output is an empty tensor) and
    the node is the plain numba recurrence. ``in_bias [H]`` (optional): this layer's own bias,
    when ``current`` was computed without it (``x @ W.T``); the loop adds it as it reads the
    current (see :func:`_build`), which saves the Linear's broadcast copy of the bias into its
    ``[T*B, H]`` output, and its gradient is :func:`bias_grad` of the current's gradient, as the
    Linear would have formed it. With ``consume`` the caller hands over ``current`` (a tensor
    nothing else reads): the saved pre-reset membrane is written over it. The backward writes
    the current's gradient over that saved membrane, so it runs once (no ``retain_graph``).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        current,
        decay,
        threshold,
        penalty,
        inner0,
        outer0,
        in_bias,
        weight,
        bias,
        config,
        record,
        consume=False,
    ) -> tuple[Tensor, ...]:
        steps, batch, hidden = current.shape
        cur, params, s0, o0 = flat_inputs(current, decay, threshold, penalty, inner0, outer0)
        flat_bias = None
        if in_bias is not None:
            flat_bias = in_bias.detach().to(cur.dtype).expand(batch, hidden).reshape(-1)
        out = NUMBA_KERNELS.forward(ForwardJob(cur, params, s0, o0, config, True, record, consume), flat_bias)
        if weight is None:
            w, nxt = cur.new_empty(0, 0, 0), cur.new_empty(steps, batch, 0)
        else:
            w = weight.detach().to(cur.dtype).contiguous()
            b = None if bias is None else bias.detach().to(cur.dtype)
            if w.dim() == 2:
                nxt = _next_current(out.spikes.view(steps * batch, hidden), w, b)
            else:  # members: each one's rows through its own weight, as that model alone would
                members = w.shape[0]
                spikes = out.spikes.view(steps, members, batch // members, hidden)
                nxt = torch.stack(
                    [
                        _next_current(
                            spikes[:, m].reshape(-1, hidden), w[m], None if b is None else b[m]
                        ).view(steps, batch // members, -1)
                        for m in range(members)
                    ],
                    dim=1,
                )
        ctx.save_for_backward(out.pre, *params, s0, o0, w)
        ctx.set_materialize_grads(False)
        ctx.config, ctx.shape, ctx.values = config, (steps, batch, hidden), (decay, threshold, penalty)
        ctx.folds, ctx.has_bias, ctx.consumed = weight is not None, bias is not None, False
        ctx.weight_dtype = None if weight is None else weight.dtype
        ctx.in_bias_dtype = None if in_bias is None else in_bias.dtype
        ctx.dtypes = (current.dtype, inner0.dtype, outer0.dtype)
        return (
            *node_outputs(out, ctx.shape, record),
            nxt.view(steps, batch, -1).to(current.dtype if weight is None else weight.dtype),
        )

    @staticmethod
    def backward(ctx: Any, g_spikes, g_membrane, g_inner, g_outer, g_next):  # type: ignore[override]
        if ctx.consumed:
            raise RuntimeError(
                "the numba node's backward ran already: it writes the current's gradient over its "
                "saved pre-reset membrane, so it cannot run twice (retain_graph); use backend=fused"
            )
        pre, d, th, p, s0, o0, weight = ctx.saved_tensors
        steps, batch, hidden = ctx.shape
        need = ctx.needs_input_grad
        fold = None
        if ctx.folds:
            outputs = weight.shape[-2]
            if g_next is None:
                g_next = pre.new_zeros(steps, batch, outputs)
            g_next = g_next.to(pre.dtype).reshape(steps, batch, outputs).contiguous()
            fold = Fold(o0, g_next, weight, pre.new_zeros(outputs, batch * hidden))
        elif all(g is None for g in (g_spikes, g_membrane, g_inner, g_outer)):
            return (None,) * 12
        grads = NUMBA_KERNELS.backward(
            BackwardJob(
                pre, Flat(d, th, p), s0, *flat_grads(pre, steps, g_spikes, g_membrane, g_inner, g_outer),
                ctx.config, any(need[1:4]),
            ),
            fold=fold,
            into_pre=True,
        )  # fmt: skip
        ctx.consumed = True
        grad_in_bias = None
        if need[6]:
            grad_in_bias = bias_grad(grads.current.view(steps * batch, hidden)).to(ctx.in_bias_dtype)
        grad_w = grad_b = None
        if fold is None:
            pass
        elif weight.dim() == 2:
            grad_w = fold.acc.view(-1, batch, hidden).sum(1).to(ctx.weight_dtype) if need[7] else None
            grad_b = g_next.sum((0, 1)) if need[8] and ctx.has_bias else None
        else:  # per member, each sum over its own rows laid out as that model alone would
            members = weight.shape[0]
            rows = batch // members
            acc = fold.acc.view(outputs, members, rows, hidden)
            per_step = g_next.view(steps, members, rows, outputs)
            grad_w = (
                torch.stack([acc[:, m].contiguous().sum(1) for m in range(members)]).to(ctx.weight_dtype)
                if need[7]
                else None
            )
            grad_b = (
                torch.stack([per_step[:, m].contiguous().sum((0, 1)) for m in range(members)])
                if need[8] and ctx.has_bias
                else None
            )
        return (*input_grads(ctx, grads, need), grad_in_bias, grad_w, grad_b, None, None, None)
