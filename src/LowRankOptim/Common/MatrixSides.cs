namespace LowRankOptim;

/// <summary>Shape rules shared by the matrix projectors.</summary>
internal static class MatrixSides
{
    /// <summary>The matrix view of a tensor of <paramref name="shape"/>, or null when it stays in full space.</summary>
    public static MatrixShape? ViewOf(long[] shape, TensorsProjected which) => shape.Length switch
    {
        2 => new MatrixShape(shape[0], shape[1]),
        > 2 when which == TensorsProjected.MatricesAndFlattenedKernels =>
            new MatrixShape(shape[0], shape.Skip(1).Aggregate(1L, (a, b) => a * b)),
        _ => null,
    };

    /// <summary>The side a projection type uses on an m×n matrix (galore_torch's rules, with the side stored).</summary>
    public static ProjectionSide SideOf(ProjectionType type, MatrixShape m) => type switch
    {
        ProjectionType.Std => m.Rows >= m.Cols ? ProjectionSide.Right : ProjectionSide.Left,
        ProjectionType.ReverseStd => m.Rows >= m.Cols ? ProjectionSide.Left : ProjectionSide.Right,
        ProjectionType.Left => ProjectionSide.Left,
        ProjectionType.Right => ProjectionSide.Right,
        ProjectionType.Full => ProjectionSide.Both,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown projection type"),
    };

    /// <summary>Elements of the bases a <paramref name="side"/> keeps: U_r (m×r) and/or V_rᵀ (r×n).</summary>
    public static long BasisElements(ProjectionSide side, MatrixShape m, long r) => side switch
    {
        ProjectionSide.Left => m.Rows * r,
        ProjectionSide.Right => r * m.Cols,
        _ => (m.Rows + m.Cols) * r,
    };

    /// <summary>Projected shape of a singular-vector basis projection of <paramref name="type"/> and requested rank (clamped).</summary>
    public static long[] BasisProjectedShape(ProjectionType type, MatrixShape m, int rank) =>
        ProjectedShape(SideOf(type, m), m, Math.Min(rank, m.Min));

    /// <summary>Bytes of the bases such a projection keeps in <paramref name="dtype"/>.</summary>
    public static long BasisBytes(ProjectionType type, MatrixShape m, int rank, TorchSharp.torch.ScalarType dtype) =>
        BasisElements(SideOf(type, m), m, Math.Min(rank, m.Min)) * DTypes.ElementSize(dtype);

    /// <summary>The projected shape for <paramref name="side"/> and effective rank <paramref name="r"/>.</summary>
    public static long[] ProjectedShape(ProjectionSide side, MatrixShape m, long r) => side switch
    {
        ProjectionSide.Left => [r, m.Cols],
        ProjectionSide.Right => [m.Rows, r],
        _ => [r, r],
    };
}
