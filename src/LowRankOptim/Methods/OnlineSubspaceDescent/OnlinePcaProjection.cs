using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// Online Subspace Descent (Liang et al., NeurIPS 2024, the reference's <c>proj_type="continuous"</c>; docs/algorithms/online-subspace-descent.md): the
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

    /// <summary>The saved fields: <see cref="SvdProjection"/>'s, then P's decay and optimizer (the checkpoint format).</summary>
    internal static readonly ConfigSchema<OnlinePcaProjection> Schema = new ConfigSchema<OnlinePcaProjection>(new())
        .Include(SvdProjection.Schema, c => new SvdProjection(c.Rank, c.UpdateProjGap, c.Scale, c.Type, c.Tensors),
            (c, s) => c with { Rank = s.Rank, UpdateProjGap = s.UpdateProjGap, Scale = s.Scale, Type = s.Type, Tensors = s.Tensors })
        .Double("p_weight_decay", c => c.BasisWeightDecay, (c, v) => c with { BasisWeightDecay = v }, Check.FiniteNonNegative)
        .Rule("p_optimizer", c => c.BasisRule, (c, v) => c with { BasisRule = v }, "the basis optimizer");

    /// <inheritdoc />
    public MatrixShape? MatrixViewOf(long[] shape) => MatrixSides.ViewOf(shape, Tensors);

    /// <inheritdoc />
    public long[] ProjectedShape(MatrixShape matrix) => MatrixSides.BasisProjectedShape(Type, matrix, Rank);

    /// <inheritdoc />
    public StateDeclaration DeclareState(MatrixShape matrix, ScalarType dtype)
    {
        var (side, rank) = (MatrixSides.SideOf(Type, matrix), Math.Min(Rank, matrix.Min));
        return BasisSubspace.Declare(side, matrix, rank, dtype,
            new CounterEntry("basis_steps"),
            new ComponentEntry("basis_rule", BasisRule.DeclareState(BasisShape(side, matrix, rank), BasisRule.WorkingType(dtype))));
    }

    /// <summary>P's shape: m×r on the left, r×n on the right.</summary>
    internal static long[] BasisShape(ProjectionSide side, MatrixShape m, long r) => side == ProjectionSide.Left ? [m.Rows, r] : [r, m.Cols];

    /// <inheritdoc />
    public ISubspace Create(MatrixShape matrix, ScalarType dtype, Device device) =>
        new OnlinePcaSubspace(this, matrix, MatrixSides.SideOf(Type, matrix), Math.Min(Rank, matrix.Min), dtype, device);

    /// <summary>The execution policy of the basis optimizer (its kernel choice) is the current config's.</summary>
    /// <param name="current">The config in use, whose basis optimizer's kernel choice is kept.</param>
    public IProjectionConfig WithExecutionPolicyOf(IProjectionConfig current) =>
        current is OnlinePcaProjection c ? this with { BasisRule = BasisRule.WithExecutionPolicyOf(c.BasisRule) } : this;

    /// <inheritdoc />
    public void Validate(string where)
    {
        Schema.Validate(this, where);
        Check.OneOf(ProjectionType.Std, ProjectionType.ReverseStd, ProjectionType.Left, ProjectionType.Right)
            .Because("Online Subspace Descent learns one basis").Enforce("proj_type", Type, where);
        if (BasisRule is AdafactorConfig { RelativeStep: true })
            throw new ArgumentException($"{where}: the basis optimizer cannot use Adafactor's relative_step (its step size must follow η_P = (1/T)·(η_k/η_0)).", "p_optimizer");
    }

    /// <inheritdoc />
    public void Save(StateWriter writer) => Schema.Save(this, writer);
}
