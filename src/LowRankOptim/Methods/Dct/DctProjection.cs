using LowRankOptim.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// SVD-free low-rank projection by DCT column selection (Modoranu et al., arXiv 2505.17967, "DCT-AdamW"):
/// the basis is the orthonormal DCT-II matrix C of the projected dimension s, built once per size and
/// shared (<see cref="DctBasis"/>); every re-selection keeps the r columns of C whose images G·C (right) or
/// rows of Cᵀ·G (left) have the largest ℓp norm, in descending score order with ties to the lower index.
/// The per-parameter state is those r indices only. Moments are kept unchanged across a re-selection.
/// </summary>
/// <param name="Rank">r ≥ 1; clamped to the basis size s.</param>
/// <param name="UpdateProjGap">T ≥ 1: re-selection at steps k = 1 and k mod T = 0 (the reference's schedule; T = 1 every step).</param>
/// <param name="Scale">α &gt; 0, multiplies the back-projected update (DCT-AdamW has none: 1).</param>
/// <param name="Method">How G·C is computed at a re-selection.</param>
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
    public void Validate(string where)
    {
        if (Rank < 1) throw new ArgumentOutOfRangeException("rank", Rank, $"{where}: rank must be >= 1.");
        if (UpdateProjGap < 1) throw new ArgumentOutOfRangeException("update_proj_gap", UpdateProjGap, $"{where}: update_proj_gap must be >= 1.");
        if (!(Scale > 0) || double.IsInfinity(Scale)) throw new ArgumentOutOfRangeException("scale", Scale, $"{where}: scale must be finite and > 0.");
        RuleChecks.Defined("sim_type", Method, where);
        if (!(ScoreNorm >= 1)) throw new ArgumentOutOfRangeException("ell_norm", ScoreNorm, $"{where}: ell_norm must be >= 1 (or +infinity).");
        if (MaxShape < 1) throw new ArgumentOutOfRangeException("max_shape", MaxShape, $"{where}: max_shape must be >= 1.");
        if (!Enum.IsDefined(Type) || Type == ProjectionType.Full)
            throw new ArgumentOutOfRangeException("proj_type", Type, $"{where}: proj_type must be one of Std, ReverseStd, Left, Right (the DCT projector selects columns on one side).");
        RuleChecks.Defined(nameof(Tensors), Tensors, where);
        RuleChecks.Defined("kernel", Kernel, where);
    }

    /// <inheritdoc />
    public IProjectionConfig WithExecutionPolicyOf(IProjectionConfig current) => current is DctProjection c ? this with { Kernel = c.Kernel } : this;

    /// <inheritdoc />
    public void Save(StateWriter writer)
    {
        writer.Long("rank", Rank);
        writer.Long("update_proj_gap", UpdateProjGap);
        writer.Double("scale", Scale);
        writer.Long("sim_type", (long)Method);
        writer.Double("ell_norm", ScoreNorm);
        writer.Long("max_shape", MaxShape);
        writer.Long("proj_type", (long)Type);
        writer.Long("tensors", (long)Tensors);
    }

    internal static DctProjection Read(StateReader reader) => new(
        (int)reader.Long("rank"), (int)reader.Long("update_proj_gap"), reader.Double("scale"),
        (DctTransformMethod)reader.Long("sim_type"), reader.Double("ell_norm"), reader.Long("max_shape"),
        (ProjectionType)reader.Long("proj_type"), (TensorsProjected)reader.Long("tensors"));
}
