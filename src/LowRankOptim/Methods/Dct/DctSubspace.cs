using LowRankOptim.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The subspace of <see cref="DctProjection"/>: r selected columns Q = C[:, idx] of the shared DCT-II basis.
/// Right side (s = n): R = G·Q (m×r), Back(N) = N·Qᵀ. Left side (s = m): R = Qᵀ·G (r×n), Back(N) = Q·N.
/// With <see cref="DctTransformMethod.FastTransformProjection"/> both are computed by <see cref="DctTransform"/>
/// (selected slices of the transform, and the forward DCT-II of N scattered into s slices) and Q is never gathered.
/// </summary>
internal sealed class DctSubspace : ISubspace, IBasisDiagnostics, IProductProjection
{
    private readonly DctProjection _config;
    private readonly ScalarType _dtype;
    private Device _device;
    private DctBasis.Lease _basis;
    private readonly TensorSlot _indices; // int64 [r], descending score order
    private readonly KernelChoice<IL1NormsKernel> _l1;

    internal DctSubspace(DctProjection config, MatrixShape matrix, ScalarType dtype, Device device)
    {
        _config = config;
        Matrix = matrix;
        Side = MatrixSides.SideOf(config.Type, matrix);
        BasisSize = Side == ProjectionSide.Right ? matrix.Cols : matrix.Rows;
        Rank = Math.Min(config.Rank, BasisSize);
        ProjectedShape = MatrixSides.ProjectedShape(Side, matrix, Rank);
        _dtype = dtype;
        _device = device;
        State = new StateSlots(config.DeclareState(matrix, dtype), device);
        _indices = State.Tensor("dct_indices");
        _basis = DctBasis.Acquire(BasisSize, dtype, device);
        _l1 = new($"the transformed gradient of shape {StateReader.Format([matrix.Rows, matrix.Cols])}");
        // An explicit kernel choice that cannot be honoured fails here, with the reason, not at the first re-selection.
        if (config.ScoreNorm == 1.0)
            _l1.For(config.Kernel.Backend(), device,
                KernelStorage.Dense(TransformsAtRefresh && dtype != ScalarType.Float64 ? ScalarType.Float32 : dtype),
                matrix.Rows * matrix.Cols);
    }

    /// <inheritdoc />
    public StateSlots State { get; }

    /// <summary>Re-selections transform G by FFT (<see cref="DctTransformMethod.FastTransform"/> and <see cref="DctTransformMethod.FastTransformProjection"/>).</summary>
    private bool TransformsAtRefresh => _config.Method != DctTransformMethod.MatrixProduct;

    /// <summary>Projections and back-projections transform too (<see cref="DctTransformMethod.FastTransformProjection"/>): the s×s basis is never built.</summary>
    private bool TransformsProjections => _config.Method == DctTransformMethod.FastTransformProjection;

    /// <summary>The transformed dimension: 1 (rows of G) on the right, 0 (columns) on the left.</summary>
    private long Dim => Side == ProjectionSide.Right ? 1L : 0L;

    /// <summary>The gradient matrix shape.</summary>
    public MatrixShape Matrix { get; }
    /// <summary>Left (s = m) or right (s = n).</summary>
    public ProjectionSide Side { get; }
    /// <summary>s, the size of the DCT basis the columns are selected from.</summary>
    public long BasisSize { get; }
    /// <summary>The effective rank, min(r, s).</summary>
    public long Rank { get; }
    /// <inheritdoc />
    public long[] ProjectedShape { get; }
    /// <inheritdoc />
    public bool HasBasis => _indices.HasValue;
    /// <summary>The selected column indices in slot order (descending score at the last re-selection), or null before the first.</summary>
    public long[]? Indices => _indices.Value?.cpu().data<long>().ToArray();
    /// <summary>The selected DCT columns are orthonormal: Proj(G) holds an orthogonal projection's coefficients.</summary>
    public bool ProjectsOrthogonally => true;

