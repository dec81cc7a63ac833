using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// A subspace spanned by orthonormal singular-vector bases, refreshed every <c>UpdateProjGap</c> steps:
/// the left basis U_r (m×r) and/or the right basis V_rᵀ (r×n). Projection, back-projection and state
/// handling are shared; derived classes say how a refresh estimates the basis.
/// </summary>
internal abstract class BasisSubspace : ISubspace, IBasisDiagnostics, IProductProjection
{
    private readonly TensorSlot _left;   // U_r, m×r
    private readonly TensorSlot _right;  // V_rᵀ, r×n
    private readonly CounterSlot _refreshCount;

    /// <summary>Creates an empty subspace with the state of <paramref name="declaration"/> (from <see cref="Declare"/>); the basis is computed at the first refresh.</summary>
    protected BasisSubspace(StateDeclaration declaration, MatrixShape matrix, ProjectionSide side, long rank, long updateProjGap, double scale, ScalarType dtype, Device device)
    {
        State = new StateSlots(declaration, device);
        (_left, _right, _refreshCount) = (State.Tensor("left_basis"), State.Tensor("right_basis"), State.Counter("refresh_count"));
        Matrix = matrix;
        Side = side;
        Rank = rank;
        UpdateProjGap = updateProjGap;
        Scale = scale;
        DType = dtype;
        ProjectedShape = MatrixSides.ProjectedShape(side, matrix, rank);
    }

    /// <summary>The gradient matrix shape.</summary>
    public MatrixShape Matrix { get; }
    /// <summary>The side(s) projected.</summary>
    public ProjectionSide Side { get; }
    /// <summary>The effective rank (the requested rank clamped to min(m, n)).</summary>
    public long Rank { get; }
    /// <summary>T: refresh at steps 1, T+1, 2T+1, …</summary>
    public long UpdateProjGap { get; }
    /// <summary>α, applied by the back-projection.</summary>
    public double Scale { get; }
    /// <summary>The basis dtype.</summary>
    public ScalarType DType { get; }
    /// <summary>How many refreshes have computed a basis (saved, so seeded refreshes resume exactly).</summary>
    public long RefreshCount => _refreshCount.Value;

    /// <summary>
    /// The bases' state: side and rank (checked on load), the refresh count, U_r (m×r) and V_rᵀ (r×n) as the
    /// side needs them, set at the first refresh; then <paramref name="extra"/> entries of a derived subspace.
    /// </summary>
    protected internal static StateDeclaration Declare(ProjectionSide side, MatrixShape matrix, long rank, ScalarType dtype, params IEnumerable<StateEntry> extra) =>
        new([
            new ConstantEntry("side", (long)side), new ConstantEntry("rank", rank), new CounterEntry("refresh_count"),
            new TensorEntry("left_basis", [matrix.Rows, rank], dtype, side != ProjectionSide.Right ? SlotPresence.WhenSet : SlotPresence.Unused),
            new TensorEntry("right_basis", [rank, matrix.Cols], dtype, side != ProjectionSide.Left ? SlotPresence.WhenSet : SlotPresence.Unused),
            .. extra]);

    /// <inheritdoc />
    public StateSlots State { get; }

    /// <summary>
    /// Reads the declared state and checks that a two-sided basis is whole (both bases or neither); a derived subspace
    /// overrides it to check more.
    /// </summary>
    public virtual void Load(StateReader reader)
    {
        State.Load(reader);
        if (Side == ProjectionSide.Both && _left.HasValue != _right.HasValue)
            throw new InvalidDataException(
                $"{reader.Context}: entry '{(_left.HasValue ? "right_basis" : "left_basis")}' is absent but '{(_left.HasValue ? "left_basis" : "right_basis")}' is present; a two-sided basis has both.");
    }

    /// <inheritdoc />
    public long[] ProjectedShape { get; }
    /// <inheritdoc />
    public bool HasBasis => _left.HasValue || _right.HasValue;
    /// <summary>U_r (m×r), or null for a right projection or before the first refresh.</summary>
    public Tensor? Left => _left.Value;
    /// <summary>V_rᵀ (r×n), or null for a left projection or before the first refresh.</summary>
    public Tensor? Right => _right.Value;

    /// <summary>GaLore's schedule: at the first step and at steps 1, T+1, 2T+1, …</summary>
    public virtual bool NeedsRefresh(long step) => RefreshSchedule.EveryGapFromFirstStep(UpdateProjGap).IsDue(step, HasBasis);

    /// <inheritdoc />
    public Tensor? Refresh(Tensor gradient, in SubspaceContext context)
    {
        using var scope = NewDisposeScope();
        var g32 = gradient.to(ScalarType.Float32); // owned by the scope when it is a copy
        var (u, vh) = EstimateBasis(g32, RefreshCount, context);
        // Compute both before replacing either, so a failure keeps the previous basis whole.
        var left = u is null ? null : CanonicalOrFail(u, columns: true);
        var right = vh is null ? null : CanonicalOrFail(vh, columns: false);
        if (left is not null) _left.Set(left.to(DType, copy: true));
        if (right is not null) _right.Set(right.to(DType, copy: true));
        _refreshCount.Value++;
        return null;
    }

    /// <summary>
    /// Estimates the top-<see cref="Rank"/> bases of a float32 gradient for refresh number
    /// <paramref name="refreshIndex"/> (0-based): U_r (m×r) when <see cref="Side"/> needs a left basis,
    /// V_rᵀ (r×n) when it needs a right one, null otherwise. Signs need not be canonical.
    /// </summary>
    protected abstract (Tensor? Left, Tensor? Right) EstimateBasis(Tensor gradient, long refreshIndex, in SubspaceContext context);

