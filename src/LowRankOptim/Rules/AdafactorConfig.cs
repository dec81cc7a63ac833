using LowRankOptim.Kernels;
using LowRankOptim.Linalg;
using LowRankOptim.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Rules;

/// <summary>
/// Adafactor (Shazeer &amp; Stern 2018, as in Hugging Face and galore_torch): a factored second moment
/// (row and column statistics of g² + ε1) for tensors with ≥ 2 dims, RMS clipping of the update, a
/// relative step size and optional first-moment momentum on the already scaled update. Computes in float32.
/// </summary>
/// <param name="Beta1">Momentum β1 in [0, 1), or null for none (the default, which keeps no first moment).</param>
/// <param name="Eps1">ε1 &gt; 0, added to g² (regularizes the second moment).</param>
/// <param name="Eps2">ε2 ≥ 0, lower bound of the parameter scale RMS(W) when <see cref="ScaleParameter"/>.</param>
/// <param name="ClipThreshold">d &gt; 0: the update is divided by max(1, RMS(update)/d).</param>
/// <param name="DecayRate">c &lt; 0: β2,k = 1 − kᶜ.</param>
/// <param name="RelativeStep">Use lr_k = min(1e-2, 1/√k) (or 1e-6·k with <see cref="WarmupInit"/>) instead of the group lr, which must then be unset.</param>
/// <param name="ScaleParameter">Multiply lr_k by max(ε2, RMS(W)).</param>
/// <param name="WarmupInit">Relative step grows as 1e-6·k; needs <see cref="RelativeStep"/>.</param>
/// <param name="Kernel">
/// Which kernels compute the factored row and column statistics (see <see cref="KernelPreference"/> and
/// docs/kernels.md). An execution choice, not part of the math: it is not written to checkpoints.
/// </param>
public sealed record AdafactorConfig(
    double? Beta1 = null,
    double Eps1 = 1e-30,
    double Eps2 = 1e-3,
    double ClipThreshold = 1.0,
    double DecayRate = -0.8,
    bool RelativeStep = true,
    bool ScaleParameter = true,
    bool WarmupInit = false,
    KernelPreference Kernel = KernelPreference.Auto) : IUpdateRuleConfig
{
    /// <inheritdoc />
    public ScalarType WorkingType(ScalarType gradientType) => ScalarType.Float32;

    /// <inheritdoc />
    public IUpdateRule Create(long[] shape, ScalarType dtype, Device device) => new AdafactorRule(shape, Beta1.HasValue, dtype, device, Kernel);

    /// <inheritdoc />
    public long PlannedStateBytes(long[] shape, ScalarType dtype)
    {
        var n = DTypes.Elements(shape);
        var second = shape.Length >= 2 ? n / shape[^1] + n / shape[^2] : n; // row + column statistics, or full V
        return (second + (Beta1.HasValue ? n : 0)) * DTypes.ElementSize(dtype);
    }

    /// <inheritdoc />
    public void Validate(string where)
    {
        if (Beta1 is double b1) RuleChecks.UnitInterval("beta1", b1, where);
        if (!(Eps1 > 0)) throw new ArgumentOutOfRangeException("eps1", Eps1, $"{where}: eps1 must be > 0.");
        if (!(Eps2 >= 0)) throw new ArgumentOutOfRangeException("eps2", Eps2, $"{where}: eps2 must be >= 0.");
        if (!(ClipThreshold > 0)) throw new ArgumentOutOfRangeException("clip_threshold", ClipThreshold, $"{where}: clip_threshold must be > 0.");
        if (!(DecayRate < 0)) throw new ArgumentOutOfRangeException("decay_rate", DecayRate, $"{where}: decay_rate must be < 0 (β2,k = 1 − k^decay_rate).");
        RuleChecks.Defined("kernel", Kernel, where);
        if (WarmupInit && !RelativeStep) throw new ArgumentException($"{where}: warmup_init = true requires relative_step = true.", "warmup_init");
    }

    /// <inheritdoc />
    public IUpdateRuleConfig WithExecutionPolicyOf(IUpdateRuleConfig current) => current is AdafactorConfig c ? this with { Kernel = c.Kernel } : this;

    /// <inheritdoc />
    public void Save(StateWriter writer)
    {
        writer.OptionalDouble("beta1", Beta1);
        writer.Double("eps1", Eps1);
        writer.Double("eps2", Eps2);
        writer.Double("clip_threshold", ClipThreshold);
        writer.Double("decay_rate", DecayRate);
        writer.Bool("relative_step", RelativeStep);
        writer.Bool("scale_parameter", ScaleParameter);
        writer.Bool("warmup_init", WarmupInit);
    }

    internal static AdafactorConfig Read(StateReader reader) => new(
        reader.OptionalDouble("beta1"), reader.Double("eps1"), reader.Double("eps2"), reader.Double("clip_threshold"),
        reader.Double("decay_rate"), reader.Bool("relative_step"), reader.Bool("scale_parameter"), reader.Bool("warmup_init"));

    /// <summary>lr_k of step k (Hugging Face's <c>_get_lr</c>).</summary>
    internal double StepLearningRate(in RuleContext context)
    {
        double lr = context.LearningRate;
        if (RelativeStep) lr = Math.Min(WarmupInit ? 1e-6 * context.Step : 1e-2, 1 / Math.Sqrt(context.Step));
        if (ScaleParameter) lr *= Math.Max(Eps2, context.ParameterRms());
        return lr;
    }
}

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