    /// <summary>The selected column indices, or null before the first selection.</summary>
    public object? Snapshot() => Indices;

    /// <summary>Shared columns / r: for orthonormal columns of one basis, ‖B_oldᵀ B_new‖²_F / r.</summary>
    public double? Overlap(object snapshot) =>
        snapshot is long[] old && Indices is { } current ? (double)old.Intersect(current).Count() / Rank : null;

    /// <summary>The reference's schedule: k = 1 and k mod T = 0 (and whenever no selection exists yet).</summary>
    public bool NeedsRefresh(long step) => RefreshSchedule.FirstStepAndMultiplesOfGap(_config.UpdateProjGap).IsDue(step, HasBasis);

    /// <inheritdoc />
    public Tensor? Refresh(Tensor gradient, in SubspaceContext context)
    {
        Tensor projected;
        using (var scope = NewDisposeScope())
        {
            var dim = Dim;
            var reduce = 1 - dim;
            // Score of column j of G·C (right) or row j of Cᵀ·G (left): its ℓp norm over the other dimension.
            Tensor indices;
            if (TransformsAtRefresh)
            {
                // Makhoul's order: score the permuted slices, reorder only the s scores, gather the r winners.
                var permuted = DctTransform.TimesBasisPermuted(gradient, dim);
                var source = DctTransform.SourcePositions(BasisSize, _device);
                var scores = Scores(permuted, reduce).index_select(0, source);
                indices = tensor(TopIndices(scores, Rank), device: _device);
                projected = permuted.index_select(dim, source.index_select(0, indices)).to(gradient.dtype).MoveToOuterDisposeScope();
            }
            else
            {
                var transformed = Side == ProjectionSide.Right ? gradient.mm(_basis.Basis) : _basis.Basis.t().mm(gradient);
                indices = tensor(TopIndices(Scores(transformed, reduce), Rank), device: _device);
                projected = transformed.index_select(dim, indices).MoveToOuterDisposeScope();
            }
            _indices.Set(indices);
        }
        return projected;
    }

    /// <summary>
    /// ℓp norms over <paramref name="reduce"/>, accumulated in at least float32: the selected ℓ1 kernel where
    /// <see cref="ScoreKernels"/> returns one, else the TorchSharp path below (the reference).
    /// </summary>
    private Tensor Scores(Tensor transformed, long reduce)
    {
        if (ScoreKernels(transformed) is { } kernel)
        {
            var axis = reduce == 0 ? L1Axis.Columns : L1Axis.Rows;
            if (transformed.is_contiguous()) return kernel.L1Norms(transformed, axis);
            using var contiguous = transformed.contiguous(); // an explicit choice: the kernel needs dense rows
            return kernel.L1Norms(contiguous, axis);
        }
        return ReferenceScores(transformed, reduce, _config.ScoreNorm);
    }

    /// <summary>
    /// The ℓ1 kernel for these scores, or null for the TorchSharp path: ℓ1 scores only; under Auto a fused kernel
    /// where the selection picks one (the CPU kernel for contiguous float32/bfloat16; the CUDA one is registered for
    /// explicit choices only), under Reference never.
    /// </summary>
    private IL1NormsKernel? ScoreKernels(Tensor transformed)
    {
        if (_config.ScoreNorm != 1.0) return null;
        var kernel = _l1.ForCall(_config.Kernel.Backend(), transformed.device, KernelStorage.Dense(transformed.dtype), transformed.numel(), transformed);
        return kernel.Backend == KernelBackend.Reference ? null : kernel;
    }

    /// <summary>The TorchSharp scores: ℓp norms over <paramref name="reduce"/>, accumulated in at least float32.</summary>
    internal static Tensor ReferenceScores(Tensor transformed, long reduce, double scoreNorm)
    {
        var t = transformed.dtype is ScalarType.Float32 or ScalarType.Float64 ? transformed : transformed.to(ScalarType.Float32);
        // Column sums of a row-major matrix are a slow strided reduction on the CPU; 1ᵀ·|S| is a fast GEMV.
        if (scoreNorm == 1.0 && reduce == 0)
            return ones([1, t.shape[0]], dtype: t.dtype, device: t.device).mm(t.abs()).squeeze(0);
        return linalg.vector_norm(t, scoreNorm, [reduce]);
    }

