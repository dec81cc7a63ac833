using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The subspace of <see cref="GaLorePlusProjection"/> with reading (b): a rank-r basis on the head side d_h,
/// estimated from the drawn head's block, projecting every head block separately (effective rank h·r).
/// </summary>
internal sealed class HeadBlockSubspace : ISubspace
{
    private readonly GaLorePlusProjection _config;
    private readonly GaLorePlusProjection.Layout _layout;
    private readonly SparseResidual? _residual;
    private readonly MatrixShape _matrix;
    private readonly ScalarType _dtype;
    private readonly TensorSlot _basis; // Q/K/V: U_r (d_h×r); O: V_rᵀ (r×d_h)
    private readonly CounterSlot _refreshCount;

    internal HeadBlockSubspace(GaLorePlusProjection config, MatrixShape matrix, GaLorePlusProjection.Layout layout, ScalarType dtype, Device device)
    {
        _config = config;
        _layout = layout;
        _matrix = matrix;
        _dtype = dtype;
        ProjectedShape = config.ProjectedShape(matrix);
        State = new StateSlots(config.DeclareState(matrix, dtype), device);
        (_basis, _refreshCount) = (State.Tensor("head_basis"), State.Counter("refresh_count"));
        var k = config.ResidualElements(matrix);
        _residual = k > 0 ? new SparseResidual(State, matrix, k, config.ResidualWarmup, config.ResidualReestimate, config.ResidualScale, dtype) : null;
    }

    /// <summary>The rank (checked on load), the refresh count, the per-head basis (set at the first refresh), then the residual's entries.</summary>
    internal static StateDeclaration Declare(GaLorePlusProjection.Layout layout, MatrixShape matrix, long residual, ScalarType dtype) =>
        new([
            new ConstantEntry("rank", layout.Rank), new CounterEntry("refresh_count"),
            new TensorEntry("head_basis", layout.Axis == HeadAxis.Rows ? [layout.HeadSize, layout.Rank] : [layout.Rank, layout.HeadSize], dtype, SlotPresence.WhenSet),
            .. SparseResidual.Declare(matrix, residual, dtype)]);

    /// <inheritdoc />
    public StateSlots State { get; }

    /// <summary>The per-head basis: U_r (d_h×r) for Q/K/V, V_rᵀ (r×d_h) for O; null before the first refresh.</summary>
    public Tensor? Basis => _basis.Value;
    /// <summary>r, the rank of the shared per-head basis.</summary>
    public long Rank => _layout.Rank;
    /// <summary>How many refreshes have computed a basis (saved).</summary>
    public long RefreshCount => _refreshCount.Value;
    /// <summary>The head the last refresh estimated the basis from (−1 before the first; not saved).</summary>
    public int LastHead { get; private set; } = -1;
    /// <summary>The sparse residual's state, or null when ρ = 0.</summary>
    public SparseResidual? Residual => _residual;

    /// <inheritdoc />
    public long[] ProjectedShape { get; }
    /// <inheritdoc />
    public bool HasBasis => _basis.HasValue;
    private bool Rows => _layout.Axis == HeadAxis.Rows;

    /// <inheritdoc />
    public bool NeedsRefresh(long step) => RefreshSchedule.EveryGapFromFirstStep(_config.UpdateProjGap).IsDue(step, HasBasis);

    /// <inheritdoc />
    public Tensor? Refresh(Tensor gradient, in SubspaceContext context)
    {
        using var scope = NewDisposeScope();
        var g32 = gradient.to(ScalarType.Float32);
        var head = GaLorePlusProjection.HeadFor(_config.Seed, context.ParameterIndex, RefreshCount, _layout.Heads);
        var block = g32.narrow(Rows ? 0 : 1, head * _layout.HeadSize, _layout.HeadSize);
        var (u, vh) = RandomizedSvdSubspace.Estimate(block, Rank, _config.Oversampling, _config.PowerIterations,
            RandomizedSvdProjection.SketchSeed(_config.Seed, context.ParameterIndex, RefreshCount), left: Rows, right: !Rows);
        var basis = Rows ? BasisSubspace.CanonicalOrFail(u!, columns: true) : BasisSubspace.CanonicalOrFail(vh!, columns: false);
        _basis.Set(basis.to(_dtype, copy: true));
        LastHead = head;
        _refreshCount.Value++;
        return null;
    }

    /// <inheritdoc />
    public Tensor Project(Tensor gradient)
    {
        long h = _layout.Heads, dh = _layout.HeadSize;
        return Rows
            ? Basis!.t().matmul(gradient.view(h, dh, _matrix.Cols)).reshape(h * Rank, _matrix.Cols)
            : gradient.view(_matrix.Rows, h, dh).matmul(Basis!.t()).reshape(_matrix.Rows, h * Rank);
    }

    /// <summary>Back(lowRank) without α: every head block mapped back with the shared basis.</summary>
    public Tensor ProjectBackUnscaled(Tensor lowRank)
    {
        long h = _layout.Heads, dh = _layout.HeadSize;
        return Rows
            ? Basis!.matmul(lowRank.view(h, Rank, _matrix.Cols)).reshape(h * dh, _matrix.Cols)
            : lowRank.view(_matrix.Rows, h, Rank).matmul(Basis!).reshape(_matrix.Rows, h * dh);
    }

    /// <inheritdoc />
    public Tensor ProjectBack(Tensor lowRank)
    {
        var back = ProjectBackUnscaled(lowRank);
        if (_config.Scale == 1.0) return back;
        using var scale = _config.Scale.ToScalar();
        return back.mul_(scale);
    }

    /// <inheritdoc />
    public void AddProjectedBack(Tensor target, Tensor lowRank, double alpha)
    {
        using var back = ProjectBackUnscaled(lowRank);
        using var scaled = (alpha * _config.Scale).ToScalar();
        target.add_(back.dtype == target.dtype ? back : back.to(target.dtype), alpha: scaled);
    }

    /// <summary>The whole gradient at a refresh; otherwise R, plus G on Ω once the sparse residual has chosen it (the whole G before).</summary>
    public GradientExchange Exchange(long step) =>
        NeedsRefresh(step) ? GradientExchange.Full : _residual?.Exchange() ?? GradientExchange.Projected();

    /// <inheritdoc />
    public void AfterUpdate(Tensor gradient, Tensor projected, in SubspaceContext context) { }

    /// <summary>True with a sparse residual, which reads the gradient (E = G − Back(R)).</summary>
    public bool ReadsGradientAfterProjection => _residual is not null;

    /// <summary>The back-projected direction, then the sparse residual's own term (its moments follow the group's Adam config).</summary>
    public void Apply(in SubspaceUpdate update)
    {
        AddProjectedBack(update.Target, update.Direction, -update.Coefficient);
        _residual?.Update(update.Target, update.Gradient, update.Projected, ProjectBackUnscaled, RefreshCount, update.Rule);
    }

    /// <inheritdoc />
    public void Load(StateReader reader)
    {
        State.Load(reader);
        _residual?.Loaded(reader, RefreshCount);
    }

}
