using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>How APOLLO turns the projected Adam step into a scale for the raw gradient (the reference's <c>scale_type</c>).</summary>
public enum ApolloScaling
{
    /// <summary><c>"channel"</c>: one factor per channel (row of a tall weight, column of a wide one): APOLLO.</summary>
    Channel,
    /// <summary><c>"tensor"</c>: one factor for the whole matrix: APOLLO-Mini.</summary>
    Tensor,
}

/// <summary>How APOLLO's auxiliary space is drawn (the reference's <c>proj</c>).</summary>
public enum ApolloProjector
{
    /// <summary><c>"random"</c>: a seeded Gaussian matrix / √r, regenerated from its seed; the state is the seed.</summary>
    Random,
    /// <summary><c>"svd"</c>: GaLore's top-r singular vectors (kept in the state), refreshed every T steps.</summary>
    Svd,
}

/// <summary>
/// APOLLO (Zhu et al., arXiv 2412.05270; docs/algorithms/apollo.md): Adam runs on R, the projection of G onto a
/// seeded random rank-r space, only to measure how much Adam would scale the gradient; the update is the
/// full-rank gradient G scaled channel-wise (APOLLO) or tensor-wise (APOLLO-Mini) by ‖N‖/‖R‖ (N the projected
/// Adam direction), times √<see cref="Scale"/>, with Fira's norm-growth limiter. The random matrix is drawn on
/// the CPU from a seed (the parameter's 1-based index, then the reference's next-seed chain) at steps
/// 1, T+1, 2T+1, … and regenerated from that seed at every step, so the projector's state is the seed.
/// </summary>
/// <param name="Rank">r ≥ 1 (not clamped for the random projector, as the reference; clamped to min(m, n) for SVD).</param>
/// <param name="UpdateProjGap">T ≥ 1: a new matrix at steps 1, T+1, 2T+1, …</param>
/// <param name="Scale">The reference's <c>scale</c> &gt; 0: the update is multiplied by √scale (1 for APOLLO, 128 for APOLLO-Mini).</param>
/// <param name="Scaling">Channel-wise (APOLLO) or tensor-wise (APOLLO-Mini).</param>
/// <param name="Type">The side (<see cref="ProjectionType.Full"/> is not supported; channel scaling needs <see cref="ProjectionType.Std"/>).</param>
/// <param name="Projector">Seeded random matrix (default) or SVD.</param>
/// <param name="LimitNormGrowth">Fira's norm-growth limiter (γ = 1.01); the reference's <c>disable_nl</c> negated.</param>
/// <param name="ScaleBeforeLimiter">Multiply by √scale before the limiter instead of after (the reference's <c>scale_front</c>).</param>
/// <param name="Tensors">Which parameters the projection applies to; the others use the full space.</param>
public sealed record ApolloProjection(
    int Rank = 128,
    int UpdateProjGap = 200,
    double Scale = 1.0,
    ApolloScaling Scaling = ApolloScaling.Channel,
    ProjectionType Type = ProjectionType.Std,
    ApolloProjector Projector = ApolloProjector.Random,
    bool LimitNormGrowth = true,
    bool ScaleBeforeLimiter = false,
    TensorsProjected Tensors = TensorsProjected.MatricesOnly) : IProjectionConfig
{
    /// <summary>The saved fields: entry names (the reference's option names), constraints, order.</summary>
    internal static readonly ConfigSchema<ApolloProjection> Schema = new ConfigSchema<ApolloProjection>(new())
        .Int("rank", c => c.Rank, (c, v) => c with { Rank = v }, Check.AtLeast(1))
        .Int("update_proj_gap", c => c.UpdateProjGap, (c, v) => c with { UpdateProjGap = v }, Check.AtLeast(1))
        .Double("scale", c => c.Scale, (c, v) => c with { Scale = v }, Check.FinitePositive)
        .Enum("scale_type", c => c.Scaling, (c, v) => c with { Scaling = v })
        .Enum("proj_type", c => c.Type, (c, v) => c with { Type = v },
            Check.OneOf(ProjectionType.Std, ProjectionType.ReverseStd, ProjectionType.Left, ProjectionType.Right).Because("APOLLO projects one side"))
        .Enum("proj", c => c.Projector, (c, v) => c with { Projector = v })
        .Bool("limit_norm_growth", c => c.LimitNormGrowth, (c, v) => c with { LimitNormGrowth = v })
        .Bool("scale_front", c => c.ScaleBeforeLimiter, (c, v) => c with { ScaleBeforeLimiter = v })
        .Enum("tensors", c => c.Tensors, (c, v) => c with { Tensors = v }, option: nameof(Tensors));

    /// <inheritdoc />
    public MatrixShape? MatrixViewOf(long[] shape) => MatrixSides.ViewOf(shape, Tensors);

    /// <inheritdoc />
    public long[] ProjectedShape(MatrixShape matrix) => MatrixSides.ProjectedShape(MatrixSides.SideOf(Type, matrix), matrix, RankOf(matrix));

    /// <summary>
    /// Side and rank (checked on load); the seed of the current matrix and how many were drawn; the SVD basis
    /// (SVD projector only); the limiter's last norm (with the limiter). The random matrix itself is never stored.
    /// </summary>
    /// <param name="matrix">The parameter viewed as a matrix.</param>
    /// <param name="dtype">The working dtype.</param>
    public StateDeclaration DeclareState(MatrixShape matrix, ScalarType dtype)
    {
        var (side, rank) = (MatrixSides.SideOf(Type, matrix), RankOf(matrix));
        return new(
            new ConstantEntry("side", (long)side), new ConstantEntry("rank", rank),
            new CounterEntry("projection_seed"), new CounterEntry("projections"),
            new TensorEntry("basis", ApolloSubspace.BasisShape(side, matrix, rank), dtype,
                Projector == ApolloProjector.Svd ? SlotPresence.WhenSet : SlotPresence.Unused),
            new TensorEntry("growth_limit_norm", [], dtype, LimitNormGrowth ? SlotPresence.WhenSet : SlotPresence.Unused) { Values = TensorValues.NonNegative });
    }

    /// <inheritdoc />
    public ISubspace Create(MatrixShape matrix, ScalarType dtype, Device device) =>
        new ApolloSubspace(this, matrix, MatrixSides.SideOf(Type, matrix), RankOf(matrix), dtype, device);

    private long RankOf(MatrixShape matrix) => Projector == ApolloProjector.Svd ? Math.Min(Rank, matrix.Min) : Rank;

    /// <inheritdoc />
    public void Validate(string where)
    {
        Schema.Validate(this, where);
        if (Scaling == ApolloScaling.Channel && Type != ProjectionType.Std)
            throw new ArgumentException(
                $"{where}: scale_type = Channel needs proj_type = Std (the channels are the dimension the projection keeps); " +
                $"proj_type = {Type} works with scale_type = Tensor.", "scale_type");
    }

    /// <inheritdoc />
    public void Save(StateWriter writer) => Schema.Save(this, writer);
}
