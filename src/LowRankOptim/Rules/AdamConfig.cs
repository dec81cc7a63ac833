using LowRankOptim.Kernels;
using LowRankOptim.Linalg;
using LowRankOptim.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Rules;

/// <summary>Where Adam's ε enters the denominator.</summary>
public enum AdamEpsilonMode
{
    /// <summary>torch.optim: m̂ / (√v̂ + ε), i.e. ε added after bias correction.</summary>
    AfterBiasCorrection,
    /// <summary>galore_torch / Hugging Face AdamW: ε added to the uncorrected √v, i.e. m̂ / (√v̂ + ε/√(1−β2ᵏ)).</summary>
    BeforeBiasCorrection,
}

/// <summary>
/// Adam moments on the (projected) gradient: m ← β1m + (1−β1)g, v ← β2v + (1−β2)g²; direction m/(√v + ε)
/// with the bias corrections and ε placement of <see cref="EpsMode"/>. Moments take the gradient's dtype.
/// </summary>
/// <param name="Beta1">β1 in [0, 1).</param>
/// <param name="Beta2">β2 in [0, 1).</param>
/// <param name="Eps">ε ≥ 0.</param>
/// <param name="CorrectBias">Apply the bias corrections 1−β1ᵏ and 1−β2ᵏ.</param>
/// <param name="EpsMode">Where ε is added.</param>
/// <param name="Kernel">
/// Which kernels run the fused moment update and direction (see <see cref="KernelPreference"/> and
/// docs/kernels.md). An execution choice, not part of the math: it is not written to checkpoints.
/// </param>
public sealed record AdamConfig(
    double Beta1 = 0.9,
    double Beta2 = 0.999,
    double Eps = 1e-8,
    bool CorrectBias = true,
    AdamEpsilonMode EpsMode = AdamEpsilonMode.AfterBiasCorrection,
    KernelPreference Kernel = KernelPreference.Auto) : IBetasRuleConfig
{
    /// <inheritdoc />
    public (double Beta1, double Beta2) Betas => (Beta1, Beta2);

    /// <inheritdoc />
    public IUpdateRuleConfig WithBetas(double beta1, double beta2) => this with { Beta1 = beta1, Beta2 = beta2 };

    /// <inheritdoc />
    public ScalarType WorkingType(ScalarType gradientType) => gradientType;

    /// <inheritdoc />
    public IUpdateRule Create(long[] shape, ScalarType dtype, Device device) => new AdamRule(shape, dtype, device, Kernel);

    /// <inheritdoc />
    public long PlannedStateBytes(long[] shape, ScalarType dtype) => 2 * DTypes.Elements(shape) * DTypes.ElementSize(dtype);

    /// <inheritdoc />
    public void Validate(string where)
    {
        RuleChecks.UnitInterval("beta1", Beta1, where);
        RuleChecks.UnitInterval("beta2", Beta2, where);
        if (!(Eps >= 0) || double.IsInfinity(Eps)) throw new ArgumentOutOfRangeException("eps", Eps, $"{where}: eps must be finite and >= 0.");
        RuleChecks.Defined(nameof(EpsMode), EpsMode, where);
        RuleChecks.Defined("kernel", Kernel, where);
    }

    /// <inheritdoc />
    public IUpdateRuleConfig WithExecutionPolicyOf(IUpdateRuleConfig current) => current is AdamConfig c ? this with { Kernel = c.Kernel } : this;

    /// <inheritdoc />
    public void Save(StateWriter writer)
    {
        writer.Double("beta1", Beta1);
        writer.Double("beta2", Beta2);
        writer.Double("eps", Eps);
        writer.Bool("correct_bias", CorrectBias);
        writer.Long("eps_mode", (long)EpsMode);
    }

    internal static AdamConfig Read(StateReader reader) => new(
        reader.Double("beta1"), reader.Double("beta2"), reader.Double("eps"), reader.Bool("correct_bias"),
        (AdamEpsilonMode)reader.Long("eps_mode"));
}

/// <summary>The per-parameter state of <see cref="AdamConfig"/>: exp_avg and exp_avg_sq.</summary>
public sealed class AdamRule : IUpdateRule
{
    private readonly ScalarType _dtype;
    private Tensor? _expAvg;
    private Tensor? _expAvgSq;
    private readonly KernelChoice _kernels = new(KernelOperation.AdamDirection);
    private readonly KernelChoice _updateKernels = new(KernelOperation.AdamUpdate);

    internal AdamRule(long[] shape, ScalarType dtype, Device device, KernelPreference kernel = KernelPreference.Auto)
    {
        _dtype = dtype;
        _kernels.For(kernel, device, dtype); // an explicit choice that cannot be honoured fails here, with the reason
        _expAvg = StateTensors.Zeros(shape, dtype, device);
        _expAvgSq = StateTensors.Zeros(shape, dtype, device);
    }

    /// <summary>The first moment m.</summary>
    public Tensor ExpAvg => _expAvg!;
    /// <summary>The second moment v.</summary>
    public Tensor ExpAvgSq => _expAvgSq!;

