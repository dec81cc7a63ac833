using TorchSharp;

namespace LowRankOptim.Kernels;

/// <summary>
/// What every kernel tells the selection (<see cref="KernelSelection"/>): its backend (and so its device), whether
/// it can run in this process, its size limit, and, per call, whether it takes the tensors' layout. Which
/// operation and storage it serves is its registration in <see cref="KernelRegistry"/>; the operation itself is
/// one of the per-operation interfaces (<see cref="IAdamDirectionKernel"/>, <see cref="IAdamUpdateKernel"/>,
/// <see cref="IAdafactorStatisticsKernel"/>, <see cref="ISmmfStepKernel"/>, <see cref="IL1NormsKernel"/>,
/// <see cref="IQuantizedAdamKernel"/>, <see cref="IWeightUpdateKernel"/>).
/// </summary>
/// <remarks>
/// The memory-bound arithmetic of the optimizers lives behind these interfaces; matrix products, SVD and QR stay
/// TorchSharp calls. The reference backend (TorchSharp ops, any device, dtype and layout) is registered for every
/// operation and is what every other implementation is tested against. An implementation throws
/// <see cref="ArgumentException"/> naming the tensor for an input it cannot take (device, dtype, size, layout);
/// the selection asks first, so that only an explicit choice reaches it with such an input.
/// </remarks>
public interface IKernel
{
    /// <summary>The backend this implementation belongs to; it runs on that backend's device type only.</summary>
    KernelBackend Backend { get; }

    /// <summary>Null when the kernel can run in this process, else why not (say, the CUDA driver or NVRTC is missing).</summary>
    string? UnavailableReason { get; }

    /// <summary>The most elements one tensor of <paramref name="storage"/> may have (<see cref="long.MaxValue"/>: no limit).</summary>
    /// <param name="storage">The storage the tensors would have.</param>
    long MaxElements(KernelStorage storage);

    /// <summary>
    /// Whether every tensor has the layout the kernel needs: device type, contiguity, size (null entries are
    /// skipped). The reference takes any; the fused kernels need dense (contiguous) tensors on their device.
    /// </summary>
    /// <param name="tensors">The tensors of one call.</param>
    bool Accepts(params ReadOnlySpan<torch.Tensor?> tensors);
}

/// <summary><see cref="KernelOperation.AdamDirection"/>: Adam's moment update and normalized direction.</summary>
public interface IAdamDirectionKernel : IKernel
{
    /// <summary>
    /// Updates the Adam moments in place, m ← β1·m + (1−β1)·g and v ← β2·v + (1−β2)·g², and returns the
    /// normalized direction m / (√v / <see cref="AdamScalars.SqrtBiasCorrection2"/> + ε) as a new tensor
    /// (ε after bias correction; with <see cref="AdamScalars.SqrtBiasCorrection2"/> = 1, ε is added to the
    /// uncorrected √v). Moments, gradient and direction share one dtype.
    /// </summary>
    /// <param name="gradient">The gradient g (read only).</param>
    /// <param name="expAvg">The first moment m, updated in place.</param>
    /// <param name="expAvgSq">The second moment v, updated in place.</param>
    /// <param name="scalars">β1, β2, ε and the bias corrections of this step.</param>
    /// <returns>The normalized direction, a new tensor of the gradient's shape.</returns>
    torch.Tensor AdamDirection(torch.Tensor gradient, torch.Tensor expAvg, torch.Tensor expAvgSq, in AdamScalars scalars);
}

/// <summary><see cref="KernelOperation.AdamUpdate"/>: a full-space Adam step on moments and weights in one pass.</summary>
public interface IAdamUpdateKernel : IKernel
{
    /// <summary>
    /// A full-space Adam step in one pass: updates the moments as <see cref="IAdamDirectionKernel.AdamDirection"/>
    /// does and the weights in place in torch.optim.AdamW's order, W ← W·<see cref="AdamScalars.DecayFactor"/> then
    /// W ← W + (−<see cref="AdamScalars.StepSize"/>·m) / denom (<c>mul_</c>, then <c>addcdiv_</c>), so no
    /// direction tensor is created. Weights, moments and gradient share one dtype and shape.
    /// </summary>
    /// <param name="gradient">The gradient g (read only).</param>
    /// <param name="expAvg">The first moment m, updated in place.</param>
    /// <param name="expAvgSq">The second moment v, updated in place.</param>
    /// <param name="scalars">β1, β2, ε, the bias corrections, the step size and the decay factor of this step.</param>
    /// <param name="weights">The weights W, updated in place.</param>
    void AdamUpdate(torch.Tensor gradient, torch.Tensor expAvg, torch.Tensor expAvgSq, in AdamScalars scalars, torch.Tensor weights);
}

