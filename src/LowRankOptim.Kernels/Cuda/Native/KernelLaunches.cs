namespace LowRankOptim.Kernels.Cuda.Native;

/// <summary>
/// Typed launches of the embedded kernels on raw device addresses, shared by <see cref="CudaKernels"/>
/// (addresses of TorchSharp CUDA tensors) and the GPU harness (cuMemAlloc buffers). Asynchronous on the
/// default stream. Grid-stride loops, so the grid is capped.
/// </summary>
internal static unsafe class KernelLaunches
{
    /// <summary>Threads per block of every kernel (reductions.cu's BLOCK).</summary>
    public const int Block = 256;
    private const long MaxGrid = 65535;

    /// <summary>Every kernel: (source, function) pairs, for the compile test and the harness.</summary>
    public static IReadOnlyList<(string Source, string Function)> All { get; } =
    [
        ("adam.cu", "adam_direction_f32"), ("adam.cu", "adam_direction_bf16"), ("adam.cu", "adam_update_f32"), ("adam.cu", "adam_update_bf16"),
        ("reductions.cu", "row_reduce"), ("reductions.cu", "col_reduce"),
    ];

    /// <summary>adam_direction_f32 / _bf16 over <paramref name="n"/> elements.</summary>
    public static void AdamDirection(int device, bool bf16, IntPtr g, IntPtr m, IntPtr v, IntPtr d, long n, in AdamScalars s)
    {
        if (n == 0) return;
        var f = CudaDriver.Function(device, "adam.cu", bf16 ? "adam_direction_bf16" : "adam_direction_f32");
        float b1 = (float)s.Beta1, c1 = (float)(1 - s.Beta1), b2 = (float)s.Beta2, c2 = (float)(1 - s.Beta2), eps = (float)s.Eps, sbc2 = (float)s.SqrtBiasCorrection2;
        var corrected = s.SqrtBiasCorrection2 != 1.0 ? 1 : 0;
        CudaDriver.Launch(f, Grid(n), Block,
            [(IntPtr)(&g), (IntPtr)(&m), (IntPtr)(&v), (IntPtr)(&d), (IntPtr)(&n), (IntPtr)(&b1), (IntPtr)(&c1), (IntPtr)(&b2), (IntPtr)(&c2), (IntPtr)(&eps), (IntPtr)(&sbc2), (IntPtr)(&corrected)]);
    }

    /// <summary>adam_update_f32 / _bf16 over <paramref name="n"/> elements: moments and weights <paramref name="w"/> in place.</summary>
    public static void AdamUpdate(int device, bool bf16, IntPtr g, IntPtr m, IntPtr v, IntPtr w, long n, in AdamScalars s)
    {
        if (n == 0) return;
        var f = CudaDriver.Function(device, "adam.cu", bf16 ? "adam_update_bf16" : "adam_update_f32");
        float b1 = (float)s.Beta1, c1 = (float)(1 - s.Beta1), b2 = (float)s.Beta2, c2 = (float)(1 - s.Beta2), eps = (float)s.Eps, sbc2 = (float)s.SqrtBiasCorrection2;
        float decay = (float)s.DecayFactor, negativeStep = (float)-s.StepSize;
        int corrected = s.SqrtBiasCorrection2 != 1.0 ? 1 : 0, decays = s.DecayFactor != 1 ? 1 : 0;
        CudaDriver.Launch(f, Grid(n), Block,
            [(IntPtr)(&g), (IntPtr)(&m), (IntPtr)(&v), (IntPtr)(&w), (IntPtr)(&n), (IntPtr)(&b1), (IntPtr)(&c1), (IntPtr)(&b2), (IntPtr)(&c2), (IntPtr)(&eps), (IntPtr)(&sbc2), (IntPtr)(&corrected),
             (IntPtr)(&decay), (IntPtr)(&decays), (IntPtr)(&negativeStep)]);
    }

    /// <summary>
    /// row_reduce over <paramref name="totalRows"/> rows of <paramref name="cols"/>: mode 1 blends the row
    /// means of x² + ε into <paramref name="output"/> (Adafactor), mode 0 writes float32 ℓ1 norms.
    /// </summary>
    public static void RowReduce(int device, IntPtr x, IntPtr output, long totalRows, long cols, int mode, bool bf16, float eps, float beta, float oneMinus)
    {
        if (totalRows == 0 || cols == 0) return;
        var f = CudaDriver.Function(device, "reductions.cu", "row_reduce");
        var b = bf16 ? 1 : 0;
        CudaDriver.Launch(f, (uint)Math.Min(totalRows, MaxGrid), Block,
            [(IntPtr)(&x), (IntPtr)(&output), (IntPtr)(&totalRows), (IntPtr)(&cols), (IntPtr)(&mode), (IntPtr)(&b), (IntPtr)(&eps), (IntPtr)(&beta), (IntPtr)(&oneMinus)]);
    }

    /// <summary>col_reduce: the column counterpart of <see cref="RowReduce"/> over a batches×rows×cols tensor.</summary>
    public static void ColReduce(int device, IntPtr x, IntPtr output, long batches, long rows, long cols, int mode, bool bf16, float eps, float beta, float oneMinus)
    {
        if (batches * cols == 0 || rows == 0) return;
        var f = CudaDriver.Function(device, "reductions.cu", "col_reduce");
        var b = bf16 ? 1 : 0;
        CudaDriver.Launch(f, Grid(batches * cols), Block,
            [(IntPtr)(&x), (IntPtr)(&output), (IntPtr)(&batches), (IntPtr)(&rows), (IntPtr)(&cols), (IntPtr)(&mode), (IntPtr)(&b), (IntPtr)(&eps), (IntPtr)(&beta), (IntPtr)(&oneMinus)]);
    }

    private static uint Grid(long n) => (uint)Math.Clamp((n + Block - 1) / Block, 1, MaxGrid);
}
