using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Rules;

/// <summary>
/// Optional capability of an <see cref="IUpdateRule"/>: for a parameter trained in the full space (no
/// projection), update the moments and the weights in the same pass instead of returning a direction that
/// the optimizer then adds. <see cref="LowRankOptimizer"/> asks for it before calling
/// <see cref="IUpdateRule.Compute"/>, only in the full space; a rule that declines changes nothing and the
/// optimizer goes on with <see cref="IUpdateRule.Compute"/>. The result must equal what Compute plus the
/// optimizer's own update would give (up to float rounding).
/// </summary>
public interface IFusedParameterUpdate
{
    /// <summary>
    /// Either updates the rule's state with <paramref name="gradient"/> and the parameter in place,
    /// W ← W·(1 − η_d·<paramref name="weightDecayBeforeUpdate"/>) − c·U, and returns true with η_d in
    /// <paramref name="decayLearningRate"/> (for a decay after the update, which the optimizer applies); or
    /// changes nothing and returns false (say, for a parameter of another dtype or layout).
    /// </summary>
    /// <param name="parameter">The parameter, updated in place on success.</param>
    /// <param name="gradient">Its gradient in the rule's working dtype (L2 decay already added, if any).</param>
    /// <param name="context">The step's context, as for <see cref="IUpdateRule.Compute"/>.</param>
    /// <param name="weightDecayBeforeUpdate">λ when decoupled decay comes before the update, else 0.</param>
    /// <param name="decayLearningRate">The learning rate that multiplies the weight decay (as <see cref="RuleUpdate.DecayLearningRate"/>).</param>
    bool TryUpdateInPlace(Parameter parameter, Tensor gradient, in RuleContext context, double weightDecayBeforeUpdate, out double decayLearningRate);
}
