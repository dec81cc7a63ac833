using LowRankOptim.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// One parameter's step as it moves through the phases of <see cref="StepEngine"/>: what each phase produced
/// for the next. Lives for one step, inside the caller's dispose scope.
/// </summary>
internal sealed class ParameterStep(LowRankParameterState state, Parameter parameter, Tensor gradient, LowRankOptions options)
{
    public LowRankParameterState State { get; } = state;
    public Parameter Parameter { get; } = parameter;
    /// <summary>The gradient as given (prepare turns it into <see cref="Working"/>).</summary>
    public Tensor Gradient { get; private set; } = gradient;
    public LowRankOptions Options { get; } = options;

    /// <summary>k, the 1-based step being taken.</summary>
    public long Step { get; set; }
    public WeightDecayPolicy Decay { get; set; }
    /// <summary>The gradient in the rule's working dtype, L2 decay added (prepare).</summary>
    public Tensor Working { get; set; } = null!;
    /// <summary>The working gradient as the subspace's matrix (prepare), null in the full space.</summary>
    public Tensor? Matrix { get; set; }
    public MatrixShape View { get; set; }
    /// <summary>R: the rule's input (project; the refresh may have computed it).</summary>
    public Tensor? Projected { get; set; }
    public RuleContext Rule { get; set; }
    public SubspaceContext Subspace { get; set; }
    /// <summary>What the refresh observer kept before this step's refresh succeeded; null when there was none or it is not interested.</summary>
    public object? Refreshed { get; set; }
    /// <summary>Set when this parameter takes no update this step (a failed first refresh, an unusable gradient).</summary>
    public bool Skipped { get; set; }
    /// <summary>
    /// ‖G‖ of the working gradient for the screen (NaN or ∞ when an entry is not finite): this rank's own for a projected
    /// exchange, combined over the ranks before the screen decides, so that every rank skips the same steps.
    /// </summary>
    public double GradientNorm { get; set; }
    /// <summary>Why the gradient was unusable (not finite, or its squares could overflow), when it was; the step was skipped.</summary>
    public string? Unusable { get; set; }
    /// <summary>The rule's result (update), unless the rule updated the weights itself.</summary>
    public RuleUpdate Update { get; set; }
    /// <summary>True when the rule's fused path already wrote the weights (update); apply then adds only after-update decay.</summary>
    public bool WeightsUpdated { get; set; }
    /// <summary>
    /// How the new weights are rounded (prepare): stochastic, with this step's key, for a bfloat16 parameter of a group
    /// with <see cref="WeightRounding.Stochastic"/>; nearest (the dtype's own arithmetic) otherwise.
    /// </summary>
    public Rounding WeightRounding { get; set; }
    /// <summary>True when the new weights are rounded stochastically (<see cref="RoundedWeightUpdate"/>).</summary>
    public bool RoundsStochastically => WeightRounding.Mode == StateRounding.Stochastic;
    /// <summary>η_d of the step's decay.</summary>
    public double DecayLearningRate { get; set; }
    /// <summary>Data parallel: what this step sums over ranks (set by the communication before the refresh phase).</summary>
    public GradientExchange Exchange { get; set; } = GradientExchange.Full;
    /// <summary>
    /// Data parallel with sharded optimizer state: false when another rank holds this parameter's rule state, so
    /// this rank neither runs the rule nor applies a full-space update (it receives the result).
    /// </summary>
    public bool Owned { get; set; } = true;

    /// <summary>
    /// After <see cref="StepEngine.Gather"/>: sets R to <paramref name="projected"/> (the per-layer mode's sum of
    /// the micro-batches' projections) and forgets the full gradient, so that only R is kept until
    /// <see cref="StepEngine.Finish"/>. Only for a subspace whose <see cref="ISubspace.ReadsGradientAfterProjection"/>
    /// is false: apply and after then get no gradient matrix.
    /// </summary>
    public void KeepOnlyProjected(Tensor projected)
    {
        Projected = projected;
        Gradient = null!;
        Working = null!;
        Matrix = null;
    }
}
