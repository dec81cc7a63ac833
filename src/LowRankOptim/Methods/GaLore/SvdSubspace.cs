using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>The subspace of <see cref="SvdProjection"/>: exact thin SVD at each refresh.</summary>
internal sealed class SvdSubspace : BasisSubspace
{
    internal SvdSubspace(StateDeclaration declaration, MatrixShape matrix, ProjectionSide side, long rank, long gap, double scale, ScalarType dtype, Device device)
        : base(declaration, matrix, side, rank, gap, scale, dtype, device) { }

    /// <inheritdoc />
    protected override (Tensor? Left, Tensor? Right) EstimateBasis(Tensor gradient, long refreshIndex, in SubspaceContext context) =>
        TopSingularVectors(gradient, Rank, NeedsLeft, NeedsRight);

    /// <summary>The top-<paramref name="rank"/> left (m×r) and/or right (r×n) singular vectors of a thin SVD.</summary>
    internal static (Tensor? Left, Tensor? Right) TopSingularVectors(Tensor gradient, long rank, bool left, bool right)
    {
        var (u, _, vh) = linalg.svd(gradient, fullMatrices: false);
        return (left ? u.narrow(1, 0, rank) : null, right ? vh.narrow(0, 0, rank) : null);
    }
}
