using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Kernels;

/// <summary>
/// CUDA kernels for TorchSharp CUDA tensors: CUDA C sources embedded in this assembly, compiled at first use
/// with NVRTC into PTX for the device's architecture, loaded with the driver API into the device's primary
/// context and launched on the tensors' device pointers on the default stream (see docs/kernels.md).
/// Adam's direction and full-space update (float32, bfloat16), Adam on block-wise 8/4-bit moments (float32,
/// bfloat16; quantized_adam.cu, see CudaKernels.Quantized.cs), Adafactor statistics and ℓ1 norms (float32,
/// bfloat16), and SMMF's step (float32: SMMF keeps float32 state and computes in float32; smmf.cu, five
/// deterministic launches without atomics, see <see cref="SmmfStep"/>). Outputs and scratch are allocated as
/// torch tensors (libtorch's caching allocator), never with cuMemAlloc.
/// </summary>
/// <remarks>
/// Registered in <see cref="KernelRegistry"/> as <see cref="KernelBackend.Cuda"/>: Adam's direction and update,
/// Adafactor statistics and ℓ1 norms for dense float32 and bfloat16 (the ℓ1 norms for an explicit choice only),
/// SMMF for float32, quantized Adam for block-wise 8-bit and 4-bit moments with float32 and bfloat16 gradients. Not executed on a GPU in this repository's CI (it has none); the kernels are compiled there
/// with NVRTC.
/// </remarks>
internal sealed partial class CudaKernels : IAdamDirectionKernel, IAdamUpdateKernel, IAdafactorStatisticsKernel, ISmmfStepKernel, IL1NormsKernel, IQuantizedAdamKernel
{
    /// <summary>The shared instance.</summary>
    public static CudaKernels Instance { get; } = new();

    private static readonly Lazy<string?> Unavailable = new(FindProblem);

    private CudaKernels() { }

    /// <inheritdoc />
    public KernelBackend Backend => KernelBackend.Cuda;

    /// <summary>Null when CUDA kernels can run in this process, else why not (TorchSharp backend, driver, devices, NVRTC).</summary>
    public static string? UnavailableReason => Unavailable.Value;

    private static string? FindProblem()
    {
        try
        {
            if (!torch.cuda.is_available()) return "TorchSharp has no CUDA backend or device here (torch.cuda.is_available() is false; reference a TorchSharp-cuda package).";
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or NotSupportedException)
        {
            return $"TorchSharp's native backend could not be queried: {e.Message}";
        }
        if (CudaLibraries.DriverProblem is string driver) return driver;
        if (CudaLibraries.NvrtcProblem is string nvrtc) return nvrtc;
        try
        {
            return CudaDriver.DeviceCount() > 0 ? null : "the CUDA driver reports no device.";
        }
        catch (CudaUnavailableException e)
        {
            return e.Message;
        }
    }

    /// <inheritdoc />
    string? IKernel.UnavailableReason => UnavailableReason;

    /// <inheritdoc />
    public long MaxElements(KernelStorage storage) => long.MaxValue;

    /// <inheritdoc />
    public bool Accepts(params ReadOnlySpan<Tensor?> tensors)
    {
        foreach (var t in tensors)
            if (RawTensor.Problem(t, DeviceType.CUDA, "tensor") is not null) return false;
        return true;
    }

    private static void Require()
    {
        if (UnavailableReason is string reason) throw new CudaUnavailableException($"the CUDA kernels cannot run: {reason}");
    }

    private static int Ordinal(Tensor t) => t.device.index < 0 ? 0 : t.device.index;

    private static ScalarType AdamDType(Tensor gradient) => gradient.dtype is ScalarType.Float32 or ScalarType.BFloat16
        ? gradient.dtype
        : throw new ArgumentException($"gradient has dtype {gradient.dtype}; the CUDA Adam kernels need float32 or bfloat16.", nameof(gradient));

