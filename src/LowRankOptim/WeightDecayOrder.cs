namespace LowRankOptim;

/// <summary>When decoupled weight decay W ← W·(1 − η·λ) is applied relative to the update.</summary>
public enum WeightDecayOrder
{
    /// <summary>Before the update, on the pre-update weights (torch.optim.AdamW, Adafactor).</summary>
    BeforeUpdate,
    /// <summary>After the update, on the updated weights (galore_torch's AdamW, Hugging Face AdamW).</summary>
    AfterUpdate,
}
