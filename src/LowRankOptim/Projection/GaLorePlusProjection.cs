using LowRankOptim.Linalg;
using LowRankOptim.Serialization;
using LowRankOptim.Rules;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Projection;

/// <summary>Which axis of an attention weight is grouped by head (PyTorch layout, out × in).</summary>
public enum HeadAxis
{
    /// <summary>Rows: Q, K and V projections, W ∈ R^{(h·d_h)×d}; head i owns rows i·d_h … (i+1)·d_h − 1.</summary>
    Rows,
    /// <summary>Columns: the output projection O, W ∈ R^{d×(h·d_h)}; head i owns columns i·d_h … (i+1)·d_h − 1.</summary>
    Columns,
}

/// <summary>
/// Says a weight is an attention projection with <see cref="Heads"/> heads along <see cref="Axis"/>; the head
/// size d_h is that axis's length divided by the head count (grouped-query attention: give K and V their own,
/// smaller, head count).
/// </summary>
/// <param name="Heads">h ≥ 1; must divide the length of <paramref name="Axis"/>.</param>
/// <param name="Axis">Rows for Q/K/V, Columns for O.</param>
public sealed record AttentionHeads(int Heads, HeadAxis Axis)
{
    /// <summary>Q, K or V with <paramref name="heads"/> heads: rows grouped by head.</summary>
    public static AttentionHeads QueryKeyValue(int heads) => new(heads, HeadAxis.Rows);

    /// <summary>The output projection with <paramref name="heads"/> heads: columns grouped by head.</summary>
    public static AttentionHeads Output(int heads) => new(heads, HeadAxis.Columns);
}

/// <summary>How the basis estimated from one head's block is shared by all heads (spec §2.3).</summary>
public enum CrossHeadReading
{
    /// <summary>
    /// (a), the default: the basis lives on the long side of each block, the model dimension d that all heads
    /// share (the input x of Q/K/V, the residual-stream output of O). Q/K/V: P = V_rᵀ (r×d) from the block's
    /// right singular vectors, R = G·Pᵀ ((h·d_h)×r); O: P = U_r (d×r) from the block's left singular vectors,
    /// R = Pᵀ·G (r×(h·d_h)). One rank-r projection of the whole matrix; r ≤ d_h.
    /// </summary>
    SharedLongSide,
    /// <summary>
    /// (b): the basis lives on the head side d_h and projects each head block separately. Q/K/V: P = U_r (d_h×r),
    /// R^i = Pᵀ·G^i stacked to (h·r)×d; O: P = V_rᵀ (r×d_h), R^i = G^i·Pᵀ side by side, d×(h·r). Effective rank h·r.
    /// </summary>
    PerHeadShortSide,
}

