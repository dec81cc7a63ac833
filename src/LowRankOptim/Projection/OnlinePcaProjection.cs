using LowRankOptim.Linalg;
using LowRankOptim.Rules;
using LowRankOptim.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Projection;

/// <summary>
/// Online Subspace Descent (Liang et al., NeurIPS 2024, the reference's <c>proj_type="continuous"</c>): the
/// basis P is initialized once from the SVD of the first gradient (side as <see cref="ProjectionType.Std"/>)
/// and then follows the gradients by one optimizer step per weight step on the online-PCA loss
/// L(P) = ‖Ĝ·PᵀP − Ĝ‖²_F (right, P r×n) or ‖P·PᵀĜ − Ĝ‖²_F (left, P m×r), Ĝ = G/‖G‖_F, evaluated at the P
/// the weight step used. The loss gradient is computed in closed form in O(m·n·r) (<see cref="OnlinePcaSubspace.LossGradient"/>),
/// and P's optimizer is one of this library's update rules.
/// </summary>
/// <param name="Rank">r ≥ 1; clamped to min(m, n) for each matrix.</param>
/// <param name="UpdateProjGap">T ≥ 1: not a refresh period but the inverse of P's step size, η_P = (1/T)·(η_k/η_0).</param>
/// <param name="Scale">α &gt; 0, multiplies the back-projected update.</param>
/// <param name="Type">The side (<see cref="ProjectionType.Full"/> is not supported: P is one matrix).</param>
/// <param name="Tensors">Which parameters the projection applies to; the others use the full space.</param>
/// <param name="BasisRule">
/// P's optimizer (null: <c>torch.optim.AdamW</c>'s defaults, β = (0.9, 0.999), ε = 1e-8 added after bias
/// correction, as the reference). Any rule of the library may be used; its state is part of the checkpoint.
/// </param>
/// <param name="BasisWeightDecay">λ_P ≥ 0, P's decoupled weight decay P ← P·(1 − η_P·λ_P) before its step (reference: 0.01).</param>
public sealed record OnlinePcaProjection(
    int Rank = 128,
    int UpdateProjGap = 200,
    double Scale = 0.25,
    ProjectionType Type = ProjectionType.Std,
    TensorsProjected Tensors = TensorsProjected.MatricesOnly,
    IUpdateRuleConfig? BasisRule = null,
    double BasisWeightDecay = 0.01) : IProjectionConfig
{
    /// <summary>P's optimizer (never null: <see cref="AdamConfig"/>'s torch.optim defaults when none is given).</summary>
    public IUpdateRuleConfig BasisRule { get; init; } = BasisRule ?? new AdamConfig();

    /// <inheritdoc />
    public MatrixShape? MatrixViewOf(long[] shape) => MatrixSides.ViewOf(shape, Tensors);

    /// <inheritdoc />
    public long[] ProjectedShape(MatrixShape matrix) => MatrixSides.BasisProjectedShape(Type, matrix, Rank);

    /// <inheritdoc />
    public long PlannedStateBytes(MatrixShape matrix, ScalarType dtype) =>
        MatrixSides.BasisBytes(Type, matrix, Rank, dtype) + BasisRule.PlannedStateBytes(BasisShape(MatrixSides.SideOf(Type, matrix), matrix, Math.Min(Rank, matrix.Min)), BasisRule.WorkingType(dtype));

    /// <summary>P's shape: m×r on the left, r×n on the right.</summary>
    internal static long[] BasisShape(ProjectionSide side, MatrixShape m, long r) => side == ProjectionSide.Left ? [m.Rows, r] : [r, m.Cols];

    /// <inheritdoc />
    public ISubspace Create(MatrixShape matrix, ScalarType dtype, Device device) =>
        new OnlinePcaSubspace(this, matrix, MatrixSides.SideOf(Type, matrix), Math.Min(Rank, matrix.Min), dtype, device);

    /// <inheritdoc />
    public void Validate(string where)
    {
        new SvdProjection(Rank, UpdateProjGap, Scale, Type, Tensors).Validate(where);
        if (Type == ProjectionType.Full)
            throw new ArgumentOutOfRangeException("proj_type", Type, $"{where}: proj_type must be one of Std, ReverseStd, Left, Right (Online Subspace Descent learns one basis).");
        if (!(BasisWeightDecay >= 0) || double.IsInfinity(BasisWeightDecay))
            throw new ArgumentOutOfRangeException("p_weight_decay", BasisWeightDecay, $"{where}: p_weight_decay must be finite and >= 0.");
        BasisRule.Validate($"{where}, the basis optimizer");
        if (BasisRule is AdafactorConfig { RelativeStep: true })
            throw new ArgumentException($"{where}: the basis optimizer cannot use Adafactor's relative_step (its step size must follow η_P = (1/T)·(η_k/η_0)).", "p_optimizer");
    }

    /// <inheritdoc />
    public void Save(StateWriter writer)
    {
        writer.Long("rank", Rank);
        writer.Long("update_proj_gap", UpdateProjGap);
        writer.Double("scale", Scale);
        writer.Long("proj_type", (long)Type);
        writer.Long("tensors", (long)Tensors);
        writer.Double("p_weight_decay", BasisWeightDecay);
        ConfigCodec.Write(writer, BasisRule);
    }

    internal static OnlinePcaProjection Read(StateReader reader) => new(
        (int)reader.Long("rank"), (int)reader.Long("update_proj_gap"), reader.Double("scale"),
        (ProjectionType)reader.Long("proj_type"), (TensorsProjected)reader.Long("tensors"),
        BasisWeightDecay: reader.Double("p_weight_decay"), BasisRule: ConfigCodec.ReadRule(reader));
}

