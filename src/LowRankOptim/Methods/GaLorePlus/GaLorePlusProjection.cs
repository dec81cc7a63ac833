using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

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
/// m·n·4-byte buffer exists too; <see cref="DeclareState"/> plans the state after the warm-up.
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
    /// <summary>
    /// The saved fields: entry names, constraints, order (the checkpoint format). <see cref="Heads"/> is saved as
    /// heads (0: none) and head_axis (<see cref="HeadAxis.Rows"/> when none), validated only when set.
    /// </summary>
    internal static readonly ConfigSchema<GaLorePlusProjection> Schema = new ConfigSchema<GaLorePlusProjection>(new())
        .Int("rank", c => c.Rank, (c, v) => c with { Rank = v }, Check.AtLeast(1))
        .Int("update_proj_gap", c => c.UpdateProjGap, (c, v) => c with { UpdateProjGap = v }, Check.AtLeast(1))
        .Double("scale", c => c.Scale, (c, v) => c with { Scale = v }, Check.FinitePositive)
        .Int("oversampling", c => c.Oversampling, (c, v) => c with { Oversampling = v }, Check.AtLeast(0))
        .Int("power_iterations", c => c.PowerIterations, (c, v) => c with { PowerIterations = v }, Check.AtLeast(0))
        .Long("seed", c => c.Seed, (c, v) => c with { Seed = v })
        .Int("heads", c => c.Heads?.Heads ?? 0, (c, v) => c with { Heads = v == 0 ? null : new AttentionHeads(v, c.Heads?.Axis ?? HeadAxis.Rows) },
            Check.AtLeast(1), when: c => c.Heads is not null)
        .Enum("head_axis", c => c.Heads?.Axis ?? HeadAxis.Rows, (c, v) => c with { Heads = c.Heads is { } h ? h with { Axis = v } : null },
            when: c => c.Heads is not null)
        .Enum("cross_head", c => c.Reading, (c, v) => c with { Reading = v })
        .Double("residual_density", c => c.ResidualDensity, (c, v) => c with { ResidualDensity = v }, Check.ClosedUnitInterval)
        .Int("residual_warmup", c => c.ResidualWarmup, (c, v) => c with { ResidualWarmup = v }, Check.AtLeast(0))
        .Bool("residual_reestimate", c => c.ResidualReestimate, (c, v) => c with { ResidualReestimate = v })
        .Double("residual_scale", c => c.ResidualScale, (c, v) => c with { ResidualScale = v }, Check.FinitePositive)
        .Enum("tensors", c => c.Tensors, (c, v) => c with { Tensors = v }, option: nameof(Tensors));

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
    public StateDeclaration DeclareState(MatrixShape matrix, ScalarType dtype)
    {
        var l = LayoutOf(matrix);
        return l.PerHead
            ? HeadBlockSubspace.Declare(l, matrix, ResidualElements(matrix), dtype)
            : BasisSubspace.Declare(l.Side, matrix, l.Rank, dtype, SparseResidual.Declare(matrix, ResidualElements(matrix), dtype));
    }

    /// <summary>The rank of the shared basis for a <paramref name="matrix"/>: r clamped to min(d_h, d) with heads, to min(m, n) without.</summary>
    /// <param name="matrix">The parameter viewed as a matrix.</param>
    public long LayoutRank(MatrixShape matrix) => LayoutOf(matrix).Rank;

    /// <summary>k = ⌈ρ·m·n⌉, the number of entries with sparse residual moments (0 when ρ = 0).</summary>
    /// <param name="matrix">The parameter viewed as a matrix.</param>
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
    /// <param name="seed">The projection's sketch seed.</param>
    /// <param name="parameterIndex">The parameter's index in the optimizer.</param>
    /// <param name="refreshIndex">The 0-based refresh.</param>
    /// <param name="heads">h, the number of heads.</param>
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
    public void Validate(string where) => Schema.Validate(this, where);

    /// <inheritdoc />
    public void Save(StateWriter writer) => Schema.Save(this, writer);

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
