using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// SGD with optional heavy-ball momentum, as torch.optim.SGD (the tests' linear anchor; docs/design.md): b ← μ·b + (1 − dampening)·g (b = g on the
/// first step), direction b (or g + μ·b with Nesterov). A linear rule: with a full-rank orthonormal
/// projection it equals the unprojected rule, which the tests use as an anchor.
/// </summary>
/// <param name="Momentum">μ in [0, 1); 0 keeps no state.</param>
/// <param name="Dampening">In [0, 1].</param>
/// <param name="Nesterov">Nesterov momentum; needs μ &gt; 0 and dampening 0.</param>
public sealed record SgdConfig(double Momentum = 0.0, double Dampening = 0.0, bool Nesterov = false) : IUpdateRuleConfig
{
    /// <summary>
    /// The saved fields: entry names, constraints, order (the checkpoint format). Hyperparameters (changeable after
    /// construction, restored by a load): momentum's value, dampening; structural: whether momentum is 0, nesterov.
    /// </summary>
    internal static readonly ConfigSchema<SgdConfig> Schema = new ConfigSchema<SgdConfig>(new())
        .Double("momentum", c => c.Momentum, (c, v) => c with { Momentum = v }, Check.UnitInterval)
            .Hyperparameter(v => (double)v! != 0, "whether momentum is 0 decides whether a momentum buffer is kept")
        .Double("dampening", c => c.Dampening, (c, v) => c with { Dampening = v }, Check.ClosedUnitInterval).Hyperparameter()
        .Bool("nesterov", c => c.Nesterov, (c, v) => c with { Nesterov = v });

    /// <summary>The gradient's dtype, except float16, which is computed in float32 (as every rule does).</summary>
    /// <param name="gradientType">The gradient's dtype.</param>
    public ScalarType WorkingType(ScalarType gradientType) => gradientType == ScalarType.Float16 ? ScalarType.Float32 : gradientType;

    /// <inheritdoc />
    public IUpdateRule Create(long[] shape, ScalarType dtype, Device device) => new SgdRule(DeclareState(shape, dtype), device);

    /// <inheritdoc />
    public StateDeclaration DeclareState(long[] shape, ScalarType dtype) => SgdRule.Declare(shape, Momentum != 0, dtype);

    /// <inheritdoc />
    public void Validate(string where)
    {
        Schema.Validate(this, where);
        if (Nesterov && (Momentum <= 0 || Dampening != 0))
            throw new ArgumentException($"{where}: nesterov = true needs momentum > 0 and dampening = 0 (momentum {Momentum}, dampening {Dampening}).", "nesterov");
    }

    /// <inheritdoc />
    public void Save(StateWriter writer) => Schema.Save(this, writer);
}