    /// <inheritdoc />
    public Tensor AdamDirection(Tensor gradient, Tensor expAvg, Tensor expAvgSq, in AdamScalars scalars)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        Require();
        var dtype = AdamDType(gradient);
        var n = gradient.numel();
        var direction = empty(gradient.shape, gradient.dtype, gradient.device);
        try
        {
            KernelLaunches.AdamDirection(Ordinal(gradient), dtype == ScalarType.BFloat16,
                RawTensor.DevicePointer(gradient, dtype, n, nameof(gradient)), RawTensor.DevicePointer(expAvg, dtype, n, nameof(expAvg)),
                RawTensor.DevicePointer(expAvgSq, dtype, n, nameof(expAvgSq)), RawTensor.DevicePointer(direction, dtype, n, "direction"), n, scalars);
            GC.KeepAlive(gradient); GC.KeepAlive(expAvg); GC.KeepAlive(expAvgSq);
            return direction;
        }
        catch
        {
            direction.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public void AdamUpdate(Tensor gradient, Tensor expAvg, Tensor expAvgSq, in AdamScalars scalars, Tensor weights)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        Require();
        var dtype = AdamDType(gradient);
        var n = gradient.numel();
        KernelLaunches.AdamUpdate(Ordinal(gradient), dtype == ScalarType.BFloat16,
            RawTensor.DevicePointer(gradient, dtype, n, nameof(gradient)), RawTensor.DevicePointer(expAvg, dtype, n, nameof(expAvg)),
            RawTensor.DevicePointer(expAvgSq, dtype, n, nameof(expAvgSq)), RawTensor.DevicePointer(weights, dtype, n, nameof(weights)), n, scalars);
        GC.KeepAlive(gradient); GC.KeepAlive(expAvg); GC.KeepAlive(expAvgSq); GC.KeepAlive(weights);
    }

