namespace LowRankOptim;

/// <summary>GaLore's projection types (galore_torch's <c>proj_type</c>).</summary>
public enum ProjectionType
{
    /// <summary>Project the smaller dimension: right (P = V_rᵀ) when m ≥ n, else left (P = U_r). The default.</summary>
    Std,
    /// <summary>The opposite choice of <see cref="Std"/>: left when m ≥ n, else right.</summary>
    ReverseStd,
    /// <summary>Always left: R = PᵀG with P = U_r (m×r).</summary>
    Left,
    /// <summary>Always right: R = GPᵀ with P = V_rᵀ (r×n).</summary>
    Right,
    /// <summary>Both sides: R = U_rᵀ G V_r (r×r).</summary>
    Full,
}

/// <summary>Which side(s) of the gradient matrix a subspace projects; stored explicitly in the state.</summary>
public enum ProjectionSide
{
    /// <summary>R = PᵀG, P is m×r; projected shape r×n.</summary>
    Left = 1,
    /// <summary>R = GPᵀ, P is r×n; projected shape m×r.</summary>
    Right = 2,
    /// <summary>R = U_rᵀ G V_r; projected shape r×r.</summary>
    Both = 3,
}

/// <summary>Which parameters a matrix projection applies to.</summary>
public enum TensorsProjected
{
    /// <summary>Only 2-D parameters; 0-D, 1-D and N-D parameters are trained in the full space.</summary>
    MatricesOnly,
    /// <summary>2-D parameters, and N-D parameters (conv kernels) viewed as shape[0] × (product of the rest).</summary>
    MatricesAndFlattenedKernels,
}
