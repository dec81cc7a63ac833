using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The subspace of <see cref="GaLorePlusProjection"/> without heads or with reading (a): a rank-r basis on one
/// side of the whole matrix, estimated by randomized subspace iteration from the drawn head's block (or the
/// whole matrix without heads), plus the optional sparse residual.
/// </summary>
internal sealed class CrossHeadSubspace : BasisSubspace
{
    private readonly GaLorePlusProjection _config;
    private readonly GaLorePlusProjection.Layout _layout;
    private readonly SparseResidual? _residual;

    internal CrossHeadSubspace(GaLorePlusProjection config, MatrixShape matrix, GaLorePlusProjection.Layout layout, ScalarType dtype, Device device)
        : base(config.DeclareState(matrix, dtype), matrix, layout.Side, layout.Rank, config.UpdateProjGap, config.Scale, dtype, device)
    {
        _config = config;
        _layout = layout;
        var k = config.ResidualElements(matrix);
        _residual = k > 0 ? new SparseResidual(State, matrix, k, config.ResidualWarmup, config.ResidualReestimate, config.ResidualScale, dtype) : null;
    }

    /// <summary>The head the last refresh estimated the basis from (−1 before the first; not saved).</summary>
    public int LastHead { get; private set; } = -1;

    /// <summary>The sparse residual's state, or null when ρ = 0.</summary>
    public SparseResidual? Residual => _residual;

    /// <inheritdoc />
    protected override (Tensor? Left, Tensor? Right) EstimateBasis(Tensor gradient, long refreshIndex, in SubspaceContext context)
    {
        var block = gradient;
        if (_config.Heads is not null)
        {
            LastHead = GaLorePlusProjection.HeadFor(_config.Seed, context.ParameterIndex, refreshIndex, _layout.Heads);
            block = gradient.narrow(_layout.Axis == HeadAxis.Rows ? 0 : 1, LastHead * _layout.HeadSize, _layout.HeadSize);
        }
        return RandomizedSvdSubspace.Estimate(block, Rank, _config.Oversampling, _config.PowerIterations,
            RandomizedSvdProjection.SketchSeed(_config.Seed, context.ParameterIndex, refreshIndex), NeedsLeft, NeedsRight);
    }

    /// <summary>The basis's exchange; with a sparse residual, the whole gradient until Ω is chosen, then R and G on Ω.</summary>
    public override GradientExchange Exchange(long step) =>
        _residual is null || NeedsRefresh(step) ? base.Exchange(step) : _residual.Exchange();

    /// <summary>True with a sparse residual, which reads the gradient (E = G − Back(R)).</summary>
    public override bool ReadsGradientAfterProjection => _residual is not null;

    /// <summary>The back-projected direction, then the sparse residual's own term (its moments follow the group's Adam config).</summary>
    public override void Apply(in SubspaceUpdate update)
    {
        base.Apply(update);
        _residual?.Update(update.Target, update.Gradient, update.Projected, ProjectBackUnscaled, RefreshCount, update.Rule);
    }

    /// <inheritdoc />
    public override void Load(StateReader reader)
    {
        base.Load(reader);
        _residual?.Loaded(reader, RefreshCount);
    }

}