    /// <inheritdoc />
    public void AdafactorStatistics(Tensor gradient, Tensor rows, Tensor cols, in AdafactorScalars scalars)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        Require();
        if (gradient.dim() < 2) throw new ArgumentException($"gradient must have at least 2 dims (got {gradient.dim()}).", nameof(gradient));
        var dtype = gradient.dtype;
        var (r, c, n) = (gradient.shape[^2], gradient.shape[^1], gradient.numel());
        var b = r * c == 0 ? 0 : n / (r * c);
        var g = RawTensor.DevicePointer(gradient, dtype, n, nameof(gradient));
        var rp = RawTensor.DevicePointer(rows, dtype, b * r, nameof(rows));
        var cp = RawTensor.DevicePointer(cols, dtype, b * c, nameof(cols));
        float eps = (float)scalars.Eps1, beta = (float)scalars.Beta2, oneMinus = (float)(1 - scalars.Beta2);
        var bf = dtype == ScalarType.BFloat16;
        KernelLaunches.RowReduce(Ordinal(gradient), g, rp, b * r, c, 1, bf, eps, beta, oneMinus);
        KernelLaunches.ColReduce(Ordinal(gradient), g, cp, b, r, c, 1, bf, eps, beta, oneMinus);
        GC.KeepAlive(gradient); GC.KeepAlive(rows); GC.KeepAlive(cols);
    }

    /// <inheritdoc />
    /// <remarks>
    /// float32 only; every tensor contiguous and on the gradient's CUDA device. The element-wise results (the
    /// target, the sign bits) equal <see cref="SmmfCpuKernel"/>'s bit for bit; the factors are float64 sums
    /// rounded to float32 once, in another (fixed) order, so they may differ from the CPU kernel's in the last
    /// place. A float64 scratch of <see cref="SmmfPlan.ScratchDoubles"/> elements (the per-band column sums and
    /// per-column-block row sums) is taken from libtorch's caching allocator for the duration of the call.
    /// </remarks>
    /// <exception cref="ArgumentException">A tensor has the wrong device, dtype, size or layout, or the view is empty of columns.</exception>
    /// <exception cref="CudaUnavailableException">The CUDA kernels cannot run in this process.</exception>
    public void SmmfStep(Tensor gradient, in SmmfFactors state, in SmmfScalars scalars, Tensor target, bool updateWeights)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        ArgumentNullException.ThrowIfNull(target);
        var (rows, cols) = (state.Rows, state.Cols);
        if (rows < 0 || cols < 1)
            throw new ArgumentException($"the matrix view must have rows >= 0 and cols >= 1 (got {rows}×{cols}).", nameof(state));
        if (state.HasMomentum && (state.MomentCols is null || state.MomentSigns is null))
            throw new ArgumentException("the first-moment rows, cols and signs must be all present or all null.", nameof(state));
        var n = checked(rows * cols);
        var targetName = updateWeights ? "parameter" : "direction";
        const ScalarType f32 = ScalarType.Float32;
        var g = RawTensor.DevicePointer(gradient, f32, n, nameof(gradient));
        var t = RawTensor.DevicePointer(target, f32, n, targetName);
        var rowV = RawTensor.DevicePointer(state.VarianceRows, f32, rows, "variance rows");
        var colV = RawTensor.DevicePointer(state.VarianceCols, f32, cols, "variance cols");
        IntPtr rowM = IntPtr.Zero, colM = IntPtr.Zero, signs = IntPtr.Zero;
        if (state.HasMomentum)
        {
            rowM = RawTensor.DevicePointer(state.MomentRows!, f32, rows, "moment rows");
            colM = RawTensor.DevicePointer(state.MomentCols!, f32, cols, "moment cols");
            signs = RawTensor.DevicePointer(state.MomentSigns!, ScalarType.Byte, (n + 7) / 8, "moment signs");
        }
        var device = Ordinal(gradient);
        SameDevice(device, target, targetName);
        SameDevice(device, state.VarianceRows, "variance rows");
        SameDevice(device, state.VarianceCols, "variance cols");
        SameDevice(device, state.MomentRows, "moment rows");
        SameDevice(device, state.MomentCols, "moment cols");
        SameDevice(device, state.MomentSigns, "moment signs");
        Require();
        if (n == 0) return;

        var plan = new SmmfPlan(rows, cols, state.HasMomentum);
        // Scratch from libtorch's caching allocator on the tensors' device. Disposing it right after the
        // launches are enqueued (before they run) is safe: the allocator does not return the block to the
        // driver, it keeps it cached for the stream it was allocated on (the current stream, which in
        // TorchSharp 0.107 is the default stream, the one the launches use), and hands it out again only to
        // later allocations whose work is enqueued on that stream after these launches, so stream order makes
        // that work wait for them; emptying the cache frees with cudaFree, which waits for the device. This is
        // the same contract libtorch's own ops rely on for their temporaries.
        using var scratch = empty(plan.ScratchDoubles, ScalarType.Float64, gradient.device);
        var work = RawTensor.DevicePointer(scratch, ScalarType.Float64, plan.ScratchDoubles, "scratch");
        KernelLaunches.SmmfStep(device, plan, g, t, rowM, colM, signs, rowV, colV, work, updateWeights, scalars);
        GC.KeepAlive(gradient); GC.KeepAlive(target); GC.KeepAlive(state.VarianceRows); GC.KeepAlive(state.VarianceCols);
        GC.KeepAlive(state.MomentRows); GC.KeepAlive(state.MomentCols); GC.KeepAlive(state.MomentSigns);
    }

    /// <summary>Throws when <paramref name="tensor"/> is on another CUDA device than ordinal <paramref name="device"/> (the gradient's).</summary>
    private static void SameDevice(int device, Tensor? tensor, string name)
    {
        if (tensor is not null && Ordinal(tensor) != device)
            throw new ArgumentException($"{name} is on {tensor.device} but gradient is on cuda:{device}; the CUDA kernel needs every tensor on one device.", name);
    }

    /// <inheritdoc />
    public Tensor L1Norms(Tensor matrix, L1Axis axis)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        Require();
        if (matrix.dim() != 2) throw new ArgumentException($"matrix must be 2-D (got {matrix.dim()} dims).", nameof(matrix));
        var dtype = matrix.dtype;
        var (r, c) = (matrix.shape[0], matrix.shape[1]);
        var x = RawTensor.DevicePointer(matrix, dtype, r * c, nameof(matrix));
        var length = axis == L1Axis.Columns ? c : r;
        var result = zeros(length, ScalarType.Float32, matrix.device);
        var output = RawTensor.DevicePointer(result, ScalarType.Float32, length, "result");
        var bf = dtype == ScalarType.BFloat16;
        if (axis == L1Axis.Columns) KernelLaunches.ColReduce(Ordinal(matrix), x, output, 1, r, c, 0, bf, 0, 0, 0);
        else KernelLaunches.RowReduce(Ordinal(matrix), x, output, r, c, 0, bf, 0, 0, 0);
        GC.KeepAlive(matrix);
        return result;
    }
}
