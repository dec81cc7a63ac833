using LowRankOptim.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// SMMF (Park &amp; Lee, AAAI 2025): square-matricized momentum factorization. Every tensor, whatever its
/// rank, is viewed as a near-square n̂×m̂ matrix by its element count; the state is the rank-1 factors of
/// |M| and of V (row sums and normalized column sums, float32) and the sign of M at 1 bit per element.
/// Per step k: M = β1,k·M̂ + (1−β1,k)·G and V = β2,k·V̂ + (1−β2,k)·G² from the decompressed M̂, V̂, with
/// β1,k = β·g^(k−1) and β2,k = 1 − k^c; both are compressed back into the state, and the direction is
/// U = M/(√V + ε) from the uncompressed moments (G/(√V + ε) without β). No bias correction. See
/// docs/algorithms/smmf.md for the math, the packing, the fused kernel and the deviations from the reference.
/// </summary>
/// <param name="Beta">β in [0, 1), or null to keep no first moment (the direction is then G/(√V + ε)).</param>
/// <param name="Eps">ε ≥ 0, added to √V.</param>
/// <param name="DecayRate">c ≤ 0: β2,k = 1 − k^c (so β2,1 = 0). The reference suggests −0.5 for CNNs, −0.8 for Transformers.</param>
/// <param name="GrowthRate">g in [0, 1]: β1,k = β·g^(k−1).</param>
/// <param name="VectorReshape">
/// When false, a tensor with exactly one dimension of size &gt; 1 keeps full (unfactorized) M and V of its
/// own shape instead of being square-matricized; scalars and everything else are always factorized.
/// </param>
/// <param name="Kernel">
/// The fused CPU kernel, the fused CUDA kernel or the TorchSharp-ops reference (see <see cref="KernelPreference"/>):
/// Auto runs the CPU kernel for float32 CPU state, the CUDA kernel for float32 CUDA state when CUDA kernels can
/// run in this process, else the reference.
/// </param>
public sealed record SmmfConfig(
    double? Beta = 0.9,
    double Eps = 1e-8,
    double DecayRate = -0.5,
    double GrowthRate = 0.999,
    bool VectorReshape = true,
    KernelPreference Kernel = KernelPreference.Auto) : IUpdateRuleConfig
{
    /// <summary>
    /// The saved fields: entry names, constraints, order (the checkpoint format). Files written before execution
    /// policy left checkpoints hold a 'kernel' entry after vector_reshape: read and ignored. Hyperparameters
    /// (changeable after construction, restored by a load): beta's value, eps, decay_rate, growth_rate; structural:
    /// whether beta is set, vector_reshape.
    /// </summary>
    internal static readonly ConfigSchema<SmmfConfig> Schema = new ConfigSchema<SmmfConfig>(new())
        .OptionalDouble("beta", c => c.Beta, (c, v) => c with { Beta = v }, Check.UnitInterval)
            .Hyperparameter(v => v is not null, "whether beta is set decides whether a first moment is kept")
        .Double("eps", c => c.Eps, (c, v) => c with { Eps = v }, Check.FiniteNonNegative).Hyperparameter()
        .Double("decay_rate", c => c.DecayRate, (c, v) => c with { DecayRate = v },
            Check.FiniteNonPositive.Because("β2,k = 1 − k^decay_rate must lie in [0, 1)")).Hyperparameter()
        .Double("growth_rate", c => c.GrowthRate, (c, v) => c with { GrowthRate = v },
            Check.ClosedUnitInterval.Because("β1,k = beta·growth_rate^(k−1) must stay below 1")).Hyperparameter()
        .Bool("vector_reshape", c => c.VectorReshape, (c, v) => c with { VectorReshape = v })
        .ExecutionPolicy("kernel", c => c.Kernel, savedByEarlierReleases: true);

    /// <summary>Float32 (also for bf16 and fp16 parameters, as the reference), float64 for float64 parameters.</summary>
    /// <param name="gradientType">The dtype of the parameter and its gradient.</param>
    public ScalarType WorkingType(ScalarType gradientType) => gradientType == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    /// <inheritdoc />
    public IUpdateRule Create(long[] shape, ScalarType dtype, Device device) => new SmmfRule(DeclareState(shape, dtype), shape, this, dtype, device);

    /// <inheritdoc />
    public StateDeclaration DeclareState(long[] shape, ScalarType dtype) => SmmfRule.Declare(shape, Factorizes(shape), Beta.HasValue, dtype);

    /// <inheritdoc />
    public void Validate(string where) => Schema.Validate(this, where);

    /// <inheritdoc />
    public IUpdateRuleConfig WithExecutionPolicyOf(IUpdateRuleConfig current) => current is SmmfConfig c ? this with { Kernel = c.Kernel } : this;

    /// <inheritdoc />
    public void Save(StateWriter writer) => Schema.Save(this, writer);

    /// <summary>β1,k = β·g^(k−1) (0 without β) and β2,k = 1 − k^c for the 1-based step <paramref name="step"/>.</summary>
    internal (double Beta1, double Beta2) Decays(long step) =>
        (Beta is double beta ? beta * Math.Pow(GrowthRate, step - 1) : 0, 1 - Math.Pow(step, DecayRate));

    /// <summary>True when a tensor of <paramref name="shape"/> is square-matricized (see <see cref="VectorReshape"/>).</summary>
    internal bool Factorizes(long[] shape) => VectorReshape || shape.Count(d => d != 1) != 1;
}
