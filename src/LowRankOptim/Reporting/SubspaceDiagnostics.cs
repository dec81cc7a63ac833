using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>One refresh of one parameter's subspace, as <see cref="SubspaceDiagnostics"/> saw it.</summary>
/// <param name="ParameterIndex">The parameter's index in the optimizer.</param>
/// <param name="Step">The 1-based step of the refresh.</param>
/// <param name="KeptShare">‖Proj(G)‖ / ‖G‖ for the step's gradient G and the new basis: the share of the gradient the subspace keeps (0–1).</param>
/// <param name="BasisOverlap">
/// How much the new basis overlaps the previous one: ‖B_oldᵀ B_new‖²_F / r, the mean squared cosine of the principal
/// angles (1: the same subspace, about r/min(m, n): unrelated); null at the first refresh.
/// </param>
/// <param name="SuggestedRank">
/// With <see cref="SubspaceDiagnostics.SuggestRanks"/>: the smallest rank whose best subspace keeps
/// <see cref="SubspaceDiagnostics.TargetShare"/> of this gradient (from its singular values); null otherwise.
/// </param>
public sealed record SubspaceObservation(int ParameterIndex, long Step, double KeptShare, double? BasisOverlap, long? SuggestedRank);

/// <summary>The diagnostics of one parameter over the refreshes seen so far.</summary>
/// <param name="ParameterIndex">The parameter's index in the optimizer.</param>
/// <param name="Refreshes">Refreshes observed.</param>
/// <param name="LastKeptShare">The kept share at the last refresh.</param>
/// <param name="MinKeptShare">The lowest kept share seen.</param>
/// <param name="MeanKeptShare">The mean kept share.</param>
/// <param name="LastOverlap">The overlap of the last two bases, null before a second refresh.</param>
/// <param name="MeanOverlap">The mean overlap of successive bases, null before a second refresh.</param>
/// <param name="SuggestedRank">The largest rank suggested so far (only with <see cref="SubspaceDiagnostics.SuggestRanks"/>).</param>
public sealed record ParameterDiagnostics(
    int ParameterIndex, int Refreshes, double LastKeptShare, double MinKeptShare, double MeanKeptShare,
    double? LastOverlap, double? MeanOverlap, long? SuggestedRank);

/// <summary>
/// Subspace diagnostics of an optimizer (<see cref="LowRankOptimizer.Diagnostics"/>), for choosing a rank: at each
/// refresh of an orthonormal basis (GaLore's SVD and randomized projectors, GaLore+'s cross-head bases, DCT
/// columns), the share of the gradient the new subspace keeps and the overlap with the previous basis; optionally
/// a rank suggestion. Work happens at refreshes only (two norms, a copy of the old basis and one r×r product), so
/// it stays on by default; the rank suggestion costs one singular-value decomposition per refresh and is off.
/// Reading: a kept share near 1 with a high overlap says the rank could be lower; a low kept share says much of
/// the gradient is dropped each step (a higher rank, or a shorter refresh period when the overlap is low too).
/// </summary>
public sealed class SubspaceDiagnostics : IRefreshObserver
{
    private readonly Dictionary<int, Accumulator> _parameters = [];
    private double _target = 0.9;

    /// <summary>Observe refreshes (default true).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Also suggest a rank at each refresh from the gradient's singular values (default false: one more SVD per refresh).</summary>
    public bool SuggestRanks { get; set; }