    /// <summary>
    /// The indices of the <paramref name="count"/> largest scores, in descending score order; equal scores are
    /// ordered by the lower index first (a deterministic contract the reference's unsorted top-k lacks).
    /// </summary>
    internal static long[] TopIndices(Tensor scores, long count)
    {
        var values = scores.detach().cpu().to(ScalarType.Float64).data<double>().ToArray();
        if (values.Any(double.IsNaN)) throw new SubspaceRefreshException("the DCT scores have NaN entries");
        var order = Enumerable.Range(0, values.Length).ToArray();
        Array.Sort(order, (a, b) => values[a] != values[b] ? values[b].CompareTo(values[a]) : a.CompareTo(b));
        return order.Take((int)count).Select(i => (long)i).ToArray();
    }

    /// <summary>The shared s×s basis (built on first use); owned by the cache.</summary>
    internal Tensor SharedBasis => _basis.Basis;

    /// <summary>Q = C[:, idx] (s×r), gathered from the shared basis.</summary>
    private Tensor Columns() => _basis.Basis.index_select(1, _indices.Required);

    /// <summary>SourcePositions(s)[idx]: where the selected slices sit in Makhoul's order of the transform.</summary>
    private Tensor Positions()
    {
        using var source = DctTransform.SourcePositions(BasisSize, _device);
        return source.index_select(0, _indices.Required);
    }

    /// <inheritdoc />
    public Tensor Project(Tensor gradient)
    {
        if (TransformsProjections)
        {
            using var positions = Positions();
            return DctTransform.SelectedSlices(gradient, Dim, positions);
        }
        using var q = Columns();
        return Side == ProjectionSide.Right ? gradient.mm(q) : q.t().mm(gradient);
    }

    /// <inheritdoc />
    public ScalarType BasisType => _dtype;

    /// <inheritdoc />
    public bool ProductIsCheaper(long tokens) =>
        TransformsProjections ? TransformedProductIsCheaper(tokens) : IProductProjection.OneSidedProductIsCheaper(Matrix, Rank, tokens);

    /// <summary>
    /// With transforms, δᵀX's projection costs a transform of the B×s factor plus a B-deep product of r×o (o = m·n/s, the
    /// other dimension), against forming δᵀX (2·B·m·n) and transforming all m·n entries; τ ≈ 2.5·log₂(2s) + 10 flops per
    /// transformed entry (real FFT plus pairing, twiddles and copies). The product path wins whenever B &lt; o.
    /// </summary>
    private bool TransformedProductIsCheaper(long tokens)
    {
        double s = BasisSize, entries = (double)Matrix.Rows * Matrix.Cols, tau = 2.5 * Math.Log2(2 * s) + 10;
        return tokens * (tau * s + 2.0 * Rank * entries / s) < 2.0 * tokens * entries + tau * entries;
    }

    /// <inheritdoc />
    public Tensor ProjectProduct(Tensor a, Tensor b)
    {
        if (TransformsProjections)
        {
            // Right: (δᵀX)·Q = δᵀ·(X·Q); left: Qᵀ·(δᵀX) = (δ·Q)ᵀ·X. The B×s factor is transformed along its rows, and the
            // small product is taken in the transform's dtype (float32 for bfloat16 factors), then cast back.
            Tensor result;
            using (var scope = NewDisposeScope())
            {
                var positions = Positions();
                var work = DctTransform.WorkType(a.dtype);
                result = Side == ProjectionSide.Right
                    ? a.to(work).t().mm(DctTransform.SelectedSlices(b, 1, positions, work))
                    : DctTransform.SelectedSlices(a, 1, positions, work).t().mm(b.to(work));
                result = result.to(a.dtype).MoveToOuterDisposeScope();
            }
            return result;
        }
        using var q = Columns();
        return Side == ProjectionSide.Right ? a.t().mm(b.mm(q)) : a.mm(q).t().mm(b);
    }

