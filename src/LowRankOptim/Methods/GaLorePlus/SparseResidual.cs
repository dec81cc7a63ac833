using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// GaLore+'s sparsely coded residual for one m×n weight (see <see cref="GaLorePlusProjection"/>): a warm-up
/// accumulator of |E| with E = G − Back(Proj(G)) (no α), then k kept entries Ω (sorted flat indices) with Adam
/// moments of their own, updated with the group's Adam config and an own step count.
/// </summary>
public sealed class SparseResidual : IDisposable
{
    private readonly MatrixShape _matrix;
    private readonly long _k;
    private readonly int _warmup;
    private readonly bool _reestimate;
    private readonly double _scale;
    private readonly ScalarType _dtype;
    private readonly ScalarType _indexType;
    private Tensor? _accumulator; // float32 m×n, only during the warm-up
    private Tensor? _indices;     // Ω, [k], sorted ascending
    private Tensor? _expAvg;      // m_e, [k]
    private Tensor? _expAvgSq;    // v_e, [k]
    private long _seenRefreshes;

    internal SparseResidual(MatrixShape matrix, long k, int warmup, bool reestimate, double scale, ScalarType dtype, Device device)
    {
        _matrix = matrix;
        _k = k;
        _warmup = warmup;
        _reestimate = reestimate;
        _scale = scale;
        _dtype = dtype;
        _indexType = IndexType(matrix);
        Device = device;
    }

    /// <summary>k, the number of kept entries.</summary>
    public long Count => _k;
    /// <summary>Steps of the warm-up done so far (saved): S_w once the indices are chosen.</summary>
    public long WarmupSteps { get; private set; }
    /// <summary>The sparse moments' own step count (saved): steps since Ω was first chosen.</summary>
    public long Step { get; private set; }
    /// <summary>Ω, the sorted flat indices of the kept entries (int32, or int64 when m·n ≥ 2³¹); null during the warm-up.</summary>
    public Tensor? Indices => _indices;
    /// <summary>The first moments of the kept entries.</summary>
    public Tensor? ExpAvg => _expAvg;
    /// <summary>The second moments of the kept entries.</summary>
    public Tensor? ExpAvgSq => _expAvgSq;
    /// <summary>The warm-up accumulator Σ|E| (float32 m×n); exists only during the warm-up.</summary>
    public Tensor? Accumulator => _accumulator;
    /// <summary>The device of the state.</summary>
    public Device Device { get; private set; }

    /// <summary>Bytes held now: indices and moments, plus the accumulator during the warm-up.</summary>
    public long StateBytes => StateTensors.Bytes(_accumulator) + StateTensors.Bytes(_indices) + StateTensors.Bytes(_expAvg) + StateTensors.Bytes(_expAvgSq);

    /// <summary>int32 indices while every flat index fits, int64 beyond.</summary>
    internal static ScalarType IndexType(MatrixShape m) => m.Rows * m.Cols <= int.MaxValue ? ScalarType.Int32 : ScalarType.Int64;

    /// <summary>Bytes after the warm-up: k indices and 2k moments (0 when k = 0).</summary>
    internal static long PlannedBytes(MatrixShape m, long k, ScalarType dtype) =>
        k == 0 ? 0 : k * DTypes.ElementSize(IndexType(m)) + 2 * k * DTypes.ElementSize(dtype);

    /// <summary>One step: accumulate during the warm-up, choose Ω when it ends, then update the moments and the weight.</summary>
    internal void Update(Tensor target, Tensor gradient, Tensor projected, Func<Tensor, Tensor> backUnscaled, long refreshCount, in RuleContext rule)
    {
        var config = RuleChecks.ConfigAs<AdamConfig>(rule.Config);
        using var scope = NewDisposeScope();
        var residual = gradient.sub(backUnscaled(projected));
        if (WarmupSteps < _warmup)
        {
            _accumulator ??= StateTensors.Zeros(_matrix.ToArray(), ScalarType.Float32, Device);
            _accumulator.add_(residual.abs().to(ScalarType.Float32));
            if (++WarmupSteps == _warmup)
            {
                Select(_accumulator, carryMoments: false);
                _accumulator.Dispose();
                _accumulator = null;
                _seenRefreshes = refreshCount;
            }
            return; // the sparse moments start after the warm-up
        }
        if (_indices is null)
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
        var index = _indices!.dtype == ScalarType.Int64 ? _indices : _indices.to(ScalarType.Int64);
        var e = residual.view(-1).index_select(0, index);
        var update = AdamRule.Update(config, e, _expAvg!, _expAvgSq!, ++Step, rule.LearningRate);
        var direction = update.Direction.dtype == target.dtype ? update.Direction : update.Direction.to(target.dtype);
        target.view(-1).index_add_(0, index, direction, alpha: -update.Coefficient * _scale);
    }

