using LowRankOptim.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The per-parameter state of <see cref="AdafactorConfig"/>: row and column statistics (factored, ≥ 2 dims)
/// or a full second moment (0-D and 1-D), plus the first moment when β1 is set.
/// </summary>
public sealed class AdafactorRule : IUpdateRule
{
    private readonly bool _factored;
    private Tensor? _row;        // shape[..-1]
    private Tensor? _col;        // shape[..-2] + shape[-1]
    private Tensor? _expAvgSq;   // unfactored second moment
    private Tensor? _expAvg;     // momentum, when β1 is set
    private readonly KernelChoice _kernels = new(KernelOperation.AdafactorStatistics);

    internal AdafactorRule(long[] shape, bool momentum, ScalarType dtype, Device device, KernelPreference kernel = KernelPreference.Auto)
    {
        _factored = shape.Length >= 2;
        if (_factored)
        {
            _kernels.For(kernel, device, dtype); // an explicit choice that cannot be honoured fails here, with the reason
            _row = StateTensors.Zeros(shape[..^1], dtype, device);
            _col = StateTensors.Zeros([.. shape[..^2], shape[^1]], dtype, device);
        }
        else
        {
            _expAvgSq = StateTensors.Zeros(shape, dtype, device);
        }
        if (momentum) _expAvg = StateTensors.Zeros(shape, dtype, device);
    }

    /// <inheritdoc />
    public long StateBytes => StateTensors.Bytes(_row) + StateTensors.Bytes(_col) + StateTensors.Bytes(_expAvgSq) + StateTensors.Bytes(_expAvg);

    /// <inheritdoc />
    public RuleUpdate Compute(Tensor gradient, in RuleContext context)
    {
        var c = RuleChecks.ConfigAs<AdafactorConfig>(context.Config);
        if (c.Beta1.HasValue != (_expAvg is not null))
            throw new InvalidOperationException("Adafactor's beta1 cannot switch between null and a value after the optimizer is built.");
        var lr = c.StepLearningRate(context);
        var beta2t = 1.0 - Math.Pow(context.Step, c.DecayRate);
        Tensor update;
        if (_factored)
        {
            var kernels = gradient.dtype == _row!.dtype
                ? _kernels.ForCall(c.Kernel, _row.device, _row.dtype, gradient, _row, _col)
                : TorchKernels.Instance;
            using (var contiguous = kernels is TorchKernels || gradient.is_contiguous() ? null : gradient.contiguous())
                kernels.AdafactorStatistics(contiguous ?? gradient, _row, _col!, new AdafactorScalars(beta2t, c.Eps1));
            var rowFactor = _row.div(_row.mean([-1], keepdim: true)).rsqrt_().unsqueeze(-1);
            var colFactor = _col!.unsqueeze(-2).rsqrt();
            update = rowFactor.mul(colFactor).mul_(gradient);
        }
        else
        {
            using var q = gradient.square().add_(c.Eps1);
            _expAvgSq!.mul_(beta2t).add_(q, alpha: 1 - beta2t);
            update = _expAvgSq.rsqrt().mul_(gradient);
        }
        update.div_(Rms(update).div_(c.ClipThreshold).clamp_(min: 1.0));
        update.mul_(lr);
        if (c.Beta1 is double b1)
        {
            _expAvg!.mul_(b1).add_(update, alpha: 1 - b1);
            update = _expAvg;
        }
        return new RuleUpdate(update, 1.0, lr);
    }

    /// <summary>RMS(x) = ‖x‖₂ / √numel(x), as a 0-dim tensor.</summary>
    internal static Tensor Rms(Tensor x) => x.norm().div_(Math.Sqrt(x.numel()));

    /// <inheritdoc />
    public void Save(StateWriter writer)
    {
        writer.Tensor("exp_avg_sq_row", _row);
        writer.Tensor("exp_avg_sq_col", _col);
        writer.Tensor("exp_avg_sq", _expAvgSq);
        writer.Tensor("exp_avg", _expAvg);
    }

    /// <inheritdoc />
    public void Load(StateReader reader)
    {
        StateTensors.Load(reader, "exp_avg_sq_row", ref _row);
        StateTensors.Load(reader, "exp_avg_sq_col", ref _col);
        StateTensors.Load(reader, "exp_avg_sq", ref _expAvgSq);
        StateTensors.Load(reader, "exp_avg", ref _expAvg);
    }

    /// <inheritdoc />
    public void MoveTo(Device device)
    {
        StateTensors.MoveTo(ref _row, device);
        StateTensors.MoveTo(ref _col, device);
        StateTensors.MoveTo(ref _expAvgSq, device);
        StateTensors.MoveTo(ref _expAvg, device);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _row?.Dispose(); _col?.Dispose(); _expAvgSq?.Dispose(); _expAvg?.Dispose();
        _row = _col = _expAvgSq = _expAvg = null;
    }
}
