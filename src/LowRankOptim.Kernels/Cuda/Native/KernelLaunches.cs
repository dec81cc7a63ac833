namespace LowRankOptim.Kernels;

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
        ("smmf.cu", "smmf_sums"), ("smmf.cu", "smmf_apply"), ("smmf.cu", "smmf_row_sums"),
        ("smmf.cu", "smmf_col_sums"), ("smmf.cu", "smmf_col_scale"),
        .. QuantizedAdamLaunches.Functions.Select(f => ("quantized_adam.cu", f)),
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

    /// <summary>
    /// The five launches of one SMMF step (smmf.cu) on a <see cref="SmmfPlan.Rows"/>×<see cref="SmmfPlan.Cols"/>
    /// float32 view, in stream order: sums over the old state into <paramref name="scratch"/>, the element
    /// pass (target and sign bytes), then the new row factors, column sums and normalized column factors.
    /// <paramref name="scratch"/> holds <see cref="SmmfPlan.ScratchDoubles"/> doubles (no initialization
    /// needed: every slot read is written first) and must stay allocated until the launches have run.
    /// The first-moment pointers are <see cref="IntPtr.Zero"/> without momentum.
    /// </summary>
    public static void SmmfStep(int device, in SmmfPlan plan, IntPtr g, IntPtr target, IntPtr rowM, IntPtr colM, IntPtr signs,
        IntPtr rowV, IntPtr colV, IntPtr scratch, bool updateWeights, in SmmfScalars s)
    {
        var (rows, cols) = (plan.Rows, plan.Cols);
        var n = rows * cols;
        if (n == 0) return;
        var momentum = plan.Momentum ? 1 : 0;
        var update = updateWeights ? 1 : 0;
        float b1 = (float)s.Beta1, c1 = (float)(1 - s.Beta1), b2 = (float)s.Beta2, c2 = (float)(1 - s.Beta2), eps = (float)s.Eps;
        float step = (float)s.StepSize, decay = (float)s.DecayFactor;
        var (rowsPerBand, bands, columnBlocks) = (plan.RowsPerBand, plan.Bands, plan.ColumnBlocks);
        // Scratch layout, in doubles: V's band column sums, column-block row sums and block sums, then M's.
        var colPartV = scratch;
        var rowPartV = Doubles(colPartV, bands * cols);
        var blockSumV = Doubles(rowPartV, columnBlocks * rows);
        var colPartM = plan.Momentum ? Doubles(blockSumV, columnBlocks) : IntPtr.Zero;
        var rowPartM = plan.Momentum ? Doubles(colPartM, bands * cols) : IntPtr.Zero;
        var blockSumM = plan.Momentum ? Doubles(rowPartM, columnBlocks * rows) : IntPtr.Zero;
        var quantities = plan.Momentum ? 2u : 1u;
        var blocksX = checked((uint)columnBlocks);

        var sums = CudaDriver.Function(device, "smmf.cu", "smmf_sums");
        CudaDriver.Launch(sums, blocksX, checked((uint)bands), Block,
            [(IntPtr)(&g), (IntPtr)(&rowM), (IntPtr)(&colM), (IntPtr)(&signs), (IntPtr)(&rowV), (IntPtr)(&colV),
             (IntPtr)(&colPartM), (IntPtr)(&colPartV), (IntPtr)(&rowPartM), (IntPtr)(&rowPartV),
             (IntPtr)(&rows), (IntPtr)(&cols), (IntPtr)(&rowsPerBand), (IntPtr)(&momentum),
             (IntPtr)(&b1), (IntPtr)(&c1), (IntPtr)(&b2), (IntPtr)(&c2)]);

        var apply = CudaDriver.Function(device, "smmf.cu", "smmf_apply");
        CudaDriver.Launch(apply, Grid((n + 7) / 8), Block,
            [(IntPtr)(&g), (IntPtr)(&target), (IntPtr)(&rowM), (IntPtr)(&colM), (IntPtr)(&signs), (IntPtr)(&rowV), (IntPtr)(&colV),
             (IntPtr)(&n), (IntPtr)(&cols), (IntPtr)(&momentum), (IntPtr)(&update),
             (IntPtr)(&b1), (IntPtr)(&c1), (IntPtr)(&b2), (IntPtr)(&c2), (IntPtr)(&eps), (IntPtr)(&step), (IntPtr)(&decay)]);

        var rowSums = CudaDriver.Function(device, "smmf.cu", "smmf_row_sums");
        CudaDriver.Launch(rowSums, Grid(rows), quantities, Block,
            [(IntPtr)(&rowPartV), (IntPtr)(&rowPartM), (IntPtr)(&rowV), (IntPtr)(&rowM), (IntPtr)(&rows), (IntPtr)(&columnBlocks)]);

        var colSums = CudaDriver.Function(device, "smmf.cu", "smmf_col_sums");
        CudaDriver.Launch(colSums, blocksX, quantities, Block,
            [(IntPtr)(&colPartV), (IntPtr)(&colPartM), (IntPtr)(&blockSumV), (IntPtr)(&blockSumM), (IntPtr)(&cols), (IntPtr)(&bands)]);

        var colScale = CudaDriver.Function(device, "smmf.cu", "smmf_col_scale");
        CudaDriver.Launch(colScale, blocksX, quantities, Block,
            [(IntPtr)(&colPartV), (IntPtr)(&colPartM), (IntPtr)(&blockSumV), (IntPtr)(&blockSumM), (IntPtr)(&colV), (IntPtr)(&colM),
             (IntPtr)(&cols), (IntPtr)(&columnBlocks)]);
    }

    private static IntPtr Doubles(IntPtr address, long count) => address + checked((nint)(count * sizeof(double)));

    private static uint Grid(long n) => (uint)Math.Clamp((n + Block - 1) / Block, 1, MaxGrid);
}