    /// <inheritdoc />
    public long StateBytes => StateTensors.Bytes(_expAvg) + StateTensors.Bytes(_expAvgSq);

    /// <inheritdoc />
    public RuleUpdate Compute(Tensor gradient, in RuleContext context)
    {
        var c = RuleChecks.ConfigAs<AdamConfig>(context.Config);
        var kernels = gradient.dtype == _dtype
            ? _kernels.ForCall(c.Kernel, ExpAvg.device, _dtype, gradient, ExpAvg, ExpAvgSq)
            : TorchKernels.Instance;
        using var contiguous = kernels is TorchKernels || gradient.is_contiguous() ? null : gradient.contiguous();
        return Update(c, contiguous ?? gradient, ExpAvg, ExpAvgSq, context.Step, context.LearningRate, kernels);
    }

    /// <summary>
    /// The full-space step in one pass (moments and weights, no direction tensor), in torch.optim.AdamW's
    /// order, so that with torch conventions it equals TorchSharp's AdamW. Declines only for a parameter
    /// whose dtype differs from the moments' or, under an explicit kernel choice, a parameter whose layout the
    /// kernels cannot take (the optimizer then goes through <see cref="Compute"/>).
    /// </summary>
    public bool TryUpdateInPlace(Tensor parameter, Tensor gradient, in RuleContext context, out double decayLearningRate)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        ArgumentNullException.ThrowIfNull(gradient);
        var c = RuleChecks.ConfigAs<AdamConfig>(context.Config);
        var lr = decayLearningRate = context.LearningRate;
        if (parameter.dtype != _dtype || gradient.dtype != _dtype) return false;
        var kernels = _updateKernels.ForCall(c.Kernel, ExpAvg.device, _dtype, gradient, ExpAvg, ExpAvgSq, parameter);
        if (!kernels.Accepts(parameter)) return false; // an explicit kernel choice and a strided parameter: Compute's path
        using var contiguous = kernels is TorchKernels || gradient.is_contiguous() ? null : gradient.contiguous();
        var (scalars, coefficient) = Scalars(c, context.Step, lr);
        kernels.AdamUpdate(contiguous ?? gradient, ExpAvg, ExpAvgSq, scalars with { StepSize = coefficient, DecayFactor = context.Decay.FactorBeforeUpdate(lr) }, parameter);
        return true;
    }

    /// <summary>
    /// One Adam step on moments <paramref name="expAvg"/>, <paramref name="expAvgSq"/> (updated in place) at
    /// 1-based step <paramref name="k"/> with <paramref name="kernels"/> (the reference when null); shared with
    /// other moment sets that follow the group's Adam config (GaLore+'s sparse residual).
    /// </summary>
    internal static RuleUpdate Update(AdamConfig c, Tensor gradient, Tensor expAvg, Tensor expAvgSq, long k, double lr, IOptimizerKernels? kernels = null)
    {
        kernels ??= TorchKernels.Instance;
        var (scalars, coefficient) = Scalars(c, k, lr);
        return new RuleUpdate(kernels.AdamDirection(gradient, expAvg, expAvgSq, scalars), coefficient, lr);
    }

    /// <summary>The kernel scalars of step <paramref name="k"/> and the coefficient c of W ← W − c·direction.</summary>
    private static (AdamScalars Scalars, double Coefficient) Scalars(AdamConfig c, long k, double lr)
    {
        double bc1 = c.CorrectBias ? 1 - Math.Pow(c.Beta1, k) : 1;
        double bc2 = c.CorrectBias ? 1 - Math.Pow(c.Beta2, k) : 1;
        return c.EpsMode == AdamEpsilonMode.AfterBiasCorrection
            // torch.optim.AdamW: p −= (η / bc1) · m / (√v / √bc2 + ε)
            ? (new AdamScalars(c.Beta1, c.Beta2, c.Eps, Math.Sqrt(bc2)), lr / bc1)
            // galore_torch: p −= η·√bc2/bc1 · m / (√v + ε)
            : (new AdamScalars(c.Beta1, c.Beta2, c.Eps, 1.0), lr * Math.Sqrt(bc2) / bc1);
    }

    /// <summary>The kernels this rule's state currently runs on (for tests and logs).</summary>
    internal IOptimizerKernels Kernels(KernelPreference preference) => _kernels.For(preference, ExpAvg.device, _dtype);

    /// <inheritdoc />
    public void Save(StateWriter writer)
    {
        writer.Tensor("exp_avg", _expAvg);
        writer.Tensor("exp_avg_sq", _expAvgSq);
    }

    /// <inheritdoc />
    public void Load(StateReader reader)
    {
        StateTensors.Load(reader, "exp_avg", ref _expAvg);
        StateTensors.Load(reader, "exp_avg_sq", ref _expAvgSq);
    }

    /// <inheritdoc />
    public void MoveTo(Device device)
    {
        StateTensors.MoveTo(ref _expAvg, device);
        StateTensors.MoveTo(ref _expAvgSq, device);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _expAvg?.Dispose();
        _expAvgSq?.Dispose();
        _expAvg = _expAvgSq = null;
    }
}
