using TorchSharp;

namespace LowRankOptim.Kernels;

/// <summary>
/// The compressed state of one SMMF tensor viewed as a <see cref="Rows"/>×<see cref="Cols"/> matrix: the
/// rank-1 factors of |M| and of V (float32 row sums, float32 column sums divided by their total) and the
/// sign of M packed 1 bit per element (uint8, ⌈N/8⌉ bytes, element e at bit e mod 8 of byte ⌊e/8⌋).
/// The first-moment tensors are all null when the optimizer keeps no first moment (β1 = None).
/// The kernels update every tensor in place.
/// </summary>
/// <param name="Rows">n̂.</param>
/// <param name="Cols">m̂.</param>
/// <param name="MomentRows">ρ_M, n̂ floats, or null.</param>
/// <param name="MomentCols">γ_M, m̂ floats, or null.</param>
/// <param name="MomentSigns">The packed signs M &gt; 0, or null.</param>
/// <param name="VarianceRows">ρ_V, n̂ floats.</param>
/// <param name="VarianceCols">γ_V, m̂ floats.</param>
public readonly record struct SmmfFactors(
    long Rows, long Cols, torch.Tensor? MomentRows, torch.Tensor? MomentCols, torch.Tensor? MomentSigns,
    torch.Tensor VarianceRows, torch.Tensor VarianceCols)
{
    /// <summary>True when the first-moment factors and signs are kept.</summary>
    public bool HasMomentum => MomentRows is not null;
}
