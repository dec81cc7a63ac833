using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// GaLore's projection with the exact SVD replaced by randomized subspace iteration (Halko, Martinsson and
/// Tropp 2011; the "fast SVD" of GaLore+ and GaLore 2; docs/algorithms/randomized-svd.md). At each refresh, for the float32 gradient A (m×n) and
/// ℓ = min(r + p, m, n) with oversampling p:
/// <list type="number">
/// <item>draw a Gaussian sketch Ω (n×ℓ) from a generator seeded by (<see cref="Seed"/>, parameter index,
/// refresh count), so a resumed run draws the same numbers on any device;</item>
/// <item>Q = qr(A·Ω); then <see cref="PowerIterations"/> times: Q = qr(A·qr(Aᵀ·Q)) (re-orthonormalized in between);</item>
/// <item>B = Qᵀ·A (ℓ×n), thin SVD B = Û Σ V̂ᵀ; U ≈ Q·Û, Vᵀ ≈ V̂ᵀ; keep the first r vectors.</item>
/// </list>
/// Cost ≈ (2q + 2)·m·n·ℓ flops instead of a full SVD's O(m·n·min(m, n)). Sides, refresh schedule, sign
/// canonicalization and state are those of <see cref="SvdProjection"/>.
/// </summary>
/// <param name="Rank">r ≥ 1; clamped to min(m, n) for each matrix.</param>
/// <param name="UpdateProjGap">T ≥ 1: the basis is refreshed at steps 1, T+1, 2T+1, …</param>
/// <param name="Scale">α &gt; 0, multiplies the back-projected update.</param>
/// <param name="Type">Which side(s) to project (galore_torch's <c>proj_type</c>).</param>
/// <param name="Tensors">Which parameters the projection applies to; the others use the full space.</param>
/// <param name="Oversampling">p ≥ 0 extra sketch columns (default 8).</param>
/// <param name="PowerIterations">q ≥ 0 power iterations (default 2); each sharpens the spectral gap by (σ_{r+1}/σ_r)².</param>
/// <param name="Seed">The seed the per-parameter, per-refresh sketches are derived from.</param>
public sealed record RandomizedSvdProjection(
    int Rank = 128,
    int UpdateProjGap = 200,
    double Scale = 0.25,
    ProjectionType Type = ProjectionType.Std,
    TensorsProjected Tensors = TensorsProjected.MatricesOnly,
    int Oversampling = 8,
    int PowerIterations = 2,
    long Seed = 0) : IProjectionConfig
{
    /// <summary>The saved fields: <see cref="SvdProjection"/>'s, then the sketch's (the checkpoint format).</summary>
    internal static readonly ConfigSchema<RandomizedSvdProjection> Schema = new ConfigSchema<RandomizedSvdProjection>(new())
        .Include(SvdProjection.Schema, c => new SvdProjection(c.Rank, c.UpdateProjGap, c.Scale, c.Type, c.Tensors),
            (c, s) => c with { Rank = s.Rank, UpdateProjGap = s.UpdateProjGap, Scale = s.Scale, Type = s.Type, Tensors = s.Tensors })
        .Int("oversampling", c => c.Oversampling, (c, v) => c with { Oversampling = v }, Check.AtLeast(0))
        .Int("power_iterations", c => c.PowerIterations, (c, v) => c with { PowerIterations = v }, Check.AtLeast(0))
        .Long("seed", c => c.Seed, (c, v) => c with { Seed = v });

    /// <inheritdoc />
    public MatrixShape? MatrixViewOf(long[] shape) => MatrixSides.ViewOf(shape, Tensors);

    /// <inheritdoc />
    public long[] ProjectedShape(MatrixShape matrix) => MatrixSides.BasisProjectedShape(Type, matrix, Rank);

    /// <inheritdoc />
    public StateDeclaration DeclareState(MatrixShape matrix, ScalarType dtype) =>
        BasisSubspace.Declare(MatrixSides.SideOf(Type, matrix), matrix, Math.Min(Rank, matrix.Min), dtype);

    /// <inheritdoc />
    public ISubspace Create(MatrixShape matrix, ScalarType dtype, Device device) =>
        new RandomizedSvdSubspace(this, matrix, MatrixSides.SideOf(Type, matrix), Math.Min(Rank, matrix.Min), dtype, device);

    /// <inheritdoc />
    public void Validate(string where) => Schema.Validate(this, where);

    /// <inheritdoc />
    public void Save(StateWriter writer) => Schema.Save(this, writer);

    /// <summary>The generator seed of one sketch: SplitMix64 chained over (seed, parameter index, refresh count).</summary>
    internal static ulong SketchSeed(long seed, int parameterIndex, long refreshIndex)
    {
        var h = SplitMix64((ulong)seed);
        h = SplitMix64(h ^ (ulong)(long)parameterIndex);
        return SplitMix64(h ^ (ulong)refreshIndex);
    }

    private static ulong SplitMix64(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }
}
