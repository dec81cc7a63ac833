using LowRankOptim.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// Adam moments on the (projected) gradient: m ← β1m + (1−β1)g, v ← β2v + (1−β2)g²; direction m/(√v + ε)
/// with the bias corrections and ε placement of <see cref="EpsMode"/>. Moments take the gradient's dtype (float32 for
/// float16 gradients; both conventions: docs/algorithms/galore.md).
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
    /// <summary>
    /// The saved fields: entry names, constraints, order (the checkpoint format). Hyperparameters (changeable after
    /// construction, restored by a load): beta1, beta2, eps; structural: correct_bias, eps_mode.
    /// </summary>
    internal static readonly ConfigSchema<AdamConfig> Schema = new ConfigSchema<AdamConfig>(new())
        .Double("beta1", c => c.Beta1, (c, v) => c with { Beta1 = v }, Check.UnitInterval).Hyperparameter()
        .Double("beta2", c => c.Beta2, (c, v) => c with { Beta2 = v }, Check.UnitInterval).Hyperparameter()
        .Double("eps", c => c.Eps, (c, v) => c with { Eps = v }, Check.FiniteNonNegative).Hyperparameter()
        .Bool("correct_bias", c => c.CorrectBias, (c, v) => c with { CorrectBias = v })
        .Enum("eps_mode", c => c.EpsMode, (c, v) => c with { EpsMode = v }, option: nameof(EpsMode))
        .ExecutionPolicy("kernel", c => c.Kernel);

    /// <inheritdoc />
    public (double Beta1, double Beta2) Betas => (Beta1, Beta2);

    /// <inheritdoc />
    public IUpdateRuleConfig WithBetas(double beta1, double beta2) => this with { Beta1 = beta1, Beta2 = beta2 };

    /// <summary>
    /// The gradient's dtype, except float16, which is computed in float32: ε (1e-8) and squares of ordinary gradients
    /// are outside float16's range, so moments kept in float16 would turn the update into NaN or ∞.
    /// </summary>
    /// <param name="gradientType">The gradient's dtype.</param>
    public ScalarType WorkingType(ScalarType gradientType) => gradientType == ScalarType.Float16 ? ScalarType.Float32 : gradientType;

    /// <inheritdoc />
    public IUpdateRule Create(long[] shape, ScalarType dtype, Device device) => new AdamRule(DeclareState(shape, dtype), dtype, device, Kernel);

    /// <inheritdoc />
    public StateDeclaration DeclareState(long[] shape, ScalarType dtype) => AdamRule.Declare(shape, dtype);

    /// <inheritdoc />
    public void Validate(string where) => Schema.Validate(this, where);

    /// <inheritdoc />
    public IUpdateRuleConfig WithExecutionPolicyOf(IUpdateRuleConfig current) => current is AdamConfig c ? this with { Kernel = c.Kernel } : this;

    /// <inheritdoc />
    public void Save(StateWriter writer) => Schema.Save(this, writer);
}