    /// <summary>The kept share a suggested rank must reach, in (0, 1] (default 0.9).</summary>
    public double TargetShare
    {
        get => _target;
        set => _target = value is > 0 and <= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "TargetShare must be in (0, 1].");
    }

    /// <summary>Raised at each observed refresh.</summary>
    public event EventHandler<SubspaceObservation>? Observed;

    /// <summary>Every parameter with at least one observed refresh, by index.</summary>
    public IReadOnlyList<ParameterDiagnostics> All => _parameters.OrderBy(p => p.Key).Select(p => p.Value.Snapshot(p.Key)).ToList();

    /// <summary>The diagnostics of parameter <paramref name="parameterIndex"/>, or null when none of its refreshes was observed.</summary>
    /// <param name="parameterIndex">The parameter's index in the optimizer.</param>
    public ParameterDiagnostics? Of(int parameterIndex) => _parameters.TryGetValue(parameterIndex, out var a) ? a.Snapshot(parameterIndex) : null;

    /// <summary>Forgets everything observed so far.</summary>
    public void Reset() => _parameters.Clear();

    object? IRefreshObserver.BeforeRefresh(LowRankParameterState state, ISubspace subspace) =>
        Enabled && subspace is IBasisDiagnostics { ProjectsOrthogonally: true } d ? d.Snapshot() ?? NoBasis : null;

    void IRefreshObserver.Refreshed(LowRankParameterState state, ISubspace subspace, long step, Tensor gradient, Tensor projected, object? before)
    {
        if (before is null || subspace is not IBasisDiagnostics d) return;
        var g = Norm(gradient);
        var share = g > 0 ? Math.Min(1.0, Norm(projected) / g) : 1.0;
        double? overlap = ReferenceEquals(before, NoBasis) ? null : d.Overlap(before);
        long? suggested = SuggestRanks ? Suggest(gradient) : null;
        if (!_parameters.TryGetValue(state.Index, out var a)) _parameters[state.Index] = a = new Accumulator();
        a.Add(share, overlap, suggested);
        Observed?.Invoke(this, new SubspaceObservation(state.Index, step, share, overlap, suggested));
    }

    private static double Norm(Tensor t) => t.norm().to(ScalarType.Float64).item<double>(); // any dtype

    /// <summary>The smallest k with sqrt(Σ_{i≤k} σ_i² / Σ σ_i²) ≥ <see cref="TargetShare"/>.</summary>
    private long Suggest(Tensor gradient)
    {
        var s = linalg.svdvals(gradient.to(ScalarType.Float32));
        var energy = s.square().cumsum(0);
        var total = energy[-1].item<float>();
        if (!(total > 0)) return 1;
        using var needed = ((float)(_target * _target) * total).ToScalar();
        var below = energy.lt(needed).sum().item<long>(); // the cumulative energy is nondecreasing
        return Math.Min(below + 1, s.shape[0]);
    }

    private static readonly object NoBasis = new();

    private sealed class Accumulator
    {
        private int _count, _overlaps;
        private double _shareSum, _overlapSum, _last, _min = double.MaxValue;
        private double? _lastOverlap;
        private long? _suggested;

        public void Add(double share, double? overlap, long? suggested)
        {
            _count++;
            _shareSum += share;
            _last = share;
            _min = Math.Min(_min, share);
            if (overlap is double o)
            {
                _overlaps++;
                _overlapSum += o;
                _lastOverlap = o;
            }
            if (suggested is long s) _suggested = Math.Max(_suggested ?? 0, s);
        }

        public ParameterDiagnostics Snapshot(int index) => new(index, _count, _last, _min, _shareSum / _count,
            _lastOverlap, _overlaps > 0 ? _overlapSum / _overlaps : null, _suggested);
    }
}

/// <summary>
/// The step engine's optional hook at refreshes (<see cref="StepEngine"/>): told before a due refresh, and after the
/// project phase of a step whose refresh succeeded. Work done here lives in the step's dispose scope.
/// </summary>
internal interface IRefreshObserver
{
    /// <summary>Before a due refresh: what the observer keeps until <see cref="Refreshed"/> (null: not interested).</summary>
    object? BeforeRefresh(LowRankParameterState state, ISubspace subspace);

    /// <summary>After the project phase of a refreshed step: G as the subspace's matrix and R = Proj(G) with the new basis.</summary>
    void Refreshed(LowRankParameterState state, ISubspace subspace, long step, Tensor gradient, Tensor projected, object? before);
}

/// <summary>A subspace whose basis the diagnostics can compare across refreshes.</summary>
internal interface IBasisDiagnostics
{
    /// <summary>True when Proj(G) holds the coefficients of an orthogonal projection, so ‖Proj(G)‖ / ‖G‖ is the kept share.</summary>
    bool ProjectsOrthogonally { get; }

    /// <summary>A copy of what identifies the current basis, or null before the first.</summary>
    object? Snapshot();

    /// <summary>‖B_oldᵀ B_new‖²_F / r between <paramref name="snapshot"/> and the current basis (mean over sides).</summary>
    double? Overlap(object snapshot);
}
