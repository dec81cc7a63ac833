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
internal sealed class TorchKernels : IAdamDirectionKernel, IAdamUpdateKernel, IAdafactorStatisticsKernel, ISmmfStepKernel, IL1NormsKernel
{
    /// <summary>The shared instance; the class has no state.</summary>
    public static TorchKernels Instance { get; } = new();

    private TorchKernels() { }

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
        expAvg.mul_(scalars.Beta1).add_(gradient, alpha: 1 - scalars.Beta1);
        expAvgSq.mul_(scalars.Beta2).addcmul_(gradient, gradient, value: 1 - scalars.Beta2);
        using var denom = Denominator(expAvgSq, scalars);
        return expAvg.div(denom);
    }

    /// <inheritdoc />
    public void AdamUpdate(Tensor gradient, Tensor expAvg, Tensor expAvgSq, in AdamScalars scalars, Tensor weights)
    {
        expAvg.mul_(scalars.Beta1).add_(gradient, alpha: 1 - scalars.Beta1);
        expAvgSq.mul_(scalars.Beta2).addcmul_(gradient, gradient, value: 1 - scalars.Beta2);
        using var denom = Denominator(expAvgSq, scalars);
        if (scalars.DecayFactor != 1) weights.mul_(scalars.DecayFactor);
        weights.addcdiv_(expAvg, denom, value: -scalars.StepSize);
    }

    /// <summary>√v / √bc2 + ε (torch.optim.AdamW's denominator), or √v + ε when √bc2 = 1.</summary>
    private static Tensor Denominator(Tensor expAvgSq, in AdamScalars scalars)
    {
        using var root = expAvgSq.sqrt();
        return scalars.SqrtBiasCorrection2 == 1.0 ? root.add(scalars.Eps) : root.div(scalars.SqrtBiasCorrection2).add_(scalars.Eps);
    }

    /// <inheritdoc />
    public void AdafactorStatistics(Tensor gradient, Tensor rows, Tensor cols, in AdafactorScalars scalars)
    {
        using var scope = NewDisposeScope();
        var q = gradient.square().add_(scalars.Eps1);
        rows.mul_(scalars.Beta2).add_(q.mean([-1]).reshape(rows.shape), alpha: 1 - scalars.Beta2);
        cols.mul_(scalars.Beta2).add_(q.mean([-2]).reshape(cols.shape), alpha: 1 - scalars.Beta2);
    }

    /// <inheritdoc />
    public void SmmfStep(Tensor gradient, in SmmfFactors state, in SmmfScalars scalars, Tensor target, bool updateWeights)
    {
        using var scope = NewDisposeScope();
        var (rows, cols) = (state.Rows, state.Cols);
        var count = rows * cols;
        var dtype = gradient.dtype;
        var g = gradient.reshape(rows, cols);
        Tensor? m = null;
        if (state.HasMomentum)
        {
            var magnitude = RankOneFactorization.Decompress(state.MomentRows!, state.MomentCols!, dtype);
            var positive = SignBits.Unpack(state.MomentSigns!, count, [rows, cols]);
            m = where(positive, magnitude, magnitude.neg()).mul_(scalars.Beta1).add_(g, alpha: 1 - scalars.Beta1);
        }
        var v = RankOneFactorization.Decompress(state.VarianceRows, state.VarianceCols, dtype).mul_(scalars.Beta2).addcmul_(g, g, value: 1 - scalars.Beta2);
        if (m is not null)
        {
            SignBits.PackInto(m.gt(0), state.MomentSigns!);
            RankOneFactorization.Compress(m.abs(), state.MomentRows!, state.MomentCols!);
        }
        RankOneFactorization.Compress(v, state.VarianceRows, state.VarianceCols);
        var u = (m ?? g).div(v.sqrt_().add_(scalars.Eps)).reshape(target.shape);
        if (updateWeights)
        {
            if (scalars.DecayFactor != 1) target.mul_(scalars.DecayFactor);
            target.add_(u.to(target.dtype), alpha: -scalars.StepSize);
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
}
