namespace LowRankOptim.Kernels;

/// <summary>The operations of <see cref="IOptimizerKernels"/>, for support queries and selection.</summary>
public enum KernelOperation
{
    /// <summary><see cref="IOptimizerKernels.AdamDirection"/>.</summary>
    AdamDirection,
    /// <summary><see cref="IOptimizerKernels.AdamUpdate"/>.</summary>
    AdamUpdate,
    /// <summary><see cref="IOptimizerKernels.AdafactorStatistics"/>.</summary>
    AdafactorStatistics,
    /// <summary><see cref="IOptimizerKernels.SmmfStep"/>.</summary>
    SmmfStep,
    /// <summary><see cref="IOptimizerKernels.L1Norms"/>.</summary>
    L1Norms,
}

/// <summary>Which ℓ1 norms <see cref="IOptimizerKernels.L1Norms"/> computes.</summary>
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