/// <summary>
/// The subspace of <see cref="OnlinePcaProjection"/>: P (U_r-like m×r on the left, V_rᵀ-like r×n on the
/// right) from one SVD, then one step of P's own optimizer after every weight step from step 2 on.
/// P is not re-orthonormalized (as the reference). State: P, P's rule state and its step count.
/// </summary>
public sealed class OnlinePcaSubspace : BasisSubspace
{
    private readonly OnlinePcaProjection _config;
    private IUpdateRule? _rule;

    internal OnlinePcaSubspace(OnlinePcaProjection config, MatrixShape matrix, ProjectionSide side, long rank, ScalarType dtype, Device device)
        : base(matrix, side, rank, config.UpdateProjGap, config.Scale, dtype, device)
    {
        _config = config;
        long[] shape = side == ProjectionSide.Left ? [matrix.Rows, rank] : [rank, matrix.Cols];
        _rule = config.BasisRule.Create(shape, config.BasisRule.WorkingType(dtype), device);
    }

    /// <summary>P's optimizer steps taken (j of its last step).</summary>
    public long BasisSteps { get; private set; }

    /// <summary>P: the m×r left basis or the r×n right basis (null before the first step).</summary>
    public Tensor? Basis => Side == ProjectionSide.Left ? Left : Right;

    /// <summary>P's update-rule state (its moments).</summary>
    public IUpdateRule BasisRuleState => _rule ?? throw new ObjectDisposedException(nameof(OnlinePcaSubspace));

    /// <inheritdoc />
    public override long StateBytes => base.StateBytes + (_rule?.StateBytes ?? 0);

    /// <summary>Only the first step computes a basis (by SVD); afterwards P moves by <see cref="AfterUpdate"/>.</summary>
    public override bool NeedsRefresh(long step) => !HasBasis;

    /// <inheritdoc />
    protected override (Tensor? Left, Tensor? Right) EstimateBasis(Tensor gradient, long refreshIndex, in SubspaceContext context) =>
        SvdSubspace.TopSingularVectors(gradient, Rank, NeedsLeft, NeedsRight);

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
        BasisSteps++;
        var update = BasisRuleState.Compute(grad, new RuleContext(BasisSteps, lr, _config.BasisRule, () => Rms(p)));
        if (_config.BasisWeightDecay != 0) p.mul_(1 - update.DecayLearningRate * _config.BasisWeightDecay);
        p.add_(update.Direction.to(p.dtype), alpha: -update.Coefficient);
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
            var g = gradient.to(p.dtype);
            var r = projected.to(p.dtype).mul(inverseNorm);
            if (side == ProjectionSide.Right)
            {
                var b = r.t().mm(g).mul_(inverseNorm);   // R̂ᵀĜ (r×n)
                result = r.t().mm(r).mm(p)               // (R̂ᵀR̂) P
                    .add_(p.mm(p.t()).mm(b))             // + (PPᵀ) R̂ᵀĜ
                    .add_(b, alpha: -2);
            }
            else
            {
                var b = g.mm(r.t()).mul_(inverseNorm);   // ĜR̂ᵀ (m×r)
                result = p.mm(r.mm(r.t()))               // P (R̂R̂ᵀ)
                    .add_(b.mm(p.t().mm(p)))             // + ĜR̂ᵀ (PᵀP)
                    .add_(b, alpha: -2);
            }
            result = result.mul_(2).MoveToOuterDisposeScope();
        }
        return result;
    }

    private static double Rms(Tensor p)
    {
        using var scope = NewDisposeScope();
        var w = p.to(ScalarType.Float32);
        return w.norm().div_(Math.Sqrt(w.numel())).item<float>();
    }

    /// <inheritdoc />
    public override void Save(StateWriter writer)
    {
        base.Save(writer);
        writer.Long("basis_steps", BasisSteps);
        BasisRuleState.Save(writer);
    }

    /// <inheritdoc />
    public override void Load(StateReader reader)
    {
        base.Load(reader);
        BasisSteps = reader.Long("basis_steps");
        BasisRuleState.Load(reader);
    }

    /// <inheritdoc />
    public override void MoveTo(Device device)
    {
        base.MoveTo(device);
        BasisRuleState.MoveTo(device);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (!disposing) return;
        _rule?.Dispose();
        _rule = null;
    }
}
