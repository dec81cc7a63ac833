using TorchSharp;

namespace LowRankOptim.Kernels;

/// <summary>
/// Picks the kernel of one operation for one parameter's state: every rule of selection is here. A backend is
/// named explicitly or not at all (<see langword="null"/>, the library's <c>KernelPreference.Auto</c>).
/// <list type="bullet">
/// <item>Explicit: the backend's kernel registered for the operation and storage, when the state is on the
/// backend's device type, the kernel can run in this process, the state is within its size limit and, for block-wise
/// state, the kernel takes its format (<see cref="IQuantizedAdamKernel.FormatProblem"/>: the CUDA kernel's blocks are
/// at most 256 entries); otherwise
/// an <see cref="ArgumentException"/> for the option <c>kernel</c> that names the value, what it needs, what the
/// state is, and what to use instead.</item>
/// <item>Automatic: the first fused backend for the device's type (CPU: <see cref="KernelBackend.Cpu"/>, CUDA:
/// <see cref="KernelBackend.Cuda"/>) whose kernel is registered for automatic use and passes the same checks,
/// else the reference, silently. <see cref="EnvironmentVariable"/> can name a backend instead.</item>
/// </list>
/// Rules call it once when they are created (through <see cref="KernelChoice{TKernel}"/>, which caches it and
/// applies the per-call layout check), so an explicit choice that cannot be honoured fails when the optimizer is built.
/// </summary>
public static class KernelSelection
{
    /// <summary>
    /// The environment variable that overrides automatic selection: auto, reference, cpu or cuda (a named backend
    /// then applies as if chosen explicitly; a backend named in code wins over it).
    /// </summary>
    public const string EnvironmentVariable = "LOWRANKOPTIM_KERNELS";

