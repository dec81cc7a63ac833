using TorchSharp;

namespace LowRankOptim.Kernels;

/// <summary>The scalars of one SMMF step (no bias correction; see docs/algorithms/smmf.md).</summary>
/// <param name="Beta1">β1,k = β·g^(k−1), the first-moment decay of this step (ignored without a first moment).</param>
/// <param name="Beta2">β2,k = 1 − k^c, the second-moment decay of this step.</param>
/// <param name="Eps">ε, added to √V.</param>
/// <param name="StepSize">η: a parameter update is W ← W·<paramref name="DecayFactor"/> − η·U (unused for a direction).</param>
/// <param name="DecayFactor">1 − η·λ for decoupled decay before the update, else 1 (unused for a direction).</param>
public readonly record struct SmmfScalars(double Beta1, double Beta2, double Eps, double StepSize = 0, double DecayFactor = 1);

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