/// <summary>
/// GaLore+ (Liao et al. 2024, arXiv 2412.19820; no public code, design of <c>docs/algorithms/galore-plus.md</c>):
/// GaLore whose bases come from randomized subspace iteration (as <see cref="RandomizedSvdProjection"/>, same
/// sketch seeds), with two options.
/// <list type="bullet">
/// <item><b>Cross-head projection</b> (<see cref="Heads"/> set): at each refresh one head, drawn from a generator
/// seeded by (<see cref="Seed"/>, parameter index, refresh count), gives its gradient block G^{i*}; the basis
/// is estimated from that block alone and projects every head's block (<see cref="Reading"/>). Weights without
/// heads use randomized subspace iteration on the whole matrix with GaLore's <c>std</c> side.</item>
/// <item><b>Sparsely coded residual</b> (<see cref="ResidualDensity"/> ρ &gt; 0): for the first
/// <see cref="ResidualWarmup"/> steps S_w, |G − Back(Proj(G))| (no α) is summed in a temporary float32 m×n buffer;
/// then the k = ⌈ρ·m·n⌉ entries Ω with the largest sums are kept (sorted; int32 indices, int64 when m·n ≥ 2³¹)
/// with Adam moments of their own (the group's Adam config, own step count), the buffer is freed, and every
/// later step adds α_e·scatter(Ω, m̂_e/(√v̂_e + ε)) (with the rule's ε convention) to the update.</item>
/// </list>
/// State per m×n weight: the basis (reading (a): r·d; (b): d_h·r; no heads: r·min(m, n)) plus, when ρ &gt; 0,
/// k indices and 2k moments; the moments of the projected gradient are the rule's. During the warm-up the
/// m·n·4-byte buffer exists too; <see cref="PlannedStateBytes"/> reports the state after the warm-up.
/// </summary>
/// <param name="Rank">r ≥ 1; clamped to min(d_h, d) for attention weights and to min(m, n) otherwise.</param>
/// <param name="UpdateProjGap">T ≥ 1: the basis is refreshed at steps 1, T+1, 2T+1, …</param>
/// <param name="Scale">α &gt; 0, multiplies the back-projected update.</param>
/// <param name="Oversampling">p ≥ 0 extra sketch columns.</param>
/// <param name="PowerIterations">q ≥ 0 power iterations.</param>
/// <param name="Seed">The seed of sketches and head draws.</param>
/// <param name="Heads">The attention layout of the group's weights, or null for ordinary weights.</param>
/// <param name="Reading">How the one-head basis is shared (ignored without heads).</param>
/// <param name="ResidualDensity">ρ in [0, 1]: the fraction of entries with sparse residual moments; 0 turns the residual off.</param>
/// <param name="ResidualWarmup">S_w ≥ 0 steps of residual accumulation before Ω is chosen (0: from the first step's residual).</param>
/// <param name="ResidualReestimate">Re-choose Ω at every refresh after the warm-up, from the refresh gradient's residual (moments of kept entries carry over, new ones start at 0).</param>
/// <param name="ResidualScale">α_e &gt; 0, multiplies the sparse residual update.</param>
/// <param name="Tensors">Which parameters the projection applies to; the others use the full space.</param>
public sealed record GaLorePlusProjection(
    int Rank = 128,
    int UpdateProjGap = 200,
    double Scale = 0.25,
    int Oversampling = 8,
    int PowerIterations = 2,
    long Seed = 0,
    AttentionHeads? Heads = null,
    CrossHeadReading Reading = CrossHeadReading.SharedLongSide,
    double ResidualDensity = 0.0,
    int ResidualWarmup = 200,
    bool ResidualReestimate = false,
    double ResidualScale = 1.0,
    TensorsProjected Tensors = TensorsProjected.MatricesOnly) : IProjectionConfig
{
    /// <inheritdoc />
    public MatrixShape? MatrixViewOf(long[] shape) => MatrixSides.ViewOf(shape, Tensors);

    /// <inheritdoc />
    public ISubspace Create(MatrixShape matrix, ScalarType dtype, Device device)
    {
        var layout = LayoutOf(matrix);
        return layout.PerHead
            ? new HeadBlockSubspace(this, matrix, layout, dtype, device)
            : new CrossHeadSubspace(this, matrix, layout, dtype, device);
    }

    /// <inheritdoc />
    public long[] ProjectedShape(MatrixShape matrix)
    {
        var l = LayoutOf(matrix);
        if (!l.PerHead) return MatrixSides.ProjectedShape(l.Side, matrix, l.Rank);
        return l.Axis == HeadAxis.Rows ? [l.Heads * l.Rank, matrix.Cols] : [matrix.Rows, l.Heads * l.Rank];
    }

    /// <inheritdoc />
    public long PlannedStateBytes(MatrixShape matrix, ScalarType dtype)
    {
        var l = LayoutOf(matrix);
        var basis = l.PerHead ? l.HeadSize * l.Rank : MatrixSides.BasisElements(l.Side, matrix, l.Rank);
        return basis * DTypes.ElementSize(dtype) + SparseResidual.PlannedBytes(matrix, ResidualElements(matrix), dtype);
    }

    /// <summary>The rank of the shared basis for a <paramref name="matrix"/>: r clamped to min(d_h, d) with heads, to min(m, n) without.</summary>
    public long LayoutRank(MatrixShape matrix) => LayoutOf(matrix).Rank;

    /// <summary>k = ⌈ρ·m·n⌉, the number of entries with sparse residual moments (0 when ρ = 0).</summary>
    public long ResidualElements(MatrixShape matrix)
    {
        var total = matrix.Rows * matrix.Cols;
        return Math.Min(total, (long)Math.Ceiling((decimal)ResidualDensity * total));
    }

    /// <summary>
    /// The head drawn at refresh <paramref name="refreshIndex"/> (0-based) of parameter <paramref name="parameterIndex"/>:
    /// uniform in [0, <paramref name="heads"/>), from a SplitMix64 hash of the sketch seed (a separate stream, so
    /// the sketch is the one <see cref="RandomizedSvdProjection"/> draws). Depends on nothing else, so it resumes exactly.
    /// </summary>
    public static int HeadFor(long seed, int parameterIndex, long refreshIndex, int heads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(heads, 1);
        var h = RandomizedSvdProjection.SketchSeed(seed, parameterIndex, refreshIndex) ^ 0xA5A5_5A5A_C3C3_3C3CUL;
        h += 0x9E3779B97F4A7C15UL;
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9UL;
        h = (h ^ (h >> 27)) * 0x94D049BB133111EBUL;
        h ^= h >> 31;
        return (int)((UInt128)h * (ulong)heads >> 64);
    }

    /// <inheritdoc />
    public void Validate(string where)
    {
        new SvdProjection(Rank, UpdateProjGap, Scale, ProjectionType.Std, Tensors).Validate(where);
        if (Oversampling < 0) throw new ArgumentOutOfRangeException("oversampling", Oversampling, $"{where}: oversampling must be >= 0.");
        if (PowerIterations < 0) throw new ArgumentOutOfRangeException("power_iterations", PowerIterations, $"{where}: power_iterations must be >= 0.");
        if (Heads is { } h)
        {
            if (h.Heads < 1) throw new ArgumentOutOfRangeException("heads", h.Heads, $"{where}: heads must be >= 1.");
            RuleChecks.Defined("head_axis", h.Axis, where);
        }
        RuleChecks.Defined("cross_head", Reading, where);
        if (!(ResidualDensity >= 0 && ResidualDensity <= 1)) throw new ArgumentOutOfRangeException("residual_density", ResidualDensity, $"{where}: residual_density must be in [0, 1].");
        if (ResidualWarmup < 0) throw new ArgumentOutOfRangeException("residual_warmup", ResidualWarmup, $"{where}: residual_warmup must be >= 0.");
        if (!(ResidualScale > 0) || double.IsInfinity(ResidualScale)) throw new ArgumentOutOfRangeException("residual_scale", ResidualScale, $"{where}: residual_scale must be finite and > 0.");
    }

    /// <inheritdoc />
    public void Save(StateWriter writer)
    {
        writer.Long("rank", Rank);
        writer.Long("update_proj_gap", UpdateProjGap);
        writer.Double("scale", Scale);
        writer.Long("oversampling", Oversampling);
        writer.Long("power_iterations", PowerIterations);
        writer.Long("seed", Seed);
        writer.Long("heads", Heads?.Heads ?? 0);
        writer.Long("head_axis", (long)(Heads?.Axis ?? HeadAxis.Rows));
        writer.Long("cross_head", (long)Reading);
        writer.Double("residual_density", ResidualDensity);
        writer.Long("residual_warmup", ResidualWarmup);
        writer.Bool("residual_reestimate", ResidualReestimate);
        writer.Double("residual_scale", ResidualScale);
        writer.Long("tensors", (long)Tensors);
    }

    internal static GaLorePlusProjection Read(StateReader reader)
    {
        var (rank, gap, scale) = ((int)reader.Long("rank"), (int)reader.Long("update_proj_gap"), reader.Double("scale"));
        var (p, q, seed) = ((int)reader.Long("oversampling"), (int)reader.Long("power_iterations"), reader.Long("seed"));
        var heads = (int)reader.Long("heads");
        var axis = (HeadAxis)reader.Long("head_axis");
        return new(rank, gap, scale, p, q, seed, heads == 0 ? null : new AttentionHeads(heads, axis), (CrossHeadReading)reader.Long("cross_head"),
            reader.Double("residual_density"), (int)reader.Long("residual_warmup"), reader.Bool("residual_reestimate"), reader.Double("residual_scale"),
            (TensorsProjected)reader.Long("tensors"));
    }

    /// <summary>The layout of one weight: which side, rank, head count and head size.</summary>
    internal readonly record struct Layout(ProjectionSide Side, long Rank, int Heads, long HeadSize, HeadAxis Axis, bool PerHead);

    /// <summary>Checks the head layout against <paramref name="matrix"/>; throws naming the head count, its value and the constraint.</summary>
    internal Layout LayoutOf(MatrixShape matrix)
    {
        if (Heads is not { } h) return new Layout(MatrixSides.SideOf(ProjectionType.Std, matrix), Math.Min(Rank, matrix.Min), 1, 0, HeadAxis.Rows, false);
        var length = h.Axis == HeadAxis.Rows ? matrix.Rows : matrix.Cols;
        if (h.Heads < 1 || length % h.Heads != 0)
            throw new ArgumentOutOfRangeException("heads", h.Heads,
                $"heads = {h.Heads} must be >= 1 and divide the {(h.Axis == HeadAxis.Rows ? "rows" : "columns")} ({length}) of a {matrix} weight grouped by head along {h.Axis}.");
        var headSize = length / h.Heads;
        var other = h.Axis == HeadAxis.Rows ? matrix.Cols : matrix.Rows;
        var rank = Math.Min(Rank, Math.Min(headSize, other));
        var perHead = Reading == CrossHeadReading.PerHeadShortSide;
        // (a): the basis lives on the model dimension (columns of Q/K/V, rows of O).
        var side = h.Axis == HeadAxis.Rows ? ProjectionSide.Right : ProjectionSide.Left;
        return new Layout(side, rank, h.Heads, headSize, h.Axis, perHead);
    }
}