/// <summary><see cref="KernelOperation.AdafactorStatistics"/>: Adafactor's factored second-moment statistics.</summary>
public interface IAdafactorStatisticsKernel : IKernel
{
    /// <summary>
    /// Adafactor's factored second-moment statistics: with q = g² + ε1 and the gradient viewed as
    /// B×R×C (B the product of the leading dimensions), rows (B·R) ← β2·rows + (1−β2)·mean over C of q and
    /// cols (B·C) ← β2·cols + (1−β2)·mean over R of q, in place.
    /// </summary>
    /// <param name="gradient">The gradient, B×R×C (read only).</param>
    /// <param name="rows">The row statistics, B·R elements, updated in place.</param>
    /// <param name="cols">The column statistics, B·C elements, updated in place.</param>
    /// <param name="scalars">β2 and ε1 of this step.</param>
    void AdafactorStatistics(torch.Tensor gradient, torch.Tensor rows, torch.Tensor cols, in AdafactorScalars scalars);
}

/// <summary><see cref="KernelOperation.SmmfStep"/>: SMMF's step on its compressed state.</summary>
public interface ISmmfStepKernel : IKernel
{
    /// <summary>
    /// SMMF's step on the compressed state (see <see cref="SmmfFactors"/>): updates the factors and signs in
    /// place and writes the direction U into <paramref name="target"/> or, with
    /// <paramref name="updateWeights"/>, updates the weights W ← W·<see cref="SmmfScalars.DecayFactor"/> −
    /// <see cref="SmmfScalars.StepSize"/>·U. Gradient and target have N = rows·cols elements.
    /// </summary>
    /// <param name="gradient">The gradient (read only).</param>
    /// <param name="state">The compressed moments, updated in place.</param>
    /// <param name="scalars">The decay rates, ε, the step size and the decay factor of this step.</param>
    /// <param name="target">Where the direction is written, or the weights when <paramref name="updateWeights"/>.</param>
    /// <param name="updateWeights">Whether <paramref name="target"/> holds the weights to step rather than a direction buffer.</param>
    void SmmfStep(torch.Tensor gradient, in SmmfFactors state, in SmmfScalars scalars, torch.Tensor target, bool updateWeights);
}

/// <summary><see cref="KernelOperation.L1Norms"/>: ℓ1 norms of the columns or rows of a matrix.</summary>
public interface IL1NormsKernel : IKernel
{
    /// <summary>
    /// The ℓ1 norms of the columns (Σ_i |x_ij|) or rows (Σ_j |x_ij|) of the 2-D tensor
    /// <paramref name="matrix"/>, as a new float32 tensor on its device (the DCT projector's column scores).
    /// </summary>
    /// <param name="matrix">A 2-D, contiguous tensor (read only).</param>
    /// <param name="axis">Whether to sum over the rows of each column or over the columns of each row.</param>
    torch.Tensor L1Norms(torch.Tensor matrix, L1Axis axis);
}

/// <summary>
/// <see cref="KernelOperation.QuantizedAdam"/>: Adam on block-wise quantized moments (<see cref="BlockFormat"/>), in one
/// pass per block: dequantize m and v (map[code]·absmax in float32, converted to the gradient's dtype), take the Adam step
/// of <see cref="IAdamDirectionKernel"/> or <see cref="IAdamUpdateKernel"/>, and quantize the new moments back
/// (<see cref="BlockQuantizer"/>, with each moment's rounding). The reference is exactly that sequence of TorchSharp ops;
/// a fused kernel gives the same codes and absmax bit for bit (the moments round as the reference's) and the direction or
/// weights as the dense kernels do.
/// </summary>
public interface IQuantizedAdamKernel : IKernel
{
    /// <summary>Updates the quantized moments with <paramref name="gradient"/> and returns the normalized direction (a new tensor of the gradient's shape and dtype).</summary>
    /// <param name="gradient">The gradient g (read only); its element count is the moments'.</param>
    /// <param name="moments">m and v, codes and absmax updated in place.</param>
    /// <param name="scalars">β1, β2, ε and the bias corrections of this step.</param>
    torch.Tensor QuantizedAdamDirection(torch.Tensor gradient, in QuantizedMoments moments, in AdamScalars scalars);

