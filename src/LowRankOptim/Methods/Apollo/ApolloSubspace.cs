using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The subspace of <see cref="ApolloProjection"/> for one m×n weight. Projects with P (r×n on the right, m×r on
/// the left); its apply phase does not project the rule's direction back but scales the raw gradient by the
/// ratio of norms of the direction N and the projected gradient R (docs/algorithms/apollo.md).
/// </summary>
internal sealed class ApolloSubspace : ISubspace
{
    private const double NormFloor = 1e-8;    // the reference's guard in ‖R‖ + 1e-8 and nl + 1e-8
    private const double GrowthLimit = 1.01;  // Fira's γ
    private static readonly Scalar Floor = NormFloor.ToScalar(), Limit = GrowthLimit.ToScalar(); // rooted: see ScalarLifetimeTests
    private readonly ApolloProjection _config;
    private readonly MatrixShape _matrix;
    private readonly ProjectionSide _side;
    private readonly long _rank;
    private readonly ScalarType _dtype;
    private readonly CounterSlot _seed, _projections;
    private readonly TensorSlot _basis, _growthNorm;

    internal ApolloSubspace(ApolloProjection config, MatrixShape matrix, ProjectionSide side, long rank, ScalarType dtype, Device device)
    {
        (_config, _matrix, _side, _rank, _dtype) = (config, matrix, side, rank, dtype);
        ProjectedShape = MatrixSides.ProjectedShape(side, matrix, rank);
        State = new StateSlots(config.DeclareState(matrix, dtype), device);
        (_seed, _projections) = (State.Counter("projection_seed"), State.Counter("projections"));
        (_basis, _growthNorm) = (State.Tensor("basis"), State.Tensor("growth_limit_norm"));
    }

    /// <summary>P's shape: r×n on the right, m×r on the left.</summary>
    internal static long[] BasisShape(ProjectionSide side, MatrixShape m, long rank) => side == ProjectionSide.Right ? [rank, m.Cols] : [m.Rows, rank];

    /// <inheritdoc />
    public StateSlots State { get; }

    /// <inheritdoc />
    public long[] ProjectedShape { get; }

    /// <inheritdoc />
    public bool HasBasis => _projections.Value > 0;

    /// <summary>The seed the current random matrix was drawn with (0 before the first).</summary>
    public long Seed => _seed.Value;

    /// <summary>A new matrix at steps 1, T+1, 2T+1, … of this parameter.</summary>
    public bool NeedsRefresh(long step) => RefreshSchedule.EveryGapFromFirstStep(_config.UpdateProjGap).IsDue(step, HasBasis);

    /// <summary>
    /// Random: the next seed of the chain (the 1-based parameter index for the first matrix); SVD: the top-r
    /// singular vectors of the gradient, signs made canonical.
    /// </summary>
    public Tensor? Refresh(Tensor gradient, in SubspaceContext context)
    {
        if (_config.Projector == ApolloProjector.Svd)
        {
            using var scope = NewDisposeScope();
            var (u, vh) = SvdSubspace.TopSingularVectors(gradient.to(ScalarType.Float32), _rank, _side == ProjectionSide.Left, _side == ProjectionSide.Right);
            _basis.Set(BasisSubspace.CanonicalOrFail(_side == ProjectionSide.Left ? u! : vh!, columns: _side == ProjectionSide.Left).to(_dtype, copy: true));
        }
        _seed.Value = HasBasis ? ApolloSeeds.Next(_seed.Value) : context.ParameterIndex + 1L;
        _projections.Value++;
        return null;
    }

    /// <summary>P for this step: the stored SVD basis, or the random matrix regenerated from its seed.</summary>
    private Tensor Matrix(Device device) => _config.Projector == ApolloProjector.Svd
        ? _basis.Required
        : ApolloSeeds.Gaussian(_seed.Value, BasisShape(_side, _matrix, _rank), _rank, _dtype, device);

    /// <inheritdoc />
    public Tensor Project(Tensor gradient)
    {
        var p = Matrix(gradient.device);
        return _side == ProjectionSide.Right ? gradient.mm(p.t()) : p.t().mm(gradient);
    }

    /// <summary>The orthogonal-projection view back to m×n (diagnostics only: APOLLO's update never uses it).</summary>
    public Tensor ProjectBack(Tensor lowRank)
    {
        var p = Matrix(lowRank.device);
        return _side == ProjectionSide.Right ? lowRank.mm(p) : p.mm(lowRank);
    }

    /// <inheritdoc />
    public void AddProjectedBack(Tensor target, Tensor lowRank, double alpha)
    {
        using var back = ProjectBack(lowRank);
        using var a = alpha.ToScalar();
        target.add_(back.to(target.dtype), alpha: a);
    }

    /// <summary>
    /// W ← W − c·U with U = G ⊙ s, s = ‖N‖/(‖R‖ + 1e-8) per channel (along the kept dimension) or for the whole
    /// matrix, times √scale before or after the norm-growth limiter.
    /// </summary>
    public void Apply(in SubspaceUpdate update)
    {
        using var scope = NewDisposeScope();
        var (n, r, g) = (update.Direction, update.Projected, update.Gradient);
        using var rootScale = Math.Sqrt(_config.Scale).ToScalar();
        using var minusCoefficient = (-update.Coefficient).ToScalar();
        Tensor factor;
        if (_config.Scaling == ApolloScaling.Channel)
        {
            var axis = _matrix.Rows < _matrix.Cols ? 0 : 1; // the reference takes it from G's shape
            factor = n.norm(dim: axis).div(r.norm(dim: axis).add(Floor));
            if (axis == 1) factor = factor.unsqueeze(1);
        }
        else
        {
            factor = n.norm().div(r.norm().add(Floor));
        }
        var scaled = g.mul(factor);
        if (_config.ScaleBeforeLimiter) scaled.mul_(rootScale);
        if (_config.LimitNormGrowth) scaled = LimitGrowth(scaled);
        if (!_config.ScaleBeforeLimiter) scaled.mul_(rootScale);
        update.Target.add_(scaled.to(update.Target.dtype), alpha: minusCoefficient);
    }

    /// <summary>
    /// Fira's limiter: the first step records ‖U‖; later, when ‖U‖ exceeds 1.01·(last + 1e-8), U is divided by
    /// d = (‖U‖/(last + 1e-8))/1.01 and ‖U‖/d is recorded; otherwise ‖U‖ is recorded and U kept.
    /// </summary>
    private Tensor LimitGrowth(Tensor scaled)
    {
        var norm = scaled.norm();
        if (_growthNorm.Value is not { } last)
        {
            _growthNorm.Set(norm.clone());
            return scaled;
        }
        var ratio = norm.div(last.add(Floor));
        // The reference's max(ratio, 1.01) keeps the float 1.01 (divisor exactly 1) only when ratio < 1.01 in the tensor's dtype.
        if (ratio.lt(Limit).item<bool>())
        {
            _growthNorm.Set(norm.clone());
            return scaled;
        }
        var divisor = ratio.div(Limit);
        _growthNorm.Set(norm.div(divisor));
        return scaled.div(divisor);
    }

    /// <summary>The whole gradient at every step: the apply phase scales the raw gradient G itself.</summary>
    public GradientExchange Exchange(long step) => GradientExchange.Full;

    /// <inheritdoc />
    public void AfterUpdate(Tensor gradient, Tensor projected, in SubspaceContext context) { }

    /// <summary>Reads the state and checks that the SVD projector's basis exists once a projection was drawn.</summary>
    public void Load(StateReader reader)
    {
        State.Load(reader);
        if (_config.Projector == ApolloProjector.Svd && HasBasis != _basis.HasValue)
            throw new InvalidDataException(
                $"{reader.Context}: entry 'basis' is {(_basis.HasValue ? "present" : "absent")} but entry 'projections' holds {_projections.Value}; the SVD projector keeps a basis once it has drawn one.");
    }

    /// <summary>True: the update scales the raw gradient G.</summary>
    public bool ReadsGradientAfterProjection => true;
}
