namespace LowRankOptim;

/// <summary>How weight decay λ enters the step: decoupled W ← W·(1 − η·λ) before or after the update, or L2.</summary>
public enum WeightDecayOrder
{
    /// <summary>Before the update, on the pre-update weights (torch.optim.AdamW, Adafactor).</summary>
    BeforeUpdate,
    /// <summary>After the update, on the updated weights (galore_torch's AdamW, Hugging Face AdamW).</summary>
    AfterUpdate,
    /// <summary>L2 regularization: λ·W is added to the gradient before projection and the rule (torch.optim.Adam, SMMF's "adam" mode).</summary>
    CoupledToGradient,
}
