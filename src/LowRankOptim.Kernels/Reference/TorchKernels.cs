using TorchSharp;

namespace LowRankOptim.Kernels;

/// <summary>
/// Reference kernels written in TorchSharp ops: any device, any dtype. The operation order follows
/// TorchSharp's own <c>torch.optim.AdamW</c>, so a full-space Adam with torch conventions matches it bit for bit.
/// </summary>
public sealed class TorchKernels : IOptimizerKernels
{
    /// <summary>The shared instance; the class has no state.</summary>
    public static TorchKernels Instance { get; } = new();

    /// <inheritdoc />
    public string Name => "reference";

    /// <inheritdoc />
    public torch.Tensor AdamDirection(torch.Tensor gradient, torch.Tensor expAvg, torch.Tensor expAvgSq, in AdamScalars scalars)
    {
        expAvg.mul_(scalars.Beta1).add_(gradient, alpha: 1 - scalars.Beta1);
        expAvgSq.mul_(scalars.Beta2).addcmul_(gradient, gradient, value: 1 - scalars.Beta2);
        using var root = expAvgSq.sqrt();
        using var denom = scalars.SqrtBiasCorrection2 == 1.0 ? root.add(scalars.Eps) : root.div(scalars.SqrtBiasCorrection2).add_(scalars.Eps);
        return expAvg.div(denom);
    }
}
