using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The subspace of <see cref="OnlinePcaProjection"/>: P (U_r-like m×r on the left, V_rᵀ-like r×n on the
/// right) from one SVD, then one step of P's own optimizer after every weight step from step 2 on.
/// P is not re-orthonormalized (as the reference). State: P, P's rule state and its step count.
/// </summary>
internal sealed class OnlinePcaSubspace : BasisSubspace, ISubspace
{
    private readonly OnlinePcaProjection _config;
    private readonly IUpdateRule _rule;
    private readonly CounterSlot _basisSteps;

    internal OnlinePcaSubspace(OnlinePcaProjection config, MatrixShape matrix, ProjectionSide side, long rank, ScalarType dtype, Device device)
        : base(config.DeclareState(matrix, dtype), matrix, side, rank, config.UpdateProjGap, config.Scale, dtype, device)
    {
        _config = config;
        _basisSteps = State.Counter("basis_steps");
        _rule = config.BasisRule.Create(OnlinePcaProjection.BasisShape(side, matrix, rank), config.BasisRule.WorkingType(dtype), device);
        State.Attach("basis_rule", _rule.State);
    }

    /// <summary>P's optimizer steps taken (j of its last step).</summary>
    public long BasisSteps => _basisSteps.Value;

    /// <summary>P: the m×r left basis or the r×n right basis (null before the first step).</summary>
    public Tensor? Basis => Side == ProjectionSide.Left ? Left : Right;

    /// <summary>P's update-rule state (its moments).</summary>
    public IUpdateRule BasisRuleState => _rule;

    /// <summary>P moves after every step (<see cref="AfterUpdate"/>).</summary>
    public bool UpdatesBasisAfterEveryStep => true;

    /// <summary>True: P's step after the update reads the gradient (its norm and R̂ᵀĜ).</summary>
    public override bool ReadsGradientAfterProjection => true;

    /// <summary>Only the first step computes a basis (by SVD); afterwards P moves by <see cref="AfterUpdate"/>.</summary>
    public override bool NeedsRefresh(long step) => RefreshSchedule.FirstStepOnly.IsDue(step, HasBasis);

    /// <inheritdoc />
    protected override (Tensor? Left, Tensor? Right) EstimateBasis(Tensor gradient, long refreshIndex, in SubspaceContext context) =>
        SvdSubspace.TopSingularVectors(gradient, Rank, NeedsLeft, NeedsRight);

    /// <summary>The whole gradient at every step: P's step reads G (through ‖G‖ and R̂ᵀĜ, which are not linear in G).</summary>
    public override GradientExchange Exchange(long step) => GradientExchange.Full;

    /// <summary>
    /// From step 2 on: ∇L at the current P from the step's gradient G and its projection R (= G·Pᵀ or PᵀG),
    /// then one step of P's optimizer with η_P = (1/T)·(η_k/η_0) (η_k/η_0 = 1 when η_0 = 0) and decoupled
    /// decay λ_P. A zero gradient gives a zero loss gradient (Ĝ = 0); a non-finite one leaves P unchanged.
    /// </summary>
    public override void AfterUpdate(Tensor gradient, Tensor projected, in SubspaceContext context)
    {
        if (context.Step <= 1 || Basis is not { } p) return; // step 1 only initializes P
        using var scope = NewDisposeScope();
        // Reductions accumulate in float32 or wider even for bf16/fp16 inputs: no full-size copy needed.
        var norm = gradient.norm().to(ScalarType.Float64).item<double>();
        if (!double.IsFinite(norm))
            throw new SubspaceRefreshException("the gradient has non-finite entries; P keeps its value");
        var ruleType = _config.BasisRule.WorkingType(p.dtype);
        var grad = LossGradient(p, gradient, projected, Side, norm > 0 ? 1.0 / norm : 0.0).to(ruleType);

        var ratio = context.InitialLearningRate != 0 ? context.LearningRate / context.InitialLearningRate : 1.0;
        var lr = ratio / _config.UpdateProjGap;
        var decay = new WeightDecayPolicy(_config.BasisWeightDecay, WeightDecayOrder.BeforeUpdate);
        var update = _rule.Compute(grad, new RuleContext(++_basisSteps.Value, lr, _config.BasisRule, () => Rms.OfParameter(p), decay));
        decay.ApplyBeforeUpdate(p, update.DecayLearningRate);
        using var alpha = (-update.Coefficient).ToScalar();
        p.add_(update.Direction.to(p.dtype), alpha: alpha);
    }

    /// <summary>
    /// The gradient of the online-PCA loss at P, in closed form without any m×m or n×n intermediate, given
    /// the gradient G, its projection R and c = 1/‖G‖_F (Ĝ = c·G, R̂ = c·R):
    /// right (P r×n, R = G·Pᵀ): ∇ = 2·[(R̂ᵀR̂)·P + (PPᵀ)·(R̂ᵀĜ) − 2·R̂ᵀĜ];
    /// left (P m×r, R = Pᵀ·G): ∇ = 2·[P·(R̂R̂ᵀ) + (ĜR̂ᵀ)·(PᵀP) − 2·ĜR̂ᵀ].
    /// Equal to 2P[(A−I)C + C(A−I)] with A = PᵀP, C = ĜᵀĜ (right; the spec's form), at cost O(m·n·r):
    /// only R̂ is scaled, Ĝ enters through one product whose r-sized result is scaled.
    /// </summary>
    internal static Tensor LossGradient(Tensor p, Tensor gradient, Tensor projected, ProjectionSide side, double inverseNorm)
    {
        Tensor result;
        using (var scope = NewDisposeScope())
        {
            using var scale = inverseNorm.ToScalar();
            using var minusTwo = (-2).ToScalar();
            using var two = 2.ToScalar();
            var g = gradient.to(p.dtype);
            var r = projected.to(p.dtype).mul(scale);
            if (side == ProjectionSide.Right)
            {
                var b = r.t().mm(g).mul_(scale);   // R̂ᵀĜ (r×n)
                result = r.t().mm(r).mm(p)               // (R̂ᵀR̂) P
                    .add_(p.mm(p.t()).mm(b))             // + (PPᵀ) R̂ᵀĜ
                    .add_(b, alpha: minusTwo);
            }
            else
            {
                var b = g.mm(r.t()).mul_(scale);   // ĜR̂ᵀ (m×r)
                result = p.mm(r.mm(r.t()))               // P (R̂R̂ᵀ)
                    .add_(b.mm(p.t().mm(p)))             // + ĜR̂ᵀ (PᵀP)
                    .add_(b, alpha: minusTwo);
            }
            result = result.mul_(two).MoveToOuterDisposeScope();
        }
        return result;
    }
}
