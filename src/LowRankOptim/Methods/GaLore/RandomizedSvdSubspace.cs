using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>The subspace of <see cref="RandomizedSvdProjection"/>: randomized subspace iteration at each refresh.</summary>
internal sealed class RandomizedSvdSubspace : BasisSubspace
{
    private readonly RandomizedSvdProjection _config;

    internal RandomizedSvdSubspace(RandomizedSvdProjection config, MatrixShape matrix, ProjectionSide side, long rank, ScalarType dtype, Device device)
        : base(config.DeclareState(matrix, dtype), matrix, side, rank, config.UpdateProjGap, config.Scale, dtype, device) => _config = config;

    /// <summary>ℓ = min(r + p, m, n), the sketch width.</summary>
    public long SketchWidth => Math.Min(Rank + _config.Oversampling, Matrix.Min);

    /// <inheritdoc />
    protected override (Tensor? Left, Tensor? Right) EstimateBasis(Tensor gradient, long refreshIndex, in SubspaceContext context) =>
        Estimate(gradient, Rank, _config.Oversampling, _config.PowerIterations,
            RandomizedSvdProjection.SketchSeed(_config.Seed, context.ParameterIndex, refreshIndex), NeedsLeft, NeedsRight);

    /// <summary>
    /// Randomized subspace iteration on a float32 matrix <paramref name="a"/> (p×q): the top-<paramref name="rank"/>
    /// left (p×r) and/or right (r×q) singular vectors, from a Gaussian sketch of width min(r + oversampling, p, q)
    /// drawn on the CPU from <paramref name="sketchSeed"/>. Signs are not canonical.
    /// </summary>
    internal static (Tensor? Left, Tensor? Right) Estimate(Tensor a, long rank, int oversampling, int powerIterations, ulong sketchSeed, bool left, bool right)
    {
        var width = Math.Min(rank + oversampling, Math.Min(a.shape[0], a.shape[1]));
        Tensor omega;
        // Drawn on the CPU and moved: the same numbers on every device.
        using (var generator = new Generator(sketchSeed))
            omega = randn([a.shape[1], width], dtype: ScalarType.Float32, generator: generator).to(a.device);
        var q = Orthonormal(a.mm(omega));
        for (var i = 0; i < powerIterations; i++)
            q = Orthonormal(a.mm(Orthonormal(a.t().mm(q))));
        var (ub, _, vh) = linalg.svd(q.t().mm(a), fullMatrices: false);
        return (left ? q.mm(ub.narrow(1, 0, rank)) : null, right ? vh.narrow(0, 0, rank) : null);
    }

    private static Tensor Orthonormal(Tensor y)
    {
        var (q, _) = linalg.qr(y, linalg.QRMode.Reduced);
        return q;
    }
}