    /// <summary>A full-space step on the quantized moments and the weights in one pass (<see cref="IAdamUpdateKernel.AdamUpdate"/>'s order).</summary>
    /// <param name="gradient">The gradient g (read only).</param>
    /// <param name="moments">m and v, codes and absmax updated in place.</param>
    /// <param name="scalars">β1, β2, ε, the bias corrections, the step size and the decay factor of this step.</param>
    /// <param name="weights">The weights W (the gradient's shape and dtype), updated in place.</param>
    void QuantizedAdamUpdate(torch.Tensor gradient, in QuantizedMoments moments, in AdamScalars scalars, torch.Tensor weights);

    /// <summary>
    /// Null when this kernel takes moments of <paramref name="format"/> (its code width and block size), else why not, as
    /// the rest of a sentence after "cannot take" ("blocks of 2048 entries (...)"). Selection asks it
    /// (<see cref="KernelSelection"/>): automatic selection then takes the reference, an explicit choice is refused.
    /// The default takes every format (the reference does).
    /// </summary>
    /// <param name="format">The moments' format (m and v share the width and block size).</param>
    string? FormatProblem(BlockFormat format) => null;
}

/// <summary>
/// <see cref="KernelOperation.WeightUpdate"/>: the weight update of a bfloat16 parameter computed in float32 and rounded
/// once, W ← round(((W·before) + (−c)·U)·after) (<see cref="WeightUpdateScalars"/>), so that an update smaller than half a
/// bfloat16 ulp of W is not lost under stochastic rounding. Registered for dense bfloat16 weights.
/// </summary>
/// <remarks>
/// Every operation is one float32 operation, rounded to nearest (no fused multiply-add): x = float32(W); x ← x·before;
/// x ← x + ((−c)·float32(U)); x ← x·after; the scalars converted to float32 first, as libtorch converts the scalar of a
/// float32 <c>mul</c>. Then x is rounded to bfloat16: to nearest even, or stochastically as
/// <see cref="BlockQuantizer.ToBFloat16(torch.Tensor, Rounding, long)"/> with the noise of flat index
/// <see cref="WeightUpdateScalars.FirstIndex"/> + i for element i. A NaN stays a NaN and ±∞ stays ±∞. The reference is that
/// sequence of TorchSharp ops on a float32 copy of W; a fused kernel writes the same bfloat16 bits (NaN payloads aside).
/// </remarks>
public interface IWeightUpdateKernel : IKernel
{
    /// <summary>Updates the bfloat16 <paramref name="weights"/> in place with <paramref name="update"/> (see the interface).</summary>
    /// <param name="weights">W, bfloat16, updated in place.</param>
    /// <param name="update">U, bfloat16 or float32, with W's element count (read only; flat order is W's).</param>
    /// <param name="scalars">c, the decay factors, the rounding and the flat index of W's first element.</param>
    void UpdateWeights(torch.Tensor weights, torch.Tensor update, in WeightUpdateScalars scalars);
}

/// <summary>One block-wise quantized tensor as a kernel sees it.</summary>
/// <param name="Codes">The codes (uint8, <see cref="BlockFormat.CodeBytes"/> elements).</param>
/// <param name="Absmax">One float32 absmax per block.</param>
/// <param name="Format">The format.</param>
/// <param name="Rounding">How this store rounds to the codes.</param>
public readonly record struct QuantizedTensor(torch.Tensor Codes, torch.Tensor Absmax, BlockFormat Format, Rounding Rounding);

/// <summary>Adam's quantized moments: m (a signed map) and v (an unsigned map), of the same element count and width.</summary>
/// <param name="ExpAvg">The first moment m.</param>
/// <param name="ExpAvgSq">The second moment v.</param>
public readonly record struct QuantizedMoments(QuantizedTensor ExpAvg, QuantizedTensor ExpAvgSq);
