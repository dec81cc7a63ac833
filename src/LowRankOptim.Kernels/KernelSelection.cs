using TorchSharp;

namespace LowRankOptim.Kernels;

/// <summary>
/// Picks the <see cref="IOptimizerKernels"/> for one parameter's state from the preference, the device and
/// the dtype. Rules call it once when they are created (or moved, or when the preference changes) and keep
/// the result. An explicit choice that cannot be honoured throws <see cref="NotSupportedException"/> with the
/// reason; <see cref="KernelPreference.Auto"/> falls back to the reference silently.
/// </summary>
public static class KernelSelection
{
    /// <summary>The environment variable that overrides <see cref="KernelPreference.Auto"/>: auto, reference, cpu or cuda.</summary>
    public const string EnvironmentVariable = "LOWRANKOPTIM_KERNELS";

    /// <summary>
    /// The preference in force: <paramref name="option"/> when it is explicit, else the value of
    /// <see cref="EnvironmentVariable"/> when it is set, else <see cref="KernelPreference.Auto"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The environment variable holds something else than auto, reference, cpu or cuda.</exception>
    public static KernelPreference Effective(KernelPreference option)
    {
        if (option != KernelPreference.Auto) return option;
        var value = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(value)) return KernelPreference.Auto;
        return value.Trim().ToLowerInvariant() switch
        {
            "auto" => KernelPreference.Auto,
            "reference" => KernelPreference.Reference,
            "cpu" => KernelPreference.Cpu,
            "cuda" => KernelPreference.Cuda,
            _ => throw new ArgumentException($"{EnvironmentVariable}='{value}' is not one of auto, reference, cpu, cuda."),
        };
    }

    /// <summary>
    /// The kernels that run <paramref name="operation"/> for state of <paramref name="dtype"/> on
    /// <paramref name="device"/> under <paramref name="preference"/> (after <see cref="Effective"/>).
    /// </summary>
    /// <exception cref="NotSupportedException">An explicit preference cannot be honoured; the message says why.</exception>
    public static IOptimizerKernels Select(KernelPreference preference, KernelOperation operation, torch.Device device, torch.ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(device);
        var effective = Effective(preference);
        string reason;
        switch (effective)
        {
            case KernelPreference.Reference:
                return TorchKernels.Instance;
            case KernelPreference.Cpu:
                if (CpuKernels.Instance.Supports(operation, device, dtype, out reason)) return CpuKernels.Instance;
                throw new NotSupportedException($"kernel = {KernelPreference.Cpu} cannot run {operation}: {reason} Use {KernelPreference.Auto} or {KernelPreference.Reference}.");
            case KernelPreference.Cuda:
                if (CudaKernels.Instance.Supports(operation, device, dtype, out reason)) return CudaKernels.Instance;
                throw new NotSupportedException($"kernel = {KernelPreference.Cuda} cannot run {operation}: {reason} Use {KernelPreference.Auto} or {KernelPreference.Reference}.");
            case KernelPreference.Auto:
                if (device.type == DeviceType.CPU && CpuKernels.Instance.Supports(operation, device, dtype, out _)) return CpuKernels.Instance;
                if (device.type == DeviceType.CUDA && CudaKernels.Instance.Supports(operation, device, dtype, out _)) return CudaKernels.Instance;
                return TorchKernels.Instance;
            default:
                throw new ArgumentOutOfRangeException(nameof(preference), preference, $"must be one of {string.Join(", ", Enum.GetNames<KernelPreference>())}.");
        }
    }
}

/// <summary>
/// A rule's cached kernel choice for one operation: re-selects only when the preference, device or dtype
/// changes, and falls back per call to the reference for tensors the chosen kernels cannot take under
/// <see cref="KernelPreference.Auto"/>.
/// </summary>
public sealed class KernelChoice
{
    private readonly KernelOperation _operation;
    private (KernelPreference Preference, string Device, torch.ScalarType DType)? _key;
    private IOptimizerKernels _kernels = TorchKernels.Instance;
    private bool _explicit;

    /// <summary>A choice for <paramref name="operation"/>; nothing is selected until <see cref="For"/>.</summary>
    public KernelChoice(KernelOperation operation) => _operation = operation;

    /// <summary>The kernels for state of <paramref name="dtype"/> on <paramref name="device"/> (cached).</summary>
    /// <exception cref="NotSupportedException">An explicit preference cannot be honoured.</exception>
    public IOptimizerKernels For(KernelPreference preference, torch.Device device, torch.ScalarType dtype)
    {
        var key = (preference, device.ToString(), dtype);
        if (_key != key)
        {
            _kernels = KernelSelection.Select(preference, _operation, device, dtype);
            _explicit = KernelSelection.Effective(preference) != KernelPreference.Auto;
            _key = key;
        }
        return _kernels;
    }

    /// <summary>
    /// The kernels for this call: the cached choice when it accepts every tensor's layout; under Auto the
    /// reference otherwise; under an explicit choice the cached kernels (which reject the tensor with the reason).
    /// </summary>
    public IOptimizerKernels ForCall(KernelPreference preference, torch.Device device, torch.ScalarType dtype, params ReadOnlySpan<torch.Tensor?> tensors)
    {
        var kernels = For(preference, device, dtype);
        return _explicit || kernels.Accepts(tensors) ? kernels : TorchKernels.Instance;
    }
}
