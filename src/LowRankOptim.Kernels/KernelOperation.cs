namespace LowRankOptim.Kernels;

/// <summary>The operations the kernels implement, one per kernel interface; the first part of a registration's key.</summary>
public enum KernelOperation
{
    /// <summary><see cref="IAdamDirectionKernel"/>.</summary>
    AdamDirection,
    /// <summary><see cref="IAdamUpdateKernel"/>.</summary>
    AdamUpdate,
    /// <summary><see cref="IAdafactorStatisticsKernel"/>.</summary>
    AdafactorStatistics,
    /// <summary><see cref="ISmmfStepKernel"/>.</summary>
    SmmfStep,
    /// <summary><see cref="IL1NormsKernel"/>.</summary>
    L1Norms,
    /// <summary><see cref="IQuantizedAdamKernel"/>.</summary>
    QuantizedAdam,
    /// <summary><see cref="IWeightUpdateKernel"/>.</summary>
    WeightUpdate,
}

/// <summary>The mapping between operations and their kernel interfaces.</summary>
internal static class KernelOperations
{
    /// <summary>The interface of <paramref name="operation"/>.</summary>
    public static Type InterfaceOf(KernelOperation operation) => operation switch
    {
        KernelOperation.AdamDirection => typeof(IAdamDirectionKernel),
        KernelOperation.AdamUpdate => typeof(IAdamUpdateKernel),
        KernelOperation.AdafactorStatistics => typeof(IAdafactorStatisticsKernel),
        KernelOperation.SmmfStep => typeof(ISmmfStepKernel),
        KernelOperation.L1Norms => typeof(IL1NormsKernel),
        KernelOperation.QuantizedAdam => typeof(IQuantizedAdamKernel),
        KernelOperation.WeightUpdate => typeof(IWeightUpdateKernel),
        _ => throw new ArgumentOutOfRangeException(nameof(operation), operation, "not a kernel operation."),
    };

    /// <summary>The operation whose interface is <typeparamref name="TKernel"/>.</summary>
    /// <exception cref="ArgumentException"><typeparamref name="TKernel"/> is not one of the operation interfaces.</exception>
    public static KernelOperation Of<TKernel>() where TKernel : class, IKernel => Cache<TKernel>.Operation
        ?? throw new ArgumentException($"{typeof(TKernel).Name} is not a kernel operation interface; use one of " +
            $"{string.Join(", ", Enum.GetValues<KernelOperation>().Select(o => InterfaceOf(o).Name))}.", nameof(TKernel));

    private static class Cache<TKernel>
    {
        public static readonly KernelOperation? Operation =
            Enum.GetValues<KernelOperation>().Cast<KernelOperation?>().FirstOrDefault(o => InterfaceOf(o!.Value) == typeof(TKernel));
    }
}

/// <summary>Which ℓ1 norms <see cref="IL1NormsKernel.L1Norms"/> computes.</summary>
public enum L1Axis
{
    /// <summary>One norm per column: Σ_i |x_ij| (the DCT projector's column scores).</summary>
    Columns,
    /// <summary>One norm per row: Σ_j |x_ij|.</summary>
    Rows,
}

/// <summary>The scalars of one Adafactor statistics update.</summary>
/// <param name="Beta2">β2,k, the decay of this step.</param>
/// <param name="Eps1">ε1, added to g² before the means.</param>
public readonly record struct AdafactorScalars(double Beta2, double Eps1);
