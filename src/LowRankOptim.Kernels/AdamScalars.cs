namespace LowRankOptim.Kernels;

/// <summary>The scalars of one Adam moment update.</summary>
/// <param name="Beta1">First-moment decay β1 in [0, 1).</param>
/// <param name="Beta2">Second-moment decay β2 in [0, 1).</param>
/// <param name="Eps">ε, added to the (possibly scaled) square root of the second moment.</param>
/// <param name="SqrtBiasCorrection2">
/// √(1 − β2ᵏ) when ε is added after bias correction (torch.optim: denom = √v / √(1−β2ᵏ) + ε),
/// or 1 when ε is added to the uncorrected √v (galore_torch / Hugging Face: denom = √v + ε).
/// </param>
/// <param name="StepSize">c in a weights update W ← W·<paramref name="DecayFactor"/> − c·m / denom (unused for a direction).</param>
/// <param name="DecayFactor">1 − η·λ for decoupled decay before the update, else 1 (unused for a direction).</param>
public readonly record struct AdamScalars(double Beta1, double Beta2, double Eps, double SqrtBiasCorrection2, double StepSize = 0, double DecayFactor = 1);
