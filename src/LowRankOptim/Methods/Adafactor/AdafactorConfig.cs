using LowRankOptim.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// Adafactor (Shazeer &amp; Stern 2018, as in Hugging Face and galore_torch; docs/algorithms/galore.md): a factored second moment
/// (row and column statistics of g² + ε1) for tensors with ≥ 2 dims, RMS clipping of the update, a
/// relative step size and optional first-moment momentum on the already scaled update. Computes in float32.
/// </summary>
/// <param name="Beta1">Momentum β1 in [0, 1), or null for none (the default, which keeps no first moment).</param>
/// <param name="Eps1">ε1 &gt; 0 and finite, added to g² (regularizes the second moment).</param>
/// <param name="Eps2">ε2 ≥ 0 and finite, lower bound of the parameter scale RMS(W) when <see cref="ScaleParameter"/>.</param>
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
    /// <summary>
    /// The saved fields: entry names, constraints, order (the checkpoint format). Hyperparameters (changeable after
    /// construction, restored by a load): beta1's value, eps1, eps2, clip_threshold, decay_rate; structural: whether
    /// beta1 is set, relative_step, scale_parameter, warmup_init.
    /// </summary>
    internal static readonly ConfigSchema<AdafactorConfig> Schema = new ConfigSchema<AdafactorConfig>(new())
        .OptionalDouble("beta1", c => c.Beta1, (c, v) => c with { Beta1 = v }, Check.UnitInterval)
            .Hyperparameter(v => v is not null, "whether beta1 is set decides whether a first moment is kept")
        .Double("eps1", c => c.Eps1, (c, v) => c with { Eps1 = v }, Check.Positive).Hyperparameter()
        .Double("eps2", c => c.Eps2, (c, v) => c with { Eps2 = v }, Check.NonNegative).Hyperparameter()
        .Double("clip_threshold", c => c.ClipThreshold, (c, v) => c with { ClipThreshold = v }, Check.Positive).Hyperparameter()
        .Double("decay_rate", c => c.DecayRate, (c, v) => c with { DecayRate = v }, Check.Negative.Because("β2,k = 1 − k^decay_rate")).Hyperparameter()
        .Bool("relative_step", c => c.RelativeStep, (c, v) => c with { RelativeStep = v })
        .Bool("scale_parameter", c => c.ScaleParameter, (c, v) => c with { ScaleParameter = v })
        .Bool("warmup_init", c => c.WarmupInit, (c, v) => c with { WarmupInit = v })
        .ExecutionPolicy("kernel", c => c.Kernel);

    /// <inheritdoc />
    public ScalarType WorkingType(ScalarType gradientType) => ScalarType.Float32;

    /// <inheritdoc />
    public IUpdateRule Create(long[] shape, ScalarType dtype, Device device) => new AdafactorRule(DeclareState(shape, dtype), shape, dtype, device, Kernel);

    /// <inheritdoc />
    public StateDeclaration DeclareState(long[] shape, ScalarType dtype) => AdafactorRule.Declare(shape, Beta1.HasValue, dtype);

    /// <inheritdoc />
    public void Validate(string where)
    {
        Schema.Validate(this, where);
        // +∞ passes "> 0" and ">= 0"; it turns the second moment (eps1) or the step size (eps2) into ∞ and the update into NaN.
        if (double.IsInfinity(Eps1)) throw new ArgumentOutOfRangeException("eps1", Eps1, $"{where}: eps1 must be finite (it is added to the squared gradient).");
        if (double.IsInfinity(Eps2)) throw new ArgumentOutOfRangeException("eps2", Eps2, $"{where}: eps2 must be finite (it bounds the parameter scale from below).");
        if (WarmupInit && !RelativeStep) throw new ArgumentException($"{where}: warmup_init = true requires relative_step = true.", "warmup_init");
    }

    /// <inheritdoc />
    public IUpdateRuleConfig WithExecutionPolicyOf(IUpdateRuleConfig current) => current is AdafactorConfig c ? this with { Kernel = c.Kernel } : this;

    /// <inheritdoc />
    public void Save(StateWriter writer) => Schema.Save(this, writer);

    /// <summary>lr_k of step k (Hugging Face's <c>_get_lr</c>).</summary>
    internal double StepLearningRate(in RuleContext context)
    {
        double lr = context.LearningRate;
        if (RelativeStep) lr = Math.Min(WarmupInit ? 1e-6 * context.Step : 1e-2, 1 / Math.Sqrt(context.Step));
        if (ScaleParameter) lr *= Math.Max(Eps2, context.ParameterRms());
        return lr;
    }
}
