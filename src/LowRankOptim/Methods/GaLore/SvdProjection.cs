using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// GaLore's projection (Zhao et al., ICML 2024; docs/algorithms/galore.md): every <see cref="UpdateProjGap"/> steps the basis is
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
    /// <summary>The saved fields: entry names, constraints, order (the checkpoint format).</summary>
    internal static readonly ConfigSchema<SvdProjection> Schema = new ConfigSchema<SvdProjection>(new())
        .Int("rank", c => c.Rank, (c, v) => c with { Rank = v }, Check.AtLeast(1))
        .Int("update_proj_gap", c => c.UpdateProjGap, (c, v) => c with { UpdateProjGap = v }, Check.AtLeast(1))
        .Double("scale", c => c.Scale, (c, v) => c with { Scale = v }, Check.FinitePositive)
        .Enum("proj_type", c => c.Type, (c, v) => c with { Type = v })
        .Enum("tensors", c => c.Tensors, (c, v) => c with { Tensors = v }, option: nameof(Tensors));

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
    public void Validate(string where) => Schema.Validate(this, where);

    /// <inheritdoc />
    public void Save(StateWriter writer) => Schema.Save(this, writer);
}
