"""NumPy's own BLAS, called from Numba kernels (:func:`rtsynth.nn.fast_kernels.cnn_rows`).

``gemm(fn, m, n, k, a, lda, b, ldb, c, ldc)``: ``c[:m, :n] = a[:m, :k] @ b[:k, :n]`` (row-major,
float32), through ``fn``, the address of an ILP64 ``cblas_sgemm``; ``gemv(fn, k, n, b, ldb, x,
y)``: ``y[:n] = x[:k] @ b[:k, :n]`` through ``cblas_sgemv``. These are the calls ``np.dot`` makes
(a product with one row goes to ``sgemv``), so the numbers are NumPy's; inside a nogil kernel
they need no GIL. Numba intrinsics (LLVM code: a call through the function pointer), imported
only where Numba is (the JIT and the ahead-of-time build); the addresses come from
:func:`pointers`, at run time.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def _f32_array(t):
    return isinstance(t, types.Array) and t.dtype == types.float32


def _data(context, builder, aty, val):
    return context.make_array(aty)(context, builder, val).data


@intrinsic
def gemm(typingctx, fn, m, n, k, a, lda, b, ldb, c, ldc):
    if not (_f32_array(a) and _f32_array(b) and _f32_array(c)):
        return None
    sig = types.void(fn, m, n, k, a, lda, b, ldb, c, ldc)

    def codegen(context, builder, sg, args):
        i32, i64, f32 = ir.IntType(32), ir.IntType(64), ir.FloatType()
        fp = f32.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, f32, fp, i64, fp,
                                               i64, f32, fp, i64])
        ptr = builder.inttoptr(context.cast(builder, args[0], sg.args[0], types.int64),
                               fnty.as_pointer())
        as64 = [context.cast(builder, args[i], sg.args[i], types.int64) for i in (1, 2, 3, 5,
                                                                                  7, 9)]
        builder.call(ptr, [ir.Constant(i32, ROW_MAJOR), ir.Constant(i32, NO_TRANS),
                           ir.Constant(i32, NO_TRANS), as64[0], as64[1], as64[2],
                           ir.Constant(f32, 1.0), _data(context, builder, sg.args[4], args[4]),
                           as64[3], _data(context, builder, sg.args[6], args[6]), as64[4],
                           ir.Constant(f32, 0.0), _data(context, builder, sg.args[8], args[8]),
                           as64[5]])
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def gemv(typingctx, fn, k, n, b, ldb, x, y):
    if not (_f32_array(b) and _f32_array(x) and _f32_array(y)):
        return None
    sig = types.void(fn, k, n, b, ldb, x, y)

    def codegen(context, builder, sg, args):
        i32, i64, f32 = ir.IntType(32), ir.IntType(64), ir.FloatType()
        fp = f32.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i64, i64, f32, fp, i64, fp, i64, f32,
                                               fp, i64])
        ptr = builder.inttoptr(context.cast(builder, args[0], sg.args[0], types.int64),
                               fnty.as_pointer())
        kk, nn, ld = (context.cast(builder, args[i], sg.args[i], types.int64) for i in (1, 2, 4))
        one = ir.Constant(i64, 1)
        # numpy's row @ matrix: sgemv(RowMajor, Trans, K, N, 1, B, ldb, x, 1, 0, y, 1)
        builder.call(ptr, [ir.Constant(i32, ROW_MAJOR), ir.Constant(i32, TRANS), kk, nn,
                           ir.Constant(f32, 1.0), _data(context, builder, sg.args[3], args[3]),
                           ld, _data(context, builder, sg.args[5], args[5]), one,
                           ir.Constant(f32, 0.0), _data(context, builder, sg.args[6], args[6]),
                           one])
        return context.get_dummy_value()
    return sig, codegen
