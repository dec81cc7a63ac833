namespace LowRankOptim;

/// <summary>Which AdamW conventions a factory sets up.</summary>
public enum AdamConventions
{
    /// <summary>galore_torch / Hugging Face: ε added to the uncorrected √v, weight decay after the update.</summary>
    GaLoreReference,
    /// <summary>torch.optim.AdamW: ε added after bias correction, weight decay before the update.</summary>
    TorchOptim,
}
