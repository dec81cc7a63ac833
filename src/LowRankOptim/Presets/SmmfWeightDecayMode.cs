namespace LowRankOptim;

/// <summary>SMMF's <c>weight_decay_mode</c>.</summary>
public enum SmmfWeightDecayMode
{
    /// <summary><c>"adamw"</c> (the default): decoupled, W ← W·(1 − η·λ) before the update (<see cref="WeightDecayOrder.BeforeUpdate"/>).</summary>
    AdamW,
    /// <summary>
    /// <c>"adam"</c>: L2, λ·W added to the gradient before the moments (<see cref="WeightDecayOrder.CoupledToGradient"/>).
    /// This is what the reference intends; its own <c>adam</c> mode computes the sum and drops it (a no-op).
    /// </summary>
    Adam,
}
