using LowRankOptim.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The per-parameter state of <see cref="AdafactorConfig"/>: row and column statistics (factored, ≥ 2 dims)
/// or a full second moment (0-D and 1-D), plus the first moment when β1 is set.
/// </summary>
internal sealed class AdafactorRule : IUpdateRule
{
    private readonly bool _factored;
    private readonly TensorSlot _row;        // shape[..-1]
    private readonly TensorSlot _col;        // shape[..-2] + shape[-1]
    private readonly TensorSlot _expAvgSq;   // unfactored second moment
    private readonly TensorSlot _expAvg;     // momentum, when β1 is set
    private readonly long _count;            // gradient elements, for the kernels' size limits
    private readonly KernelChoice<IAdafactorStatisticsKernel> _kernels;

    internal AdafactorRule(StateDeclaration declaration, long[] shape, ScalarType dtype, Device device, KernelPreference kernel = KernelPreference.Auto)
    {
        _factored = Factored(shape);
        _count = DTypes.Elements(shape);
        _kernels = new($"the Adafactor state of a gradient of shape {StateReader.Format(shape)}");
        if (_factored) _kernels.For(kernel.Backend(), device, KernelStorage.Dense(dtype), _count); // an explicit choice that cannot be honoured fails here, with the reason
        State = new StateSlots(declaration, device);
        (_row, _col, _expAvgSq, _expAvg) = (State.Tensor("exp_avg_sq_row"), State.Tensor("exp_avg_sq_col"), State.Tensor("exp_avg_sq"), State.Tensor("exp_avg"));
    }

    private static bool Factored(long[] shape) => shape.Length >= 2;

    /// <summary>Row and column statistics (≥ 2 dims) or the full second moment, and the first moment when β1 is set.</summary>
    internal static StateDeclaration Declare(long[] shape, bool momentum, ScalarType dtype)
    {
        var (factored, unfactored) = Factored(shape) ? (SlotPresence.Allocated, SlotPresence.Unused) : (SlotPresence.Unused, SlotPresence.Allocated);
        return new(
            new TensorEntry("exp_avg_sq_row", Factored(shape) ? shape[..^1] : [], dtype, factored) { Values = TensorValues.NonNegative },
            new TensorEntry("exp_avg_sq_col", Factored(shape) ? [.. shape[..^2], shape[^1]] : [], dtype, factored) { Values = TensorValues.NonNegative },
            new TensorEntry("exp_avg_sq", shape, dtype, unfactored) { Values = TensorValues.NonNegative, Moment = MomentKind.NonNegative },
            new TensorEntry("exp_avg", shape, dtype, momentum ? SlotPresence.Allocated : SlotPresence.Unused) { Moment = MomentKind.Signed });
    }

    /// <inheritdoc />
    public StateSlots State { get; }

    /// <inheritdoc />
    public RuleUpdate Compute(Tensor gradient, in RuleContext context)
    {
        var c = RuleChecks.ConfigAs<AdafactorConfig>(context.Config);
        if (c.Beta1.HasValue != _expAvg.HasValue)
            throw new InvalidOperationException("Adafactor's beta1 cannot switch between null and a value after the optimizer is built.");
        var lr = c.StepLearningRate(context);
        var beta2t = 1.0 - Math.Pow(context.Step, c.DecayRate);
        Tensor update;
        if (_factored)
        {
            var (row, col) = (_row.Required, _col.Required);
            var kernel = gradient.dtype == row.dtype
                ? _kernels.ForCall(c.Kernel.Backend(), row.device, KernelStorage.Dense(row.dtype), _count, gradient, row, col)
                : KernelSelection.Reference<IAdafactorStatisticsKernel>(KernelStorage.Dense(row.dtype));
            using (var contiguous = kernel.Backend == KernelBackend.Reference || gradient.is_contiguous() ? null : gradient.contiguous())
                kernel.AdafactorStatistics(contiguous ?? gradient, row, col, new AdafactorScalars(beta2t, c.Eps1));
            var rowFactor = row.div(row.mean([-1], keepdim: true)).rsqrt_().unsqueeze(-1);
            var colFactor = col.unsqueeze(-2).rsqrt();
            update = rowFactor.mul(colFactor).mul_(gradient);
        }
        else
        {
            using var eps1 = c.Eps1.ToScalar();
            using var beta2 = beta2t.ToScalar();
            using var oneMinusBeta2 = (1 - beta2t).ToScalar();
            using var q = gradient.square().add_(eps1);
            var expAvgSq = _expAvgSq.Required;
            expAvgSq.mul_(beta2).add_(q, alpha: oneMinusBeta2);
            update = expAvgSq.rsqrt().mul_(gradient);
        }
        using (var threshold = c.ClipThreshold.ToScalar())
        using (var one = 1.0.ToScalar())
        using (var rms = Rms.Of(update))
            update.div_(rms.div_(threshold).clamp_(min: one));
        using (var step = lr.ToScalar()) update.mul_(step);
        if (c.Beta1 is double b1)
        {
            using var beta1 = b1.ToScalar();
            using var oneMinusBeta1 = (1 - b1).ToScalar();
            update = _expAvg.Required.mul_(beta1).add_(update, alpha: oneMinusBeta1);
        }
        return new RuleUpdate(update, 1.0, lr);
    }

}
