using TorchSharp;

namespace LowRankOptim.Kernels;

/// <summary>
/// The memory-bound arithmetic of the optimizers. Matrix products, SVD and QR stay TorchSharp calls;
/// what lives here are the element-wise passes over moments that profiling shows matter.
/// <see cref="TorchKernels"/> is the reference every other implementation is tested against.
/// </summary>
public interface IOptimizerKernels
{
    /// <summary>A short name for logs and error messages.</summary>
    string Name { get; }

    /// <summary>
    /// Updates the Adam moments in place, m ← β1·m + (1−β1)·g and v ← β2·v + (1−β2)·g², and returns the
    /// normalized direction m / (√v / <see cref="AdamScalars.SqrtBiasCorrection2"/> + ε) as a new tensor.
    /// </summary>
    torch.Tensor AdamDirection(torch.Tensor gradient, torch.Tensor expAvg, torch.Tensor expAvgSq, in AdamScalars scalars);
}