/// <summary>
/// The subspace of <see cref="GaLorePlusProjection"/> without heads or with reading (a): a rank-r basis on one
/// side of the whole matrix, estimated by randomized subspace iteration from the drawn head's block (or the
/// whole matrix without heads), plus the optional sparse residual.
/// </summary>
public sealed class CrossHeadSubspace : BasisSubspace
{
    private readonly GaLorePlusProjection _config;
    private readonly GaLorePlusProjection.Layout _layout;
    private readonly SparseResidual? _residual;

    internal CrossHeadSubspace(GaLorePlusProjection config, MatrixShape matrix, GaLorePlusProjection.Layout layout, ScalarType dtype, Device device)
        : base(matrix, layout.Side, layout.Rank, config.UpdateProjGap, config.Scale, dtype, device)
    {
        _config = config;
        _layout = layout;
        var k = config.ResidualElements(matrix);
        _residual = k > 0 ? new SparseResidual(matrix, k, config.ResidualWarmup, config.ResidualReestimate, config.ResidualScale, dtype, device) : null;
    }

    /// <summary>The head the last refresh estimated the basis from (−1 before the first; not saved).</summary>
    public int LastHead { get; private set; } = -1;

    /// <summary>The sparse residual's state, or null when ρ = 0.</summary>
    public SparseResidual? Residual => _residual;