    /// <summary>
    /// The whole gradient at a refresh (every rank must estimate the same basis from the summed G); R alone on the
    /// other steps, whose apply phase reads only the rule's direction.
    /// </summary>
    public virtual GradientExchange Exchange(long step) => NeedsRefresh(step) ? GradientExchange.Full : GradientExchange.Projected();

    /// <summary>Nothing to do for bases estimated at refreshes only; Online Subspace Descent overrides it.</summary>
    public virtual void AfterUpdate(Tensor gradient, Tensor projected, in SubspaceContext context) { }

    /// <summary>True when the side needs U_r.</summary>
    protected bool NeedsLeft => Side != ProjectionSide.Right;
    /// <summary>True when the side needs V_rᵀ.</summary>
    protected bool NeedsRight => Side != ProjectionSide.Left;

    /// <inheritdoc />
    public Tensor Project(Tensor gradient) => Side switch
    {
        ProjectionSide.Right => gradient.mm(Right!.t()),
        ProjectionSide.Left => Left!.t().mm(gradient),
        _ => Left!.t().mm(gradient).mm(Right!.t()),
    };

    /// <inheritdoc />
    public ScalarType BasisType => DType;

    /// <inheritdoc />
    public Tensor ProjectProduct(Tensor a, Tensor b) => Side switch
    {
        ProjectionSide.Right => a.t().mm(b.mm(Right!.t())),
        ProjectionSide.Left => a.mm(Left!).t().mm(b),
        _ => a.mm(Left!).t().mm(b.mm(Right!.t())),
    };

    /// <inheritdoc />
    public bool ProductIsCheaper(long tokens)
    {
        if (Side != ProjectionSide.Both) return IProductProjection.OneSidedProductIsCheaper(Matrix, Rank, tokens);
        var (m, n, r) = ((double)Matrix.Rows, (double)Matrix.Cols, (double)Rank);
        return tokens * r * (m + n + r) < tokens * m * n + r * m * n + r * n * r;
    }

    /// <inheritdoc />
    public Tensor ProjectBack(Tensor lowRank)
    {
        var back = ProjectBackUnscaled(lowRank);
        if (Scale == 1.0) return back;
        using var scale = Scale.ToScalar();
        return back.mul_(scale);
    }

    /// <summary>Back(lowRank) without the scale α: the orthogonal projection's map back to the full matrix.</summary>
    public Tensor ProjectBackUnscaled(Tensor lowRank) => Side switch
    {
        ProjectionSide.Right => lowRank.mm(Right!),
        ProjectionSide.Left => Left!.mm(lowRank),
        _ => Left!.mm(lowRank).mm(Right!),
    };

    /// <inheritdoc />
    public void AddProjectedBack(Tensor target, Tensor lowRank, double alpha)
    {
        if (target.dtype != lowRank.dtype || target.dtype != DType)
        {
            using var back = ProjectBack(lowRank);
            using var coefficient = alpha.ToScalar();
            target.add_(back, alpha: coefficient);
            return;
        }
        var a = (float)(alpha * Scale);
        switch (Side)
        {
            case ProjectionSide.Right: target.addmm_(lowRank, Right!, beta: 1, alpha: a); break;
            case ProjectionSide.Left: target.addmm_(Left!, lowRank, beta: 1, alpha: a); break;
            default:
                using (var nv = lowRank.mm(Right!)) target.addmm_(Left!, nv, beta: 1, alpha: a);
                break;
        }
    }

    /// <summary>W ← W − c·Back(N).</summary>
    public virtual void Apply(in SubspaceUpdate update) => AddProjectedBack(update.Target, update.Direction, -update.Coefficient);

    /// <summary>True for orthonormal bases (SVD, randomized, cross-head); Online Subspace Descent's learned basis is not.</summary>
    public virtual bool ProjectsOrthogonally => true;

    /// <summary>Copies of the bases as row-orthonormal float32 matrices (U_rᵀ and/or V_rᵀ), or null before the first refresh.</summary>
    public object? Snapshot()
    {
        if (!HasBasis) return null;
        var rows = new List<Tensor>();
        if (Left is { } u) rows.Add(u.t().to(ScalarType.Float32, copy: true));
        if (Right is { } v) rows.Add(v.to(ScalarType.Float32, copy: true));
        return rows.ToArray();
    }

    /// <summary>Mean over the sides of ‖B_old B_newᵀ‖²_F / r (row bases).</summary>
    public double? Overlap(object snapshot)
    {
        if (snapshot is not Tensor[] old || Snapshot() is not Tensor[] current || old.Length != current.Length) return null;
        double sum = 0;
        for (var i = 0; i < old.Length; i++)
            sum += old[i].mm(current[i].t()).square().sum().item<float>() / old[i].shape[0];
        return sum / old.Length;
    }

    /// <summary>
    /// False: W ← W − c·Back(N) needs R only. A derived subspace whose <see cref="Apply"/> or
    /// <see cref="AfterUpdate"/> reads the gradient overrides it.
    /// </summary>
    public virtual bool ReadsGradientAfterProjection => false;

    internal static Tensor CanonicalOrFail(Tensor basis, bool columns)
    {
        if (!basis.isfinite().all().item<bool>())
            throw new SubspaceRefreshException("the estimated basis has non-finite entries");
        var b = basis.contiguous();
        if (columns) SignCanonicalization.Columns(b); else SignCanonicalization.Rows(b);
        return b;
    }
}