    /// <inheritdoc />
    public Tensor ProjectBack(Tensor lowRank)
    {
        if (TransformsProjections)
        {
            using var positions = Positions();
            var result = empty([Matrix.Rows, Matrix.Cols], dtype: lowRank.dtype, device: lowRank.device);
            DctTransform.AddScatteredTimesBasisTransposed(lowRank, Dim, positions, result, _config.Scale, accumulate: false);
            return result;
        }
        using var q = Columns();
        var back = Side == ProjectionSide.Right ? lowRank.mm(q.t()) : q.mm(lowRank);
        if (_config.Scale == 1.0) return back;
        using var scale = _config.Scale.ToScalar();
        return back.mul_(scale);
    }

    /// <inheritdoc />
    public void AddProjectedBack(Tensor target, Tensor lowRank, double alpha)
    {
        if (TransformsProjections)
        {
            // α·scale is folded into the transform's twiddle factors; the float32 blocks are added in the target's dtype.
            using var positions = Positions();
            DctTransform.AddScatteredTimesBasisTransposed(lowRank, Dim, positions, target, alpha * _config.Scale, accumulate: true);
            return;
        }
        if (target.dtype != lowRank.dtype || target.dtype != _dtype)
        {
            using var back = ProjectBack(lowRank);
            using var coefficient = alpha.ToScalar();
            target.add_(back, alpha: coefficient);
            return;
        }
        using var q = Columns();
        var a = (float)(alpha * _config.Scale);
        if (Side == ProjectionSide.Right) target.addmm_(lowRank, q.t(), beta: 1, alpha: a);
        else target.addmm_(q, lowRank, beta: 1, alpha: a);
    }

    /// <summary>W ← W − c·Back(N).</summary>
    public void Apply(in SubspaceUpdate update) => AddProjectedBack(update.Target, update.Direction, -update.Coefficient);

    /// <summary>The whole gradient at a re-selection (the ℓp scores are not linear in G); R alone otherwise.</summary>
    public GradientExchange Exchange(long step) => NeedsRefresh(step) ? GradientExchange.Full : GradientExchange.Projected();

    /// <summary>False: the step after projection needs R only.</summary>
    public bool ReadsGradientAfterProjection => false;

    /// <inheritdoc />
    public void AfterUpdate(Tensor gradient, Tensor projected, in SubspaceContext context) { }

    /// <summary>Reads the state and checks every index lies in [0, s), once.</summary>
    public void Load(StateReader reader)
    {
        State.Load(reader);
        if (_indices.Value is not { } indices) return;
        using var scope = NewDisposeScope();
        using var zero = 0L.ToScalar();
        using var size = BasisSize.ToScalar();
        if (indices.lt(zero).logical_or(indices.ge(size)).any().item<bool>())
            throw new InvalidDataException($"{reader.Context}: entry 'dct_indices' holds an index outside [0, {BasisSize}).");
        if (indices.unique().Item1.numel() != indices.numel())
            throw new InvalidDataException($"{reader.Context}: entry 'dct_indices' holds an index twice; the selected columns are distinct.");
    }

    /// <summary>Moves the indices and takes the shared basis of the new device.</summary>
    public void MoveTo(Device device)
    {
        State.MoveTo(device);
        if (device.type == _device.type && device.index == _device.index) return;
        var lease = DctBasis.Acquire(BasisSize, _dtype, device);
        _basis.Dispose();
        _basis = lease;
        _device = device;
    }

    /// <summary>Disposes the indices and releases the shared basis.</summary>
    public void Dispose()
    {
        State.Dispose();
        _basis.Dispose();
    }
}
