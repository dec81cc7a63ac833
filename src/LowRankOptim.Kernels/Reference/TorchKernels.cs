using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Kernels;

/// <summary>
/// Reference kernels written in TorchSharp ops: any device, any dtype, any layout. The Adam operation order
/// follows TorchSharp's own <c>torch.optim.AdamW</c>, so a full-space Adam with torch conventions matches it
/// bit for bit. Every other implementation is tested against this one.
/// </summary>
/// <remarks>
/// Registered in <see cref="KernelRegistry"/> for every operation and every dense dtype as
/// <see cref="KernelBackend.Reference"/>; rules reach it through <see cref="KernelSelection"/>, never by name.
/// </remarks>
internal sealed class TorchKernels : IAdamDirectionKernel, IAdamUpdateKernel, IAdafactorStatisticsKernel, ISmmfStepKernel, IL1NormsKernel, IQuantizedAdamKernel,
    IWeightUpdateKernel
{
    /// <summary>The shared instance; the class has no state.</summary>
    public static TorchKernels Instance { get; } = new();

    private TorchKernels() { }

    /// <summary>0, rooted for the process (a Scalar made per call must be held in a local: see ScalarLifetimeTests).</summary>
    private static readonly Scalar Zero = 0.ToScalar();

    /// <inheritdoc />
    public KernelBackend Backend => KernelBackend.Reference;

    /// <inheritdoc />
    public string? UnavailableReason => null;

    /// <inheritdoc />
    public long MaxElements(KernelStorage storage) => long.MaxValue;

    /// <inheritdoc />
    public bool Accepts(params ReadOnlySpan<Tensor?> tensors) => true;

    /// <inheritdoc />
    public Tensor AdamDirection(Tensor gradient, Tensor expAvg, Tensor expAvgSq, in AdamScalars scalars)
    {
        UpdateMoments(gradient, expAvg, expAvgSq, scalars);
        using var denom = Denominator(expAvgSq, scalars);
        return expAvg.div(denom);
    }

    /// <inheritdoc />
    public void AdamUpdate(Tensor gradient, Tensor expAvg, Tensor expAvgSq, in AdamScalars scalars, Tensor weights)
    {
        UpdateMoments(gradient, expAvg, expAvgSq, scalars);
        using var denom = Denominator(expAvgSq, scalars);
        if (scalars.DecayFactor != 1)
            using (var decay = scalars.DecayFactor.ToScalar()) weights.mul_(decay);
        using var step = (-scalars.StepSize).ToScalar();
        weights.addcdiv_(expAvg, denom, value: step);
    }

    /// <summary>m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g², in torch.optim.AdamW's ops.</summary>
    private static void UpdateMoments(Tensor gradient, Tensor expAvg, Tensor expAvgSq, in AdamScalars scalars)
    {
        using var beta1 = scalars.Beta1.ToScalar();
        using var oneMinusBeta1 = (1 - scalars.Beta1).ToScalar();
        using var beta2 = scalars.Beta2.ToScalar();
        using var oneMinusBeta2 = (1 - scalars.Beta2).ToScalar();
        expAvg.mul_(beta1).add_(gradient, alpha: oneMinusBeta1);
        expAvgSq.mul_(beta2).addcmul_(gradient, gradient, value: oneMinusBeta2);
    }

    /// <summary>√v / √bc2 + ε (torch.optim.AdamW's denominator), or √v + ε when √bc2 = 1.</summary>
    private static Tensor Denominator(Tensor expAvgSq, in AdamScalars scalars)
    {
        using var root = expAvgSq.sqrt();
        using var eps = scalars.Eps.ToScalar();
        if (scalars.SqrtBiasCorrection2 == 1.0) return root.add(eps);
        using var correction = scalars.SqrtBiasCorrection2.ToScalar();
        return root.div(correction).add_(eps);
    }

    /// <inheritdoc />
    public void AdafactorStatistics(Tensor gradient, Tensor rows, Tensor cols, in AdafactorScalars scalars)
    {
        using var scope = NewDisposeScope();
        using var eps1 = scalars.Eps1.ToScalar();
        using var beta2 = scalars.Beta2.ToScalar();
        using var oneMinusBeta2 = (1 - scalars.Beta2).ToScalar();
        var q = gradient.square().add_(eps1);
        rows.mul_(beta2).add_(q.mean([-1]).reshape(rows.shape), alpha: oneMinusBeta2);
        cols.mul_(beta2).add_(q.mean([-2]).reshape(cols.shape), alpha: oneMinusBeta2);
    }

    /// <inheritdoc />
    public void SmmfStep(Tensor gradient, in SmmfFactors state, in SmmfScalars scalars, Tensor target, bool updateWeights)
    {
        using var scope = NewDisposeScope();
        var (rows, cols) = (state.Rows, state.Cols);
        var count = rows * cols;
        var dtype = gradient.dtype;
        using var beta1 = scalars.Beta1.ToScalar();
        using var oneMinusBeta1 = (1 - scalars.Beta1).ToScalar();
        using var beta2 = scalars.Beta2.ToScalar();
        using var oneMinusBeta2 = (1 - scalars.Beta2).ToScalar();
        using var eps = scalars.Eps.ToScalar();
        var g = gradient.reshape(rows, cols);
        Tensor? m = null;
        if (state.HasMomentum)
        {
            var magnitude = RankOneFactorization.Decompress(state.MomentRows!, state.MomentCols!, dtype);
            var positive = SignBits.Unpack(state.MomentSigns!, count, [rows, cols]);
            m = where(positive, magnitude, magnitude.neg()).mul_(beta1).add_(g, alpha: oneMinusBeta1);
        }
        var v = RankOneFactorization.Decompress(state.VarianceRows, state.VarianceCols, dtype).mul_(beta2).addcmul_(g, g, value: oneMinusBeta2);
        if (m is not null)
        {
            SignBits.PackInto(m.gt(Zero), state.MomentSigns!);
            RankOneFactorization.Compress(m.abs(), state.MomentRows!, state.MomentCols!);
        }
        RankOneFactorization.Compress(v, state.VarianceRows, state.VarianceCols);
        var u = (m ?? g).div(v.sqrt_().add_(eps)).reshape(target.shape);
        if (updateWeights)
        {
            if (scalars.DecayFactor != 1)
                using (var decay = scalars.DecayFactor.ToScalar()) target.mul_(decay);
            using var step = (-scalars.StepSize).ToScalar();
            target.add_(u.to(target.dtype), alpha: step);
        }
        else
        {
            target.copy_(u);
        }
    }

    /// <inheritdoc />
    public Tensor L1Norms(Tensor matrix, L1Axis axis)
    {
        if (matrix.dim() != 2) throw new ArgumentException($"matrix must be 2-D (got {matrix.dim()} dims).", nameof(matrix));
        using var absolute = matrix.abs();
        return absolute.sum(dim: axis == L1Axis.Columns ? 0L : 1L, type: ScalarType.Float32);
    }

    /// <inheritdoc />
    public Tensor QuantizedAdamDirection(Tensor gradient, in QuantizedMoments moments, in AdamScalars scalars)
    {
        var (m, v) = Dequantized(gradient, moments);
        using (m)
        using (v)
        {
            var direction = AdamDirection(gradient, m, v, scalars);
            Store(m, v, moments);
            return direction;
        }
    }

    /// <inheritdoc />
    public void QuantizedAdamUpdate(Tensor gradient, in QuantizedMoments moments, in AdamScalars scalars, Tensor weights)
    {
        var (m, v) = Dequantized(gradient, moments);
        using (m)
        using (v)
        {
            AdamUpdate(gradient, m, v, scalars, weights);
            Store(m, v, moments);
        }
    }

    /// <summary>m and v dequantized into the gradient's shape and dtype.</summary>
    private static (Tensor M, Tensor V) Dequantized(Tensor gradient, in QuantizedMoments moments)
    {
        var (m, v) = (moments.ExpAvg, moments.ExpAvgSq);
        return (BlockQuantizer.Dequantize(m.Codes, m.Absmax, m.Format, gradient.shape, gradient.dtype),
                BlockQuantizer.Dequantize(v.Codes, v.Absmax, v.Format, gradient.shape, gradient.dtype));
    }

    /// <summary>Quantizes the updated m and v back into their codes and absmax.</summary>
    private static void Store(Tensor m, Tensor v, in QuantizedMoments moments)
    {
        var (qm, qv) = (moments.ExpAvg, moments.ExpAvgSq);
        BlockQuantizer.Quantize(m, qm.Codes, qm.Absmax, qm.Format, qm.Rounding);
        BlockQuantizer.Quantize(v, qv.Codes, qv.Absmax, qv.Format, qv.Rounding);
    }

    /// <inheritdoc />
    /// <remarks>
    /// The truth for the fused kernels: a float32 copy of W (4 bytes an element) and, for stochastic rounding, the noise of
    /// <see cref="BlockQuantizer.ToBFloat16(Tensor, Rounding, long)"/> (several int64 tensors of W's size): for tests and
    /// devices without a fused kernel, not for a large parameter's memory budget.
    /// </remarks>
    public void UpdateWeights(Tensor weights, Tensor update, in WeightUpdateScalars scalars)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(update);
        if (weights.dtype != ScalarType.BFloat16)
            throw new ArgumentException($"weights has dtype {weights.dtype}; the weight update kernel rounds to bfloat16 weights only.", nameof(weights));
        if (update.numel() != weights.numel())
            throw new ArgumentException($"update has {update.numel()} elements; the weights have {weights.numel()}.", nameof(update));
        using var scope = NewDisposeScope();
        var x = weights.to(ScalarType.Float32);
        using var before = scalars.DecayBefore.ToScalar();
        using var step = (-scalars.Coefficient).ToScalar();
        using var after = scalars.DecayAfter.ToScalar();
        if (scalars.DecayBefore != 1) x.mul_(before);
        // (−c)·U first, then the sum: two float32 roundings, as the fused kernels (libtorch's add_ with alpha may fuse them).
        x.add_(update.to(ScalarType.Float32).reshape(x.shape).mul(step));
        if (scalars.DecayAfter != 1) x.mul_(after);
        weights.copy_(BlockQuantizer.ToBFloat16(x, scalars.Rounding, scalars.FirstIndex));
    }
}