    /// <summary>Ω ← the k largest entries of <paramref name="scores"/>, sorted; moments of entries kept before carry over.</summary>
    private void Select(Tensor scores, bool carryMoments)
    {
        using var scope = NewDisposeScope();
        var flat = scores.reshape(-1);
        var chosen = _k == flat.shape[0] ? arange(_k, dtype: ScalarType.Int64, device: flat.device) : flat.topk((int)_k).indexes;
        var sorted = chosen.sort().Values.to(_indexType);
        Tensor m, v;
        if (carryMoments && _indices is not null)
        {
            var old = _indices.to(ScalarType.Int64);
            var position = searchsorted(old, sorted.to(ScalarType.Int64)).clamp_(0, _k - 1);
            var kept = old.index_select(0, position).eq(sorted.to(ScalarType.Int64));
            var zero = zeros(1, dtype: _dtype, device: flat.device);
            m = where(kept, _expAvg!.index_select(0, position), zero);
            v = where(kept, _expAvgSq!.index_select(0, position), zero);
        }
        else
        {
            m = zeros(_k, dtype: _dtype, device: flat.device);
            v = zeros(_k, dtype: _dtype, device: flat.device);
        }
        StateTensors.Replace(ref _indices, sorted);
        StateTensors.Replace(ref _expAvg, m.contiguous());
        StateTensors.Replace(ref _expAvgSq, v.contiguous());
    }

    internal void Save(StateWriter writer)
    {
        writer.Long("residual_warmup_steps", WarmupSteps);
        writer.Long("residual_step", Step);
        writer.Tensor("residual_accumulator", _accumulator);
        writer.Tensor("residual_indices", _indices);
        writer.Tensor("residual_exp_avg", _expAvg);
        writer.Tensor("residual_exp_avg_sq", _expAvgSq);
    }

    internal void Load(StateReader reader, long refreshCount)
    {
        var warmupSteps = reader.Long("residual_warmup_steps");
        if (warmupSteps < 0 || warmupSteps > _warmup)
            throw new InvalidDataException($"{reader.Context}: entry 'residual_warmup_steps' is {warmupSteps}; it must be in [0, residual_warmup = {_warmup}].");
        var step = reader.Long("residual_step");
        var accumulator = reader.Tensor("residual_accumulator", _matrix.ToArray(), ScalarType.Float32, Device);
        var indices = reader.Tensor("residual_indices", [_k], _indexType, Device);
        var m = reader.Tensor("residual_exp_avg", [_k], _dtype, Device);
        var v = reader.Tensor("residual_exp_avg_sq", [_k], _dtype, Device);
        var inWarmup = warmupSteps < _warmup && warmupSteps > 0;
        if ((accumulator is not null) != inWarmup || (indices is null) != (m is null) || (m is null) != (v is null))
        {
            foreach (var t in new[] { accumulator, indices, m, v }) t?.Dispose();
            throw new InvalidDataException($"{reader.Context}: the saved sparse residual is inconsistent (warm-up step {warmupSteps} of {_warmup}).");
        }
        WarmupSteps = warmupSteps;
        Step = step;
        if (accumulator is not null) StateTensors.Replace(ref _accumulator, accumulator);
        if (indices is not null) StateTensors.Replace(ref _indices, indices);
        if (m is not null) StateTensors.Replace(ref _expAvg, m);
        if (v is not null) StateTensors.Replace(ref _expAvgSq, v);
        _seenRefreshes = refreshCount;
    }

    internal void MoveTo(Device device)
    {
        StateTensors.MoveTo(ref _accumulator, device);
        StateTensors.MoveTo(ref _indices, device);
        StateTensors.MoveTo(ref _expAvg, device);
        StateTensors.MoveTo(ref _expAvgSq, device);
        Device = device;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in new[] { _accumulator, _indices, _expAvg, _expAvgSq }) t?.Dispose();
        _accumulator = _indices = _expAvg = _expAvgSq = null;
    }
}
