using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// GaLore+'s sparsely coded residual for one m×n weight (see <see cref="GaLorePlusProjection"/>): a warm-up
/// accumulator of |E| with E = G − Back(Proj(G)) (no α), then k kept entries Ω (sorted flat indices) with Adam
/// moments of their own, updated with the group's Adam config and an own step count.
/// </summary>
internal sealed class SparseResidual
{
    private readonly MatrixShape _matrix;
    private readonly long _k;
    private readonly int _warmup;
    private readonly bool _reestimate;
    private readonly double _scale;
    private readonly ScalarType _dtype;
    private readonly ScalarType _indexType;
    private readonly TensorSlot _accumulator; // float32 m×n, only during the warm-up
    private readonly TensorSlot _indices;     // Ω, [k], sorted ascending
    private readonly TensorSlot _expAvg;      // m_e, [k]
    private readonly TensorSlot _expAvgSq;    // v_e, [k]
    private readonly CounterSlot _warmupSteps, _step;
    private long _seenRefreshes;

    /// <summary>The residual over the entries <see cref="Declare"/> added to its subspace's <paramref name="state"/>.</summary>
    internal SparseResidual(StateSlots state, MatrixShape matrix, long k, int warmup, bool reestimate, double scale, ScalarType dtype)
    {
        (_warmupSteps, _step) = (state.Counter("residual_warmup_steps"), state.Counter("residual_step"));
        (_accumulator, _indices) = (state.Tensor("residual_accumulator"), state.Tensor("residual_indices"));
        (_expAvg, _expAvgSq) = (state.Tensor("residual_exp_avg"), state.Tensor("residual_exp_avg_sq"));
        _matrix = matrix;
        _k = k;
        _warmup = warmup;
        _reestimate = reestimate;
        _scale = scale;
        _dtype = dtype;
        _indexType = IndexType(matrix);
        Device = state.Device;
    }

    /// <summary>
    /// The residual's entries of its subspace's state (none when k = 0): warm-up and step counters, the warm-up
    /// accumulator (transient: not in the steady-state plan), and k indices and 2k moments, set when Ω is chosen.
    /// </summary>
    internal static StateEntry[] Declare(MatrixShape m, long k, ScalarType dtype) => k == 0 ? [] :
    [
        new CounterEntry("residual_warmup_steps"), new CounterEntry("residual_step"),
        new TensorEntry("residual_accumulator", m.ToArray(), ScalarType.Float32, SlotPresence.Transient) { Values = TensorValues.NonNegative },
        new TensorEntry("residual_indices", [k], IndexType(m), SlotPresence.WhenSet),
        new TensorEntry("residual_exp_avg", [k], dtype, SlotPresence.WhenSet) { Moment = MomentKind.Signed },
        new TensorEntry("residual_exp_avg_sq", [k], dtype, SlotPresence.WhenSet) { Values = TensorValues.NonNegative, Moment = MomentKind.NonNegative },
    ];

    /// <summary>k, the number of kept entries.</summary>
    public long Count => _k;
    /// <summary>Steps of the warm-up done so far (saved): S_w once the indices are chosen.</summary>
    public long WarmupSteps => _warmupSteps.Value;
    /// <summary>The sparse moments' own step count (saved): steps since Ω was first chosen.</summary>
    public long Step => _step.Value;
    /// <summary>Ω, the sorted flat indices of the kept entries (int32, or int64 when m·n ≥ 2³¹); null during the warm-up.</summary>
    public Tensor? Indices => _indices.Value;
    /// <summary>The first moments of the kept entries.</summary>
    public Tensor? ExpAvg => _expAvg.Value;
    /// <summary>The second moments of the kept entries.</summary>
    public Tensor? ExpAvgSq => _expAvgSq.Value;
    /// <summary>The warm-up accumulator Σ|E| (float32 m×n); exists only during the warm-up.</summary>
    public Tensor? Accumulator => _accumulator.Value;
    /// <summary>The device of the state.</summary>
    public Device Device { get; }

    /// <summary>int32 indices while every flat index fits, int64 beyond.</summary>
    internal static ScalarType IndexType(MatrixShape m) => m.Rows * m.Cols <= int.MaxValue ? ScalarType.Int32 : ScalarType.Int64;

