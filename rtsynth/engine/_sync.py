"""Atomics and futexes for Numba kernels (:mod:`rtsynth.engine.parallel`): two threads that meet
without the GIL.

Every function here is a Numba intrinsic (LLVM code emitted into the kernel that calls it), so a
worker thread can sleep and wake inside one nogil kernel:

- ``load(a, i)`` / ``store(a, i, v)``: sequentially consistent atomic load and store of element
  ``i`` of an int32 array (a compiler and a CPU barrier both);
- ``wait(a, i, v)``: sleep while ``a[i] == v`` (``futex(FUTEX_WAIT_PRIVATE)``; returns at once
  when it differs, and may return early: callers loop);
- ``wake(a, i)``: wake the threads sleeping on ``a[i]`` (``futex(FUTEX_WAKE_PRIVATE)``).

The futex goes through libc's ``syscall`` (Linux x86-64 and aarch64 numbers), found by name when
the kernel is linked: by the JIT in this process, by the dynamic loader for the compiled module.
Imported only where Numba is (the JIT, and the ahead-of-time build).
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine(), 202)
FUTEX_WAIT_PRIVATE = 128
FUTEX_WAKE_PRIVATE = 129
_ALIGN = 4


def _elem_ptr(context, builder, aty, arr, idx):
    a = context.make_array(aty)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, aty, a, [idx], wraparound=False)


def _check(a):
    return isinstance(a, types.Array) and a.dtype == types.int32 and a.ndim == 1


@intrinsic
def load(typingctx, a, i):
    if not _check(a):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(p, "seq_cst", _ALIGN)
    return types.int32(a, i), codegen


@intrinsic
def store(typingctx, a, i, v):
    if not _check(a):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
        val = context.cast(builder, args[2], sig.args[2], types.int32)
        builder.store_atomic(val, p, "seq_cst", _ALIGN)
        return context.get_dummy_value()
    return types.void(a, i, v), codegen


def _futex(builder, p, op, val):
    i64 = ir.IntType(64)
    fnty = ir.FunctionType(i64, [i64], var_arg=True)
    fn = cgutils.get_or_insert_function(builder.module, fnty, "syscall")
    addr = builder.ptrtoint(p, i64)
    zero = ir.Constant(i64, 0)
    return builder.call(fn, [ir.Constant(i64, SYS_FUTEX), addr, ir.Constant(i64, op), val,
                             zero, zero, zero])


@intrinsic
def wait(typingctx, a, i, v):
    if not _check(a):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
        val = context.cast(builder, args[2], sig.args[2], types.int64)
        return _futex(builder, p, FUTEX_WAIT_PRIVATE, val)
    return types.int64(a, i, v), codegen


@intrinsic
def wake(typingctx, a, i):
    if not _check(a):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
        return _futex(builder, p, FUTEX_WAKE_PRIVATE, ir.Constant(ir.IntType(64), 1 << 30))
    return types.int64(a, i), codegen


@intrinsic
def cas(typingctx, a, i, expect, new):
    """``a[i] = new`` if ``a[i] == expect`` (atomically); whether it was."""
    if not _check(a):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
        e = context.cast(builder, args[2], sig.args[2], types.int32)
        n = context.cast(builder, args[3], sig.args[3], types.int32)
        res = builder.cmpxchg(p, e, n, "seq_cst", "seq_cst")
        return builder.extract_value(res, 1)
    return types.boolean(a, i, expect, new), codegen
