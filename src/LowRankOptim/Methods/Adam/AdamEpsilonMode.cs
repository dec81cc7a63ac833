using LowRankOptim.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>Where Adam's ε enters the denominator.</summary>
public enum AdamEpsilonMode
{
    /// <summary>torch.optim: m̂ / (√v̂ + ε), i.e. ε added after bias correction.</summary>
    AfterBiasCorrection,
    /// <summary>galore_torch / Hugging Face AdamW: ε added to the uncorrected √v, i.e. m̂ / (√v̂ + ε/√(1−β2ᵏ)).</summary>
    BeforeBiasCorrection,
}
