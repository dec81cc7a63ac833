using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// GaLore's projection (Zhao et al., ICML 2024): every <see cref="UpdateProjGap"/> steps the basis is
/// recomputed from the thin SVD of the current gradient (in float32 for any dtype), keeping the top
/// <see cref="Rank"/> singular vectors with canonical signs. Moments are kept unchanged across a refresh.
/// </summary>
/// <param name="Rank">r ≥ 1; clamped to min(m, n) for each matrix.</param>
/// <param name="UpdateProjGap">T ≥ 1: the basis is refreshed at steps 1, T+1, 2T+1, …</param>
/// <param name="Scale">α &gt; 0, multiplies the back-projected update.</param>
/// <param name="Type">Which side(s) to project (galore_torch's <c>proj_type</c>).</param>
/// <param name="Tensors">Which parameters the projection applies to; the others use the full space.</param>
public sealed record SvdProjection(
    int Rank = 128,
    int UpdateProjGap = 200,
    double Scale = 0.25,
    ProjectionType Type = ProjectionType.Std,
    TensorsProjected Tensors = TensorsProjected.MatricesOnly) : IProjectionConfig
{
    /// <inheritdoc />
    public MatrixShape? MatrixViewOf(long[] shape) => MatrixSides.ViewOf(shape, Tensors);

    /// <inheritdoc />
    public ISubspace Create(MatrixShape matrix, ScalarType dtype, Device device) =>
        new SvdSubspace(DeclareState(matrix, dtype), matrix, MatrixSides.SideOf(Type, matrix), Math.Min(Rank, matrix.Min), UpdateProjGap, Scale, dtype, device);

    /// <inheritdoc />
    public long[] ProjectedShape(MatrixShape matrix) => MatrixSides.BasisProjectedShape(Type, matrix, Rank);

    /// <inheritdoc />
    public StateDeclaration DeclareState(MatrixShape matrix, ScalarType dtype) =>
        BasisSubspace.Declare(MatrixSides.SideOf(Type, matrix), matrix, Math.Min(Rank, matrix.Min), dtype);

    /// <inheritdoc />
    public void Validate(string where)
    {
        if (Rank < 1) throw new ArgumentOutOfRangeException("rank", Rank, $"{where}: rank must be >= 1.");
        if (UpdateProjGap < 1) throw new ArgumentOutOfRangeException("update_proj_gap", UpdateProjGap, $"{where}: update_proj_gap must be >= 1.");
        if (!(Scale > 0) || double.IsInfinity(Scale)) throw new ArgumentOutOfRangeException("scale", Scale, $"{where}: scale must be finite and > 0.");
        RuleChecks.Defined("proj_type", Type, where);
        RuleChecks.Defined(nameof(Tensors), Tensors, where);
    }

    /// <inheritdoc />
    public void Save(StateWriter writer)
    {
        writer.Long("rank", Rank);
        writer.Long("update_proj_gap", UpdateProjGap);
        writer.Double("scale", Scale);
        writer.Long("proj_type", (long)Type);
        writer.Long("tensors", (long)Tensors);
    }

    internal static SvdProjection Read(StateReader reader) => new(
        (int)reader.Long("rank"), (int)reader.Long("update_proj_gap"), reader.Double("scale"),
        (ProjectionType)reader.Long("proj_type"), (TensorsProjected)reader.Long("tensors"));
}
