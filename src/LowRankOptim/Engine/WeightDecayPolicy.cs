using TorchSharp;

namespace LowRankOptim;

/// <summary>
/// A group's weight decay λ and where it enters the step. The only code that applies decay: the step engine
/// calls <see cref="CoupleToGradient"/>, <see cref="ApplyBeforeUpdate"/> and <see cref="ApplyAfterUpdate"/>,
/// and a rule that updates the weights itself (a fused kernel) takes <see cref="FactorBeforeUpdate"/>.
/// </summary>
/// <param name="Lambda">λ ≥ 0.</param>
/// <param name="Order">Decoupled before or after the update, or L2 added to the gradient.</param>
public readonly record struct WeightDecayPolicy(double Lambda, WeightDecayOrder Order)
{
    /// <summary>
    /// The factor W is multiplied by before the update, 1 − η_d·λ for <see cref="WeightDecayOrder.BeforeUpdate"/>
    /// (1 otherwise): what a fused kernel folds into its weight pass.
    /// </summary>
    /// <param name="decayLearningRate">η_d, the learning rate the rule decays with.</param>
    public double FactorBeforeUpdate(double decayLearningRate) =>
        Order == WeightDecayOrder.BeforeUpdate && Lambda != 0 ? 1 - decayLearningRate * Lambda : 1;

    /// <summary>The factor W is multiplied by after the update, 1 − η_d·λ for <see cref="WeightDecayOrder.AfterUpdate"/> (1 otherwise).</summary>
    /// <param name="decayLearningRate">η_d, the learning rate the rule decays with.</param>
    internal double FactorAfterUpdate(double decayLearningRate) =>
        Order == WeightDecayOrder.AfterUpdate && Lambda != 0 ? 1 - decayLearningRate * Lambda : 1;

    /// <summary>g + λ·W for L2 decay (<see cref="WeightDecayOrder.CoupledToGradient"/>), else <paramref name="gradient"/> itself.</summary>
    internal torch.Tensor CoupleToGradient(torch.Tensor gradient, torch.Tensor weights)
    {
        if (Order != WeightDecayOrder.CoupledToGradient || Lambda == 0) return gradient;
        using var lambda = Lambda.ToScalar();
        return gradient.add(weights.to(gradient.dtype), alpha: lambda);
    }

    /// <summary>W ← W·(1 − η_d·λ) when the decay comes before the update.</summary>
    internal void ApplyBeforeUpdate(torch.Tensor weights, double decayLearningRate)
    {
        if (Order == WeightDecayOrder.BeforeUpdate) Decay(weights, decayLearningRate);
    }

    /// <summary>W ← W·(1 − η_d·λ) when the decay comes after the update.</summary>
    internal void ApplyAfterUpdate(torch.Tensor weights, double decayLearningRate)
    {
        if (Order == WeightDecayOrder.AfterUpdate) Decay(weights, decayLearningRate);
    }

    private void Decay(torch.Tensor weights, double decayLearningRate)
    {
        if (Lambda == 0) return;
        using var factor = (1 - decayLearningRate * Lambda).ToScalar();
        weights.mul_(factor);
    }
}