    /// <summary>
    /// The backend in force: <paramref name="backend"/> when one is named, else the one
    /// <see cref="EnvironmentVariable"/> names, else null (automatic).
    /// </summary>
    /// <param name="backend">The backend named in code, or null.</param>
    /// <exception cref="ArgumentException">The environment variable holds something else than auto, reference, cpu or cuda.</exception>
    public static KernelBackend? Effective(KernelBackend? backend)
    {
        if (backend is not null) return backend;
        var value = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(value)) return null;
        return value.Trim().ToLowerInvariant() switch
        {
            "auto" => null,
            "reference" => KernelBackend.Reference,
            "cpu" => KernelBackend.Cpu,
            "cuda" => KernelBackend.Cuda,
            _ => throw new ArgumentException($"{EnvironmentVariable}='{value}' is not one of auto, reference, cpu, cuda."),
        };
    }

    /// <summary>
    /// The <typeparamref name="TKernel"/> kernel for state of <paramref name="storage"/> with
    /// <paramref name="count"/> elements on <paramref name="device"/> under <paramref name="backend"/> (after
    /// <see cref="Effective"/>; null: automatic).
    /// </summary>
    /// <typeparam name="TKernel">The operation's interface, e.g. <see cref="IAdamDirectionKernel"/>.</typeparam>
    /// <param name="backend">The backend named by the user, or null for automatic selection.</param>
    /// <param name="device">The state's device.</param>
    /// <param name="storage">The state's storage.</param>
    /// <param name="count">The elements of the largest tensor the kernel will take (the gradient's, for the size limits).</param>
    /// <param name="subject">What the state is, for the message ("the parameter of shape [6, 4]"); "the state" when null.</param>
    /// <param name="format">
    /// The block format of block-wise state (its width and block size, which <paramref name="storage"/> does not carry), or
    /// null: a kernel that cannot take it (<see cref="IQuantizedAdamKernel.FormatProblem"/>) is passed over under automatic
    /// selection and refused under an explicit one.
    /// </param>
    /// <exception cref="ArgumentException">An explicit backend cannot be honoured; <see cref="ArgumentException.ParamName"/> is "kernel".</exception>
    public static TKernel Select<TKernel>(KernelBackend? backend, torch.Device device, KernelStorage storage, long count, string? subject = null,
        BlockFormat? format = null)
        where TKernel : class, IKernel
    {
        ArgumentNullException.ThrowIfNull(device);
        var operation = KernelOperations.Of<TKernel>();
        if (Effective(backend) is KernelBackend named)
        {
            if (Problem(operation, named, device, storage, count, subject, format) is { } problem)
                throw new ArgumentException($"kernel = {named} {problem}; use Auto or {KernelBackend.Reference}.", "kernel");
            return (TKernel)KernelRegistry.Lookup(operation, named, storage)!.Kernel;
        }
        foreach (var candidate in Enum.GetValues<KernelBackend>())
        {
            if (candidate == KernelBackend.Reference || DeviceOf(candidate) != device.type) continue;
            if (KernelRegistry.Lookup(operation, candidate, storage) is { Automatic: true } registration &&
                Problem(operation, candidate, device, storage, count, subject, format) is null)
                return (TKernel)registration.Kernel;
        }
        return Reference<TKernel>(storage);
    }

    /// <summary>The reference kernel of <typeparamref name="TKernel"/>'s operation for <paramref name="storage"/> (any device, dtype and layout).</summary>
    /// <typeparam name="TKernel">The operation's interface.</typeparam>
    /// <param name="storage">The state's storage.</param>
    /// <exception cref="InvalidOperationException">No reference is registered for <paramref name="storage"/>.</exception>
    public static TKernel Reference<TKernel>(KernelStorage storage) where TKernel : class, IKernel
    {
        var operation = KernelOperations.Of<TKernel>();
        return KernelRegistry.Lookup(operation, KernelBackend.Reference, storage)?.Kernel as TKernel
            ?? throw new InvalidOperationException($"no {KernelBackend.Reference} {operation} kernel is registered for {storage} storage.");
    }

    /// <summary>The device type a backend runs on, or null (the reference: any).</summary>
    private static DeviceType? DeviceOf(KernelBackend backend) => backend switch
    {
        KernelBackend.Cpu => DeviceType.CPU,
        KernelBackend.Cuda => DeviceType.CUDA,
        _ => null,
    };

    private static string PlacementOf(KernelBackend backend) => backend switch
    {
        KernelBackend.Cpu => "on the CPU",
        KernelBackend.Cuda => "on a CUDA device",
        _ => "on any device",
    };

    /// <summary>
    /// Null when <paramref name="backend"/> runs <paramref name="operation"/> here, else the rest of the message
    /// after "kernel = {backend} ": what it needs, and what the state is.
    /// </summary>
    private static string? Problem(KernelOperation operation, KernelBackend backend, torch.Device device, KernelStorage storage, long count, string? subject,
        BlockFormat? format)
    {
        var registration = KernelRegistry.Lookup(operation, backend, storage);
        var placed = DeviceOf(backend) is not DeviceType type || device.type == type;
        var reason = placed ? registration?.Kernel.UnavailableReason : null;
        var max = placed && registration is not null ? registration.Kernel.MaxElements(storage) : long.MaxValue;
        var runs = placed && registration is not null && reason is null && count <= max;
        var unfit = runs && format is not null && registration!.Kernel is IQuantizedAdamKernel q ? q.FormatProblem(format) : null;
        if (runs && unfit is null) return null;

        subject ??= "the state";
        if (runs) return $"cannot take {unfit}, but {subject} is stored in {format!.Bits}-bit blocks of {format.BlockSize} entries (block_size)";
        var storages = KernelRegistry.StoragesOf(operation, backend).Select(s => s.Describe()).ToList();
        if (storages.Count == 0) return $"has no {operation} kernel";
        var needs = $"needs {Alternatives(storages)} state {PlacementOf(backend)}";
        if (!placed || registration is null) return $"{needs} to run {operation}, but {subject} is {storage} on {device}";
        if (reason is not null) return $"{needs} to run {operation}, but the {backend} kernels cannot run in this process: {reason.TrimEnd('.')}";
        return $"{needs}, at most {max} elements of {storage}, to run {operation}, but {subject} has {count} elements";
    }

    private static string Alternatives(IReadOnlyList<string> items) =>
        items.Count == 1 ? items[0] : $"{string.Join(", ", items.Take(items.Count - 1))} or {items[^1]}";
}