    /// <inheritdoc />
    public override long StateBytes => base.StateBytes + (_residual?.StateBytes ?? 0);

    /// <inheritdoc />
    protected override (Tensor? Left, Tensor? Right) EstimateBasis(Tensor gradient, long refreshIndex, in SubspaceContext context)
    {
        var block = gradient;
        if (_config.Heads is not null)
        {
            LastHead = GaLorePlusProjection.HeadFor(_config.Seed, context.ParameterIndex, refreshIndex, _layout.Heads);
            block = gradient.narrow(_layout.Axis == HeadAxis.Rows ? 0 : 1, LastHead * _layout.HeadSize, _layout.HeadSize);
        }
        return RandomizedSvdSubspace.Estimate(block, Rank, _config.Oversampling, _config.PowerIterations,
            RandomizedSvdProjection.SketchSeed(_config.Seed, context.ParameterIndex, refreshIndex), NeedsLeft, NeedsRight);
    }

    /// <summary>The back-projected direction, then the sparse residual's own term (its moments follow the group's Adam config).</summary>
    public override void Apply(in SubspaceUpdate update)
    {
        base.Apply(update);
        _residual?.Update(update.Target, update.Gradient, update.Projected, ProjectBackUnscaled, RefreshCount, update.Rule);
    }

    /// <inheritdoc />
    public override void Save(StateWriter writer)
    {
        base.Save(writer);
        _residual?.Save(writer);
    }

    /// <inheritdoc />
    public override void Load(StateReader reader)
    {
        base.Load(reader);
        _residual?.Load(reader, RefreshCount);
    }

    /// <inheritdoc />
    public override void MoveTo(Device device)
    {
        base.MoveTo(device);
        _residual?.MoveTo(device);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) _residual?.Dispose();
    }
}

/// <summary>
/// The subspace of <see cref="GaLorePlusProjection"/> with reading (b): a rank-r basis on the head side d_h,
/// estimated from the drawn head's block, projecting every head block separately (effective rank h·r).
/// </summary>
public sealed class HeadBlockSubspace : ISubspace
{
    private readonly GaLorePlusProjection _config;
    private readonly GaLorePlusProjection.Layout _layout;
    private readonly SparseResidual? _residual;
    private readonly MatrixShape _matrix;
    private readonly ScalarType _dtype;
    private Device _device;
    private Tensor? _basis; // Q/K/V: U_r (d_h×r); O: V_rᵀ (r×d_h)

    internal HeadBlockSubspace(GaLorePlusProjection config, MatrixShape matrix, GaLorePlusProjection.Layout layout, ScalarType dtype, Device device)
    {
        _config = config;
        _layout = layout;
        _matrix = matrix;
        _dtype = dtype;
        _device = device;
        ProjectedShape = config.ProjectedShape(matrix);
        var k = config.ResidualElements(matrix);
        _residual = k > 0 ? new SparseResidual(matrix, k, config.ResidualWarmup, config.ResidualReestimate, config.ResidualScale, dtype, device) : null;
    }

