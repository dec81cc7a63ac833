using LowRankOptim.Kernels.Cpu;
using LowRankOptim.Kernels.Cuda.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Kernels.Cuda;

/// <summary>
/// CUDA kernels for TorchSharp CUDA tensors: CUDA C sources embedded in this assembly, compiled at first use
/// with NVRTC into PTX for the device's architecture, loaded with the driver API into the device's primary
/// context and launched on the tensors' device pointers on the default stream (see docs/kernels.md).
/// Adam direction and full-space update (float32, bfloat16), Adafactor statistics and ℓ1 norms (float32, bfloat16); SMMF has no CUDA kernel
/// (<see cref="Supports"/> says so; Auto runs the reference on CUDA). Outputs are allocated as torch tensors
/// (libtorch's caching allocator), never with cuMemAlloc.
/// </summary>
/// <remarks>Not executed on a GPU in this repository's CI (it has none); the kernels are compiled there with NVRTC.</remarks>
public sealed class CudaKernels : IOptimizerKernels
{
    /// <summary>The shared instance.</summary>
    public static CudaKernels Instance { get; } = new();

    private static readonly Lazy<string?> Unavailable = new(FindProblem);

    private CudaKernels() { }

    /// <inheritdoc />
    public string Name => "cuda";

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
    public bool Supports(KernelOperation operation, Device device, ScalarType dtype, out string reason)
    {
        if (device.type != DeviceType.CUDA)
        {
            reason = $"the CUDA kernels need CUDA tensors, but the state is on {device}.";
            return false;
        }
        if (operation == KernelOperation.SmmfStep)
        {
            reason = "there is no CUDA SMMF kernel yet (the reference runs SMMF on CUDA).";
            return false;
        }
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
        {
            reason = $"the CUDA {operation} kernel needs float32 or bfloat16 tensors, not {dtype}.";
            return false;
        }
        reason = UnavailableReason ?? "";
        return UnavailableReason is null;
    }

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
    public void SmmfStep(Tensor gradient, in SmmfFactors state, in SmmfScalars scalars, Tensor target, bool updateWeights) =>
        throw new NotSupportedException("there is no CUDA SMMF kernel yet; select the reference (or Auto) for SMMF on CUDA.");

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