/// <summary>
/// A rule's cached kernel choice for one operation: selects (<see cref="KernelSelection.Select{TKernel}"/>) again
/// only when the backend, device, storage, element count or the registry changes, and falls back per call to the
/// reference for tensors the chosen kernel cannot take under automatic selection.
/// </summary>
/// <typeparam name="TKernel">The operation's interface, e.g. <see cref="IAdamDirectionKernel"/>.</typeparam>
/// <param name="subject">What the state is, for the message of an explicit choice that cannot be honoured.</param>
/// <param name="format">The block format of block-wise state, which a kernel must take (see <see cref="KernelSelection.Select{TKernel}"/>); null for dense state.</param>
public sealed class KernelChoice<TKernel>(string? subject = null, BlockFormat? format = null) where TKernel : class, IKernel
{
    private (KernelBackend? Backend, string Device, KernelStorage Storage, long Count, int Registry)? _key;
    private TKernel? _kernel;
    private TKernel? _reference;

    /// <summary>Whether the current choice was named (in code or by <see cref="KernelSelection.EnvironmentVariable"/>) rather than automatic.</summary>
    public bool IsExplicit { get; private set; }

    /// <summary>The reference kernel for the storage of the current choice (after a first <see cref="For"/>).</summary>
    /// <exception cref="InvalidOperationException">Nothing was selected yet.</exception>
    public TKernel Reference => _reference ?? throw new InvalidOperationException("no kernel was selected yet.");

    /// <summary>The kernel for state of <paramref name="storage"/> with <paramref name="count"/> elements on <paramref name="device"/> (cached).</summary>
    /// <param name="backend">The backend named by the user, or null for automatic selection.</param>
    /// <param name="device">The state's device.</param>
    /// <param name="storage">The state's storage.</param>
    /// <param name="count">The elements of the largest tensor the kernel will take.</param>
    /// <exception cref="ArgumentException">An explicit backend cannot be honoured (see <see cref="KernelSelection.Select{TKernel}"/>).</exception>
    public TKernel For(KernelBackend? backend, torch.Device device, KernelStorage storage, long count)
    {
        ArgumentNullException.ThrowIfNull(device);
        var key = (backend, device.ToString(), storage, count, KernelRegistry.Version);
        if (_key != key || _kernel is null)
        {
            _kernel = KernelSelection.Select<TKernel>(backend, device, storage, count, subject, format);
            _reference = KernelSelection.Reference<TKernel>(storage);
            IsExplicit = KernelSelection.Effective(backend) is not null;
            _key = key;
        }
        return _kernel;
    }

    /// <summary>
    /// The kernel for this call: the cached choice when it accepts every tensor's layout; under automatic selection
    /// the reference otherwise; under an explicit choice the cached kernel (which rejects such a tensor with the reason).
    /// </summary>
    /// <param name="backend">The backend named by the user, or null for automatic selection.</param>
    /// <param name="device">The state's device.</param>
    /// <param name="storage">The state's storage.</param>
    /// <param name="count">The elements of the largest tensor the kernel will take.</param>
    /// <param name="tensors">The tensors of this call, whose layouts the kernel must accept.</param>
    public TKernel ForCall(KernelBackend? backend, torch.Device device, KernelStorage storage, long count, params ReadOnlySpan<torch.Tensor?> tensors)
    {
        var kernel = For(backend, device, storage, count);
        return IsExplicit || kernel.Accepts(tensors) ? kernel : Reference;
    }
}
