using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Kernels;

/// <summary>
/// SMMF's rank-1 non-negative factorization of an n̂×m̂ matrix X ≥ 0, in TorchSharp ops (any device):
/// compression keeps the row sums ρ (n̂) and the column sums γ (m̂) divided by their total, so that the
/// decompression ρ γᵀ has entries (row sum i)·(column sum j)/(total). Both vectors are float32.
/// </summary>
internal static class RankOneFactorization
{
    /// <summary>
    /// Writes the row sums of <paramref name="x"/> into <paramref name="rows"/> and its normalized column
    /// sums into <paramref name="cols"/> (raw sums, all zero, when the total is 0). The sums are
    /// accumulated in float64 and rounded to float32 once, as the fused CPU kernel does.
    /// </summary>
    public static void Compress(Tensor x, Tensor rows, Tensor cols)
    {
        using var scope = NewDisposeScope();
        var rowSums = x.sum(1L, type: ScalarType.Float64);
        var colSums = x.sum(0L, type: ScalarType.Float64);
        var total = colSums.sum();
        // X ≥ 0, so a zero total means X = 0: divide by 1 instead (no division, as the reference).
        using var zero = 0.ToScalar();
        using var one = 1.ToScalar();
        colSums.div_(total.masked_fill(total.eq(zero), one));
        rows.copy_(rowSums);
        cols.copy_(colSums);
    }

    /// <summary>The n̂×m̂ matrix ρ γᵀ as a new tensor of <paramref name="dtype"/>.</summary>
    public static Tensor Decompress(Tensor rows, Tensor cols, ScalarType dtype)
    {
        var product = outer(rows, cols);
        if (product.dtype == dtype) return product;
        using (product) return product.to(dtype);
    }
}
