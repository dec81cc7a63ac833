using TorchSharp;

namespace LowRankOptim.Kernels;

/// <summary>One registered kernel: the implementation of <paramref name="Operation"/> for state of <paramref name="Storage"/> on its backend.</summary>
/// <param name="Operation">The operation; <paramref name="Kernel"/> implements its interface.</param>
/// <param name="Storage">The storage (layout and dtype) it runs on.</param>
/// <param name="Kernel">The implementation; its <see cref="IKernel.Backend"/> is the third part of the key.</param>
/// <param name="Automatic">
/// Whether automatic selection (no backend named) may pick it; when false, only an explicit choice of its
/// backend does (the CUDA ℓ1 norms: the DCT projector's scores stay the reference's on the GPU under Auto).
/// </param>
public sealed record KernelRegistration(KernelOperation Operation, KernelStorage Storage, IKernel Kernel, bool Automatic)
{
    /// <summary>The kernel's backend.</summary>
    public KernelBackend Backend => Kernel.Backend;
}

/// <summary>
/// The kernels by (operation, backend, storage). The reference (TorchSharp ops) is registered for every operation
/// and every dense dtype; the CPU SIMD and CUDA backends register only what they implement. Selection
/// (<see cref="KernelSelection"/>) reads it; rules never name a backend's classes. Kernels can be registered from
/// outside this assembly (a quantized-state kernel, another GPU kernel, a test double): a registration replaces
/// the one with the same key until it is disposed.
/// </summary>
public static class KernelRegistry
{
    private sealed record Snapshot(int Version, KernelRegistration[] Entries, Dictionary<(KernelOperation, KernelBackend, KernelStorage), KernelRegistration> Index);

    private static readonly object Gate = new();
    private static volatile Snapshot _current = Build();

    /// <summary>Every registration, in registration order (the built-in ones first).</summary>
    public static IReadOnlyList<KernelRegistration> Registrations => Array.AsReadOnly(_current.Entries);

    /// <summary>Changes with every registration and disposal, so cached choices (<see cref="KernelChoice{TKernel}"/>) select again.</summary>
    internal static int Version => _current.Version;