    /// <summary>One step: accumulate during the warm-up, choose Ω when it ends, then update the moments and the weight.</summary>
    internal void Update(Tensor target, Tensor gradient, Tensor projected, Func<Tensor, Tensor> backUnscaled, long refreshCount, in RuleContext rule)
    {
        var config = RuleChecks.ConfigAs<AdamConfig>(rule.Config);
        using var scope = NewDisposeScope();
        var residual = gradient.sub(backUnscaled(projected));
        if (WarmupSteps < _warmup)
        {
            if (!_accumulator.HasValue) _accumulator.Set(zeros(_matrix.ToArray(), ScalarType.Float32, residual.device));
            _accumulator.Required.add_(residual.abs().to(ScalarType.Float32));
            if (++_warmupSteps.Value == _warmup)
            {
                Select(_accumulator.Required, carryMoments: false);
                _accumulator.Clear();
                _seenRefreshes = refreshCount;
            }
            return; // the sparse moments start after the warm-up
        }
        if (!_indices.HasValue)
        {
            Select(residual.abs(), carryMoments: false); // S_w = 0: from the first step's residual
            _seenRefreshes = refreshCount;
        }
        else if (refreshCount != _seenRefreshes)
        {
            if (_reestimate) Select(residual.abs(), carryMoments: true);
            _seenRefreshes = refreshCount;
        }
        // Stored as int32 where possible; TorchSharp's index_add_ takes int64 only, so a transient copy (k·8 bytes).
        var indices = _indices.Required;
        var index = indices.dtype == ScalarType.Int64 ? indices : indices.to(ScalarType.Int64);
        var e = residual.view(-1).index_select(0, index);
        var update = AdamRule.Update(config, e, _expAvg.Required, _expAvgSq.Required, ++_step.Value, rule.LearningRate);
        var direction = update.Direction.dtype == target.dtype ? update.Direction : update.Direction.to(target.dtype);
        using var alpha = (-update.Coefficient * _scale).ToScalar();
        if (target.is_contiguous())
        {
            target.view(-1).index_add_(0, index, direction, alpha: alpha);
            return;
        }
        // A strided weight has no flat view: the same sums through (row, column) indices.
        using var columns = _matrix.Cols.ToScalar();
        target.index_put_(direction.mul(alpha), [index.div(columns, rounding_mode: RoundingMode.floor), index.remainder(columns)], accumulate: true);
    }

    /// <summary>
    /// What a data-parallel step must sum for the residual on a step without refresh: the whole gradient during the
    /// warm-up (|E| is accumulated over every entry) and before Ω exists; afterwards only G on Ω (E_Ω = G_Ω − Back(R)_Ω
    /// is linear in G), as int64 flat indices (a copy in the caller's dispose scope when Ω is stored as int32).
    /// </summary>
    internal GradientExchange Exchange()
    {
        if (WarmupSteps < _warmup || _indices.Value is not { } indices) return GradientExchange.Full;
        return GradientExchange.Projected(indices.dtype == ScalarType.Int64 ? indices : indices.to(ScalarType.Int64));
    }

    /// <summary>Ω ← the k largest entries of <paramref name="scores"/>, sorted; moments of entries kept before carry over.</summary>
    private void Select(Tensor scores, bool carryMoments)
    {
        using var scope = NewDisposeScope();
        var flat = scores.reshape(-1);
        using var k = _k.ToScalar();
        var chosen = _k == flat.shape[0] ? arange(k, dtype: ScalarType.Int64, device: flat.device) : flat.topk((int)_k).indexes;
        var sorted = chosen.sort().Values.to(_indexType);
        Tensor m, v;
        if (carryMoments && _indices.Value is { } indices)
        {
            var old = indices.to(ScalarType.Int64);
            using var first = 0L.ToScalar();
            using var last = (_k - 1).ToScalar();
            var position = searchsorted(old, sorted.to(ScalarType.Int64)).clamp_(first, last);
            var kept = old.index_select(0, position).eq(sorted.to(ScalarType.Int64));
            var zero = zeros(1, dtype: _dtype, device: flat.device);
            m = where(kept, _expAvg.Required.index_select(0, position), zero);
            v = where(kept, _expAvgSq.Required.index_select(0, position), zero);
        }
        else
        {
            m = zeros(_k, dtype: _dtype, device: flat.device);
            v = zeros(_k, dtype: _dtype, device: flat.device);
        }
        _indices.Set(sorted);
        _expAvg.Set(m.contiguous());
        _expAvgSq.Set(v.contiguous());
    }

    /// <summary>Checks the loaded entries against each other and resumes the refresh bookkeeping.</summary>
    internal void Loaded(StateReader reader, long refreshCount)
    {
        var warmupSteps = WarmupSteps;
        if (warmupSteps < 0 || warmupSteps > _warmup)
            throw new InvalidDataException($"{reader.Context}: entry 'residual_warmup_steps' is {warmupSteps}; it must be in [0, residual_warmup = {_warmup}].");
        var inWarmup = warmupSteps < _warmup && warmupSteps > 0;
        if (_accumulator.HasValue != inWarmup || _indices.HasValue != _expAvg.HasValue || _expAvg.HasValue != _expAvgSq.HasValue)
            throw new InvalidDataException($"{reader.Context}: the saved sparse residual is inconsistent (warm-up step {warmupSteps} of {_warmup}).");
        if (_indices.Value is { } indices && indices.numel() > 0)
        {
            using var scope = NewDisposeScope();
            var flat = indices.to(ScalarType.Int64);
            var size = _matrix.Rows * _matrix.Cols;
            using var zero = 0L.ToScalar();
            using var end = size.ToScalar();
            if (flat.lt(zero).logical_or(flat.ge(end)).any().item<bool>())
                throw new InvalidDataException($"{reader.Context}: entry 'residual_indices' holds an index outside [0, {size}) (the {_matrix} weight's entries).");
            if (flat.numel() > 1 && flat.narrow(0, 1, flat.numel() - 1).le(flat.narrow(0, 0, flat.numel() - 1)).any().item<bool>())
                throw new InvalidDataException($"{reader.Context}: entry 'residual_indices' is not strictly increasing; the kept entries are sorted and distinct.");
        }
        _seenRefreshes = refreshCount;
    }
}
