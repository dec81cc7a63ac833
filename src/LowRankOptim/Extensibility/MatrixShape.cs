namespace LowRankOptim;

/// <summary>The rows × columns of a parameter viewed as a matrix (PyTorch layout: out × in).</summary>
/// <param name="Rows">m, the number of rows.</param>
/// <param name="Cols">n, the number of columns.</param>
public readonly record struct MatrixShape(long Rows, long Cols)
{
    /// <summary>min(m, n).</summary>
    public long Min => Math.Min(Rows, Cols);

    /// <summary>max(m, n).</summary>
    public long Max => Math.Max(Rows, Cols);

    /// <summary>The shape as a TorchSharp size array.</summary>
    public long[] ToArray() => [Rows, Cols];

    /// <inheritdoc />
    public override string ToString() => $"{Rows}×{Cols}";
}
