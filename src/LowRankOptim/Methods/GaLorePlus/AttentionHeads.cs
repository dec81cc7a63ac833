using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>Which axis of an attention weight is grouped by head (PyTorch layout, out × in).</summary>
public enum HeadAxis
{
    /// <summary>Rows: Q, K and V projections, W ∈ R^{(h·d_h)×d}; head i owns rows i·d_h … (i+1)·d_h − 1.</summary>
    Rows,
    /// <summary>Columns: the output projection O, W ∈ R^{d×(h·d_h)}; head i owns columns i·d_h … (i+1)·d_h − 1.</summary>
    Columns,
}

/// <summary>
/// Says a weight is an attention projection with <see cref="Heads"/> heads along <see cref="Axis"/>; the head
/// size d_h is that axis's length divided by the head count (grouped-query attention: give K and V their own,
/// smaller, head count).
/// </summary>
/// <param name="Heads">h ≥ 1; must divide the length of <paramref name="Axis"/>.</param>
/// <param name="Axis">Rows for Q/K/V, Columns for O.</param>
public sealed record AttentionHeads(int Heads, HeadAxis Axis)
{
    /// <summary>Q, K or V with <paramref name="heads"/> heads: rows grouped by head.</summary>
    /// <param name="heads">h ≥ 1, the number of heads.</param>
    public static AttentionHeads QueryKeyValue(int heads) => new(heads, HeadAxis.Rows);

    /// <summary>The output projection with <paramref name="heads"/> heads: columns grouped by head.</summary>
    /// <param name="heads">h ≥ 1, the number of heads.</param>
    public static AttentionHeads Output(int heads) => new(heads, HeadAxis.Columns);
}

/// <summary>How the basis estimated from one head's block is shared by all heads (spec §2.3).</summary>
public enum CrossHeadReading
{
    /// <summary>
    /// (a), the default: the basis lives on the long side of each block, the model dimension d that all heads
    /// share (the input x of Q/K/V, the residual-stream output of O). Q/K/V: P = V_rᵀ (r×d) from the block's
    /// right singular vectors, R = G·Pᵀ ((h·d_h)×r); O: P = U_r (d×r) from the block's left singular vectors,
    /// R = Pᵀ·G (r×(h·d_h)). One rank-r projection of the whole matrix; r ≤ d_h.
    /// </summary>
    SharedLongSide,
    /// <summary>
    /// (b): the basis lives on the head side d_h and projects each head block separately. Q/K/V: P = U_r (d_h×r),
    /// R^i = Pᵀ·G^i stacked to (h·r)×d; O: P = V_rᵀ (r×d_h), R^i = G^i·Pᵀ side by side, d×(h·r). Effective rank h·r.
    /// </summary>
    PerHeadShortSide,
}
