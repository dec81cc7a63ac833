namespace LowRankOptim.Kernels;

/// <summary>The scalars of one SMMF step (no bias correction; see docs/algorithms/smmf.md).</summary>
/// <param name="Beta1">β1,k = β·g^(k−1), the first-moment decay of this step (ignored without a first moment).</param>
/// <param name="Beta2">β2,k = 1 − k^c, the second-moment decay of this step.</param>
/// <param name="Eps">ε, added to √V.</param>
/// <param name="StepSize">η: a parameter update is W ← W·<paramref name="DecayFactor"/> − η·U (unused for a direction).</param>
/// <param name="DecayFactor">1 − η·λ for decoupled decay before the update, else 1 (unused for a direction).</param>
public readonly record struct SmmfScalars(double Beta1, double Beta2, double Eps, double StepSize = 0, double DecayFactor = 1);