/// <summary>
/// The launch geometry of one SMMF step, from the shape only (so the sums' order, and the results, do not
/// depend on the device): the rows are split into <see cref="Bands"/> bands of <see cref="RowsPerBand"/>
/// rows (at least <see cref="MinRowsPerBand"/>, at most <see cref="MaxBands"/> bands), the columns into
/// <see cref="ColumnBlocks"/> blocks of <see cref="KernelLaunches.Block"/>. The scratch holds, per quantity
/// (V, then M with momentum), the column sums of every band (Bands·Cols), the row sums of every column block
/// (ColumnBlocks·Rows) and one sum per column block. For near-square views that is a few percent of the
/// tensor (the band sums of both moments are at most 4/<see cref="RowsPerBand"/> ≤ 1/4 of its bytes); for
/// views with fewer than 256 columns the row sums are 8 bytes per row and quantity.
/// </summary>
internal readonly record struct SmmfPlan(long Rows, long Cols, bool Momentum)
{
    /// <summary>The most bands of rows.</summary>
    public const long MaxBands = 64;

    /// <summary>The fewest rows per band (bounds the scratch of the band column sums).</summary>
    public const long MinRowsPerBand = 16;

    /// <summary>Rows per band: ⌈Rows/64⌉, at least 16.</summary>
    public long RowsPerBand => Math.Max(MinRowsPerBand, (Rows + MaxBands - 1) / MaxBands);

    /// <summary>⌈Rows/<see cref="RowsPerBand"/>⌉ (0 for no rows).</summary>
    public long Bands => (Rows + RowsPerBand - 1) / RowsPerBand;

    /// <summary>⌈Cols/256⌉.</summary>
    public long ColumnBlocks => (Cols + KernelLaunches.Block - 1) / KernelLaunches.Block;

    /// <summary>The float64 elements of scratch one step needs.</summary>
    public long ScratchDoubles => (Momentum ? 2 : 1) * checked(Bands * Cols + ColumnBlocks * Rows + ColumnBlocks);
}
