using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// A subspace whose projection multiplies the gradient by basis matrices (R = Pᵀ·G, G·Q or Pᵀ·G·Q), so that the
/// projection of a product G = aᵀ·b can be formed from its factors: a Linear layer's weight gradient is δᵀ·X (δ: B×m,
/// X: B×n, B rows of tokens), and Pᵀ(δᵀX) = (δP)ᵀX costs 2·B·r·(m + n) flops instead of 2·B·m·n + 2·r·m·n. The
/// per-layer mode uses it for the micro-batches it accumulates in the projected space (PerLayer/ProjectedLinear).
/// </summary>
internal interface IProductProjection
{
    /// <summary>The basis dtype: the factors must have it (the projection of G would need it too).</summary>
    ScalarType BasisType { get; }

    /// <summary>
    /// True when <see cref="ProjectProduct"/> over <paramref name="tokens"/> rows costs fewer flops than forming the
    /// product and projecting it (always for a rank well below m·n/(m + n)).
    /// </summary>
    bool ProductIsCheaper(long tokens);

    /// <summary><see cref="ISubspace.Project"/>(aᵀ·b) without forming the m×n product.</summary>
    /// <param name="a">δ, B×m (m: the matrix's rows).</param>
    /// <param name="b">X, B×n (n: the matrix's columns).</param>
    Tensor ProjectProduct(Tensor a, Tensor b);

    /// <summary>The flops of both ways for a one-sided basis of rank r on an m×n matrix over B rows.</summary>
    internal static bool OneSidedProductIsCheaper(MatrixShape matrix, long rank, long tokens) =>
        (double)tokens * rank * (matrix.Rows + matrix.Cols) < (double)tokens * matrix.Rows * matrix.Cols + (double)rank * matrix.Rows * matrix.Cols;
}
