using LowRankOptim.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// SVD-free low-rank projection by DCT column selection (Modoranu et al., arXiv 2505.17967, "DCT-AdamW"; docs/algorithms/dct.md):
/// the basis is the orthonormal DCT-II matrix C of the projected dimension s, built once per size and
/// shared (<see cref="DctBasis"/>); every re-selection keeps the r columns of C whose images G·C (right) or
/// rows of Cᵀ·G (left) have the largest ℓp norm, in descending score order with ties to the lower index.
/// The per-parameter state is those r indices only. Moments are kept unchanged across a re-selection.
/// </summary>
/// <param name="Rank">r ≥ 1; clamped to the basis size s.</param>
/// <param name="UpdateProjGap">T ≥ 1: re-selection at steps k = 1 and k mod T = 0 (the reference's schedule; T = 1 every step).</param>
/// <param name="Scale">α &gt; 0, multiplies the back-projected update (DCT-AdamW has none: 1).</param>
/// <param name="Method">How G·C is computed at a re-selection and, with <see cref="DctTransformMethod.FastTransformProjection"/>, every projection and back-projection (<see cref="DctTransformMethod"/>).</param>
/// <param name="ScoreNorm">p of the ℓp norm that scores a column, p ≥ 1 (∞ allowed); the reference's <c>ell_norm</c> (default 1).</param>
/// <param name="MaxShape">2-D views with a dimension ≥ this use the full space (embeddings, LM heads); the reference's <c>max_shape</c>.</param>
/// <param name="Type">The side: <see cref="ProjectionType.Std"/> projects the smaller dimension (right when m ≥ n, s = n), as the reference. <see cref="ProjectionType.Full"/> is not supported.</param>
/// <param name="Tensors">Which parameters the projection applies to; the others use the full space.</param>
public sealed record DctProjection(
    int Rank = 128,
    int UpdateProjGap = 1,
    double Scale = 1.0,
    DctTransformMethod Method = DctTransformMethod.MatrixProduct,
    double ScoreNorm = 1.0,
    long MaxShape = 32000,
    ProjectionType Type = ProjectionType.Std,
    TensorsProjected Tensors = TensorsProjected.MatricesOnly) : IProjectionConfig
{
    /// <summary>
    /// Which kernels compute the ℓ1 column (or row) scores at a re-selection (<see cref="ScoreNorm"/> = 1 only).
    /// <see cref="KernelPreference.Auto"/>: the fused CPU ℓ1 kernel for contiguous float32/bfloat16 CPU
    /// tensors, the TorchSharp path (1ᵀ·|S| or vector_norm) otherwise and on every other device;
    /// <see cref="KernelPreference.Reference"/>: always the TorchSharp path; an explicit
    /// <see cref="KernelPreference.Cpu"/> or <see cref="KernelPreference.Cuda"/> that cannot be honoured
    /// throws when the subspace is created. An execution choice: not written to checkpoints.
    /// </summary>
    public KernelPreference Kernel { get; init; } = KernelPreference.Auto;

    /// <summary>The saved fields: entry names (the reference's option names), constraints, order (the checkpoint format).</summary>
    internal static readonly ConfigSchema<DctProjection> Schema = new ConfigSchema<DctProjection>(new())
        .Int("rank", c => c.Rank, (c, v) => c with { Rank = v }, Check.AtLeast(1))
        .Int("update_proj_gap", c => c.UpdateProjGap, (c, v) => c with { UpdateProjGap = v }, Check.AtLeast(1))
        .Double("scale", c => c.Scale, (c, v) => c with { Scale = v }, Check.FinitePositive)
        .Enum("sim_type", c => c.Method, (c, v) => c with { Method = v })
        .Double("ell_norm", c => c.ScoreNorm, (c, v) => c with { ScoreNorm = v }, Check.AtLeast(1.0).Because("or +infinity"))
        .Long("max_shape", c => c.MaxShape, (c, v) => c with { MaxShape = v }, Check.AtLeast(1L))
        .Enum("proj_type", c => c.Type, (c, v) => c with { Type = v },
            Check.OneOf(ProjectionType.Std, ProjectionType.ReverseStd, ProjectionType.Left, ProjectionType.Right)
                .Because("the DCT projector selects columns on one side"))
        .Enum("tensors", c => c.Tensors, (c, v) => c with { Tensors = v }, option: nameof(Tensors))
        .ExecutionPolicy("kernel", c => c.Kernel);

    /// <inheritdoc />
    public MatrixShape? MatrixViewOf(long[] shape) =>
        MatrixSides.ViewOf(shape, Tensors) is MatrixShape m && m.Rows < MaxShape && m.Cols < MaxShape ? m : null;

    /// <inheritdoc />
    public long[] ProjectedShape(MatrixShape matrix) => MatrixSides.ProjectedShape(MatrixSides.SideOf(Type, matrix), matrix, EffectiveRank(matrix));

    /// <inheritdoc />
    public StateDeclaration DeclareState(MatrixShape matrix, ScalarType dtype)
    {
        var side = MatrixSides.SideOf(Type, matrix);
        // The r int64 indices; the s×s basis is shared by every matrix of the size (DctBasis.CachedBytes).
        return new(new ConstantEntry("side", (long)side), new ConstantEntry("rank", EffectiveRank(matrix)),
            new ConstantEntry("basis_size", side == ProjectionSide.Right ? matrix.Cols : matrix.Rows),
            new TensorEntry("dct_indices", [EffectiveRank(matrix)], ScalarType.Int64, SlotPresence.WhenSet));
    }

    /// <summary>min(r, s): the rank clamped to the basis size s of the projected side.</summary>
    private long EffectiveRank(MatrixShape matrix) =>
        Math.Min(Rank, MatrixSides.SideOf(Type, matrix) == ProjectionSide.Right ? matrix.Cols : matrix.Rows);

    /// <inheritdoc />
    public ISubspace Create(MatrixShape matrix, ScalarType dtype, Device device) => new DctSubspace(this, matrix, dtype, device);

    /// <inheritdoc />
    public void Validate(string where) => Schema.Validate(this, where);

    /// <inheritdoc />
    public IProjectionConfig WithExecutionPolicyOf(IProjectionConfig current) => current is DctProjection c ? this with { Kernel = c.Kernel } : this;

    /// <inheritdoc />
    public void Save(StateWriter writer) => Schema.Save(this, writer);
}