    /// <summary>The per-head basis: U_r (d_h×r) for Q/K/V, V_rᵀ (r×d_h) for O; null before the first refresh.</summary>
    public Tensor? Basis => _basis;
    /// <summary>r, the rank of the shared per-head basis.</summary>
    public long Rank => _layout.Rank;
    /// <summary>How many refreshes have computed a basis (saved).</summary>
    public long RefreshCount { get; private set; }
    /// <summary>The head the last refresh estimated the basis from (−1 before the first; not saved).</summary>
    public int LastHead { get; private set; } = -1;
    /// <summary>The sparse residual's state, or null when ρ = 0.</summary>
    public SparseResidual? Residual => _residual;

    /// <inheritdoc />
    public long[] ProjectedShape { get; }
    /// <inheritdoc />
    public bool HasBasis => _basis is not null;
    /// <inheritdoc />
    public long StateBytes => StateTensors.Bytes(_basis) + (_residual?.StateBytes ?? 0);
    private bool Rows => _layout.Axis == HeadAxis.Rows;

    /// <inheritdoc />
    public bool NeedsRefresh(long step) => !HasBasis || (step - 1) % _config.UpdateProjGap == 0;

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
        StateTensors.Replace(ref _basis, basis.to(_dtype, copy: true));
        LastHead = head;
        RefreshCount++;
        return null;
    }

    /// <inheritdoc />
    public Tensor Project(Tensor gradient)
    {
        long h = _layout.Heads, dh = _layout.HeadSize;
        return Rows
            ? _basis!.t().matmul(gradient.view(h, dh, _matrix.Cols)).reshape(h * Rank, _matrix.Cols)
            : gradient.view(_matrix.Rows, h, dh).matmul(_basis!.t()).reshape(_matrix.Rows, h * Rank);
    }

    /// <summary>Back(lowRank) without α: every head block mapped back with the shared basis.</summary>
    public Tensor ProjectBackUnscaled(Tensor lowRank)
    {
        long h = _layout.Heads, dh = _layout.HeadSize;
        return Rows
            ? _basis!.matmul(lowRank.view(h, Rank, _matrix.Cols)).reshape(h * dh, _matrix.Cols)
            : lowRank.view(_matrix.Rows, h, Rank).matmul(_basis!).reshape(_matrix.Rows, h * dh);
    }

    /// <inheritdoc />
    public Tensor ProjectBack(Tensor lowRank)
    {
        var back = ProjectBackUnscaled(lowRank);
        return _config.Scale == 1.0 ? back : back.mul_(_config.Scale);
    }

    /// <inheritdoc />
    public void AddProjectedBack(Tensor target, Tensor lowRank, double alpha)
    {
        using var back = ProjectBackUnscaled(lowRank);
        target.add_(back.dtype == target.dtype ? back : back.to(target.dtype), alpha: alpha * _config.Scale);
    }

    /// <inheritdoc />
    public void AfterUpdate(Tensor gradient, Tensor projected, in SubspaceContext context) { }

    /// <summary>The back-projected direction, then the sparse residual's own term (its moments follow the group's Adam config).</summary>
    public void Apply(in SubspaceUpdate update)
    {
        AddProjectedBack(update.Target, update.Direction, -update.Coefficient);
        _residual?.Update(update.Target, update.Gradient, update.Projected, ProjectBackUnscaled, RefreshCount, update.Rule);
    }

    /// <inheritdoc />
    public void Save(StateWriter writer)
    {
        writer.Long("rank", Rank);
        writer.Long("refresh_count", RefreshCount);
        writer.Tensor("head_basis", _basis);
        _residual?.Save(writer);
    }

    /// <inheritdoc />
    public void Load(StateReader reader)
    {
        reader.ExpectLong("rank", Rank);
        RefreshCount = reader.Long("refresh_count");
        long[] shape = Rows ? [_layout.HeadSize, Rank] : [Rank, _layout.HeadSize];
        var basis = reader.Tensor("head_basis", shape, _dtype, _device);
        if (basis is not null) StateTensors.Replace(ref _basis, basis);
        _residual?.Load(reader, RefreshCount);
    }

    /// <inheritdoc />
    public void MoveTo(Device device)
    {
        StateTensors.MoveTo(ref _basis, device);
        _residual?.MoveTo(device);
        _device = device;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _basis?.Dispose();
        _basis = null;
        _residual?.Dispose();
    }
}
