using TorchSharp;

namespace LowRankOptim.Kernels;

/// <summary>
/// The memory-bound arithmetic of the optimizers. Matrix products, SVD and QR stay TorchSharp calls;
/// what lives here are the element-wise passes over moments that profiling shows matter.
/// <see cref="TorchKernels"/> is the reference every other implementation is tested against;
/// <see cref="CpuKernels"/> and <see cref="CudaKernels"/> are the fused implementations, chosen per
/// parameter by <see cref="KernelSelection"/>. An implementation throws <see cref="ArgumentException"/> naming
/// the tensor for an input it cannot take (device, dtype, size, layout); callers ask
/// <see cref="Supports"/> and <see cref="Accepts"/> first.
/// </summary>
public interface IOptimizerKernels
{
    /// <summary>A short name for logs and error messages.</summary>
    string Name { get; }

    /// <summary>
    /// Whether <paramref name="operation"/> runs here for state of <paramref name="dtype"/> on
    /// <paramref name="device"/>; when not, <paramref name="reason"/> says why.
    /// </summary>
    bool Supports(KernelOperation operation, torch.Device device, torch.ScalarType dtype, out string reason);

    /// <summary>Whether every tensor has the layout the kernels need (the reference takes any; the fused ones need contiguous tensors).</summary>
    bool Accepts(params ReadOnlySpan<torch.Tensor?> tensors);

    /// <summary>
    /// Updates the Adam moments in place, m ← β1·m + (1−β1)·g and v ← β2·v + (1−β2)·g², and returns the
    /// normalized direction m / (√v / <see cref="AdamScalars.SqrtBiasCorrection2"/> + ε) as a new tensor
    /// (ε after bias correction; with <see cref="AdamScalars.SqrtBiasCorrection2"/> = 1, ε is added to the
    /// uncorrected √v). Moments, gradient and direction share one dtype.
    /// </summary>
    torch.Tensor AdamDirection(torch.Tensor gradient, torch.Tensor expAvg, torch.Tensor expAvgSq, in AdamScalars scalars);

    /// <summary>
    /// A full-space Adam step in one pass: updates the moments as <see cref="AdamDirection"/> does and the
    /// weights in place in torch.optim.AdamW's order, W ← W·<see cref="AdamScalars.DecayFactor"/> then
    /// W ← W + (−<see cref="AdamScalars.StepSize"/>·m) / denom (<c>mul_</c>, then <c>addcdiv_</c>), so no
    /// direction tensor is created. Weights, moments and gradient share one dtype and shape.
    /// </summary>
    void AdamUpdate(torch.Tensor gradient, torch.Tensor expAvg, torch.Tensor expAvgSq, in AdamScalars scalars, torch.Tensor weights);

    /// <summary>
    /// Adafactor's factored second-moment statistics: with q = g² + ε1 and the gradient viewed as
    /// B×R×C (B the product of the leading dimensions), rows (B·R) ← β2·rows + (1−β2)·mean over C of q and
    /// cols (B·C) ← β2·cols + (1−β2)·mean over R of q, in place.
    /// </summary>
    void AdafactorStatistics(torch.Tensor gradient, torch.Tensor rows, torch.Tensor cols, in AdafactorScalars scalars);

    /// <summary>
    /// SMMF's step on the compressed state (see <see cref="SmmfFactors"/>): updates the factors and signs in
    /// place and writes the direction U into <paramref name="target"/> or, with
    /// <paramref name="updateWeights"/>, updates the weights W ← W·<see cref="SmmfScalars.DecayFactor"/> −
    /// <see cref="SmmfScalars.StepSize"/>·U. Gradient and target have N = rows·cols elements.
    /// </summary>
    void SmmfStep(torch.Tensor gradient, in SmmfFactors state, in SmmfScalars scalars, torch.Tensor target, bool updateWeights);

    /// <summary>
    /// The ℓ1 norms of the columns (Σ_i |x_ij|) or rows (Σ_j |x_ij|) of the 2-D tensor
    /// <paramref name="matrix"/>, as a new float32 tensor on its device (the DCT projector's column scores).
    /// </summary>
    torch.Tensor L1Norms(torch.Tensor matrix, L1Axis axis);
}
