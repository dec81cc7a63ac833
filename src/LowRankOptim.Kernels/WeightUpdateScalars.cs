namespace LowRankOptim.Kernels;

/// <summary>The scalars of one <see cref="IWeightUpdateKernel"/> call: W ← round(((W·before) + (−c)·U)·after).</summary>
/// <param name="Coefficient">c, the step size: the update is −c·U.</param>
/// <param name="DecayBefore">The factor of decoupled weight decay before the update (1 − η·λ), else 1.</param>
/// <param name="DecayAfter">The factor of decoupled weight decay after the update, else 1.</param>
/// <param name="Rounding">How the result is rounded to bfloat16: to nearest even, or stochastically with the weights' key of this step.</param>
/// <param name="FirstIndex">
/// The flat index of the first weight in the whole parameter: element i draws the noise of index FirstIndex + i, so a part
/// of a parameter rounds exactly as it does within the whole.
/// </param>
public readonly record struct WeightUpdateScalars(double Coefficient, double DecayBefore = 1, double DecayAfter = 1, Rounding Rounding = default, long FirstIndex = 0);