    /// <summary>
    /// Registers <paramref name="kernel"/> as the <paramref name="operation"/> kernel of its backend for state of
    /// <paramref name="storage"/>, replacing the registration with the same key until the returned handle is disposed.
    /// </summary>
    /// <param name="operation">The operation; <paramref name="kernel"/> must implement its interface (<see cref="IAdamDirectionKernel"/>, ...).</param>
    /// <param name="kernel">The implementation.</param>
    /// <param name="storage">The storage (layout and dtype) it runs on.</param>
    /// <param name="automatic">Whether automatic selection may pick it (else only an explicit choice of its backend does).</param>
    /// <returns>A handle whose disposal removes the registration and restores the one it replaced.</returns>
    /// <exception cref="ArgumentException"><paramref name="kernel"/> does not implement <paramref name="operation"/>'s interface.</exception>
    public static IDisposable Register(KernelOperation operation, IKernel kernel, KernelStorage storage, bool automatic = true)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        var contract = KernelOperations.InterfaceOf(operation);
        if (!contract.IsInstanceOfType(kernel))
            throw new ArgumentException($"{kernel.GetType().Name} does not implement {contract.Name}, the interface of {operation}.", nameof(kernel));
        var registration = new KernelRegistration(operation, storage, kernel, automatic);
        KernelRegistration? replaced;
        lock (Gate)
        {
            replaced = _current.Index.GetValueOrDefault(Key(registration));
            _current = With(_current, registration, replaced);
        }
        return new Handle(registration, replaced);
    }

    /// <summary>The kernel of <paramref name="backend"/> for <paramref name="operation"/> on <paramref name="storage"/>, or null when none is registered.</summary>
    /// <param name="operation">The operation.</param>
    /// <param name="backend">The backend.</param>
    /// <param name="storage">The storage.</param>
    public static IKernel? Find(KernelOperation operation, KernelBackend backend, KernelStorage storage) =>
        Lookup(operation, backend, storage)?.Kernel;

    /// <summary>The registration with this key, or null.</summary>
    internal static KernelRegistration? Lookup(KernelOperation operation, KernelBackend backend, KernelStorage storage) =>
        _current.Index.GetValueOrDefault((operation, backend, storage));

    /// <summary>The storages <paramref name="backend"/> has registered for <paramref name="operation"/>, in registration order.</summary>
    internal static IEnumerable<KernelStorage> StoragesOf(KernelOperation operation, KernelBackend backend) =>
        _current.Entries.Where(r => r.Operation == operation && r.Backend == backend).Select(r => r.Storage).Distinct();

    private static (KernelOperation, KernelBackend, KernelStorage) Key(KernelRegistration r) => (r.Operation, r.Backend, r.Storage);

    /// <summary><paramref name="snapshot"/> with <paramref name="added"/> in place of <paramref name="removed"/> (either may be null).</summary>
    private static Snapshot With(Snapshot snapshot, KernelRegistration? added, KernelRegistration? removed)
    {
        var entries = snapshot.Entries.Where(r => !ReferenceEquals(r, removed)).ToList();
        if (added is not null) entries.Add(added);
        var index = new Dictionary<(KernelOperation, KernelBackend, KernelStorage), KernelRegistration>(snapshot.Index);
        if (removed is not null) index.Remove(Key(removed));
        if (added is not null) index[Key(added)] = added;
        return new Snapshot(snapshot.Version + 1, [.. entries], index);
    }

    private sealed class Handle(KernelRegistration registration, KernelRegistration? replaced) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            lock (Gate)
            {
                // Only while it is still the one in force: a later registration with the same key keeps its place.
                if (_current.Index.GetValueOrDefault(Key(registration)) == registration)
                    _current = With(_current, replaced, registration);
            }
        }
    }

    /// <summary>The built-in registrations: the reference for everything dense, then what the CPU and CUDA backends implement.</summary>
    private static Snapshot Build()
    {
        var entries = new List<KernelRegistration>();
        var operations = Enum.GetValues<KernelOperation>();
        foreach (var operation in operations.Where(o => o != KernelOperation.QuantizedAdam))
            foreach (var dtype in Enum.GetValues<torch.ScalarType>().Distinct())
                entries.Add(new(operation, KernelStorage.Dense(dtype), TorchKernels.Instance, Automatic: true));
        // Adam on block-wise moments, for the floating working dtypes (the reference dequantizes into the gradient's).
        torch.ScalarType[] working = [torch.ScalarType.Float32, torch.ScalarType.BFloat16, torch.ScalarType.Float64];
        foreach (var bits in new[] { 8, 4 })
            foreach (var dtype in working)
                entries.Add(new(KernelOperation.QuantizedAdam, KernelStorage.Blockwise(bits, dtype), TorchKernels.Instance, Automatic: true));
        KernelStorage[] floats = [KernelStorage.Dense(torch.ScalarType.Float32), KernelStorage.Dense(torch.ScalarType.BFloat16)];
        foreach (IKernel backend in new IKernel[] { CpuKernels.Instance, CudaKernels.Instance })
            foreach (var operation in operations.Where(o => o is not (KernelOperation.QuantizedAdam or KernelOperation.WeightUpdate)))
                // SMMF keeps float32 state and computes in float32 (also for bf16 parameters): float32 only.
                foreach (var storage in operation == KernelOperation.SmmfStep ? floats[..1] : floats)
                    // Under Auto the DCT projector's ℓ1 scores stay the reference's (a GEMV) on the GPU.
                    entries.Add(new(operation, storage, backend, Automatic: !(backend.Backend == KernelBackend.Cuda && operation == KernelOperation.L1Norms)));
        // Adam on block-wise moments: the fused CPU kernel, and quantized_adam.cu on the GPU; float32 and bfloat16 gradients, both widths.
        foreach (var bits in new[] { 8, 4 })
            foreach (var storage in floats)
            {
                entries.Add(new(KernelOperation.QuantizedAdam, KernelStorage.Blockwise(bits, storage.DType), QuantizedAdamCpuKernel.Instance, Automatic: true));
                entries.Add(new(KernelOperation.QuantizedAdam, KernelStorage.Blockwise(bits, storage.DType), CudaKernels.Instance, Automatic: true));
            }
        // The rounded weight update of bfloat16 parameters: the fused CPU kernel; on CUDA the reference (no kernel yet).
        entries.Add(new(KernelOperation.WeightUpdate, KernelStorage.Dense(torch.ScalarType.BFloat16), WeightUpdateCpuKernel.Instance, Automatic: true));
        return new Snapshot(0, [.. entries], entries.ToDictionary(Key));
    }
}
