using LowRankOptim.Linalg;
using LowRankOptim.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Rules;

/// <summary>
/// SGD with optional heavy-ball momentum, as torch.optim.SGD: b ← μ·b + (1 − dampening)·g (b = g on the
/// first step), direction b (or g + μ·b with Nesterov). A linear rule: with a full-rank orthonormal
/// projection it equals the unprojected rule, which the tests use as an anchor.
/// </summary>
/// <param name="Momentum">μ in [0, 1); 0 keeps no state.</param>
/// <param name="Dampening">In [0, 1].</param>
/// <param name="Nesterov">Nesterov momentum; needs μ &gt; 0 and dampening 0.</param>
public sealed record SgdConfig(double Momentum = 0.0, double Dampening = 0.0, bool Nesterov = false) : IUpdateRuleConfig
{
    /// <inheritdoc />
    public ScalarType WorkingType(ScalarType gradientType) => gradientType;

    /// <inheritdoc />
    public IUpdateRule Create(long[] shape, ScalarType dtype, Device device) => new SgdRule(shape, Momentum != 0, dtype, device);

    /// <inheritdoc />
    public long PlannedStateBytes(long[] shape, ScalarType dtype) => Momentum != 0 ? DTypes.Elements(shape) * DTypes.ElementSize(dtype) : 0;

    /// <inheritdoc />
    public void Validate(string where)
    {
        RuleChecks.UnitInterval("momentum", Momentum, where);
        if (!(Dampening >= 0 && Dampening <= 1)) throw new ArgumentOutOfRangeException("dampening", Dampening, $"{where}: dampening must be in [0, 1].");
        if (Nesterov && (Momentum <= 0 || Dampening != 0))
            throw new ArgumentException($"{where}: nesterov = true needs momentum > 0 and dampening = 0 (momentum {Momentum}, dampening {Dampening}).", "nesterov");
    }

    /// <inheritdoc />
    public void Save(StateWriter writer)
    {
        writer.Double("momentum", Momentum);
        writer.Double("dampening", Dampening);
        writer.Bool("nesterov", Nesterov);
    }

    internal static SgdConfig Read(StateReader reader) => new(reader.Double("momentum"), reader.Double("dampening"), reader.Bool("nesterov"));
}

/// <summary>The per-parameter state of <see cref="SgdConfig"/>: the momentum buffer, when μ ≠ 0.</summary>
public sealed class SgdRule : IUpdateRule
{
    private Tensor? _buffer;

    internal SgdRule(long[] shape, bool momentum, ScalarType dtype, Device device)
    {
        if (momentum) _buffer = StateTensors.Zeros(shape, dtype, device);
    }

    /// <inheritdoc />
    public long StateBytes => StateTensors.Bytes(_buffer);

    /// <inheritdoc />
    public RuleUpdate Compute(Tensor gradient, in RuleContext context)
    {
        var c = RuleChecks.ConfigAs<SgdConfig>(context.Config);
        if ((c.Momentum != 0) != (_buffer is not null))
            throw new InvalidOperationException("SGD momentum cannot switch between 0 and non-zero after the optimizer is built.");
        var direction = gradient;
        if (_buffer is not null)
        {
            if (context.Step == 1) _buffer.copy_(gradient);
            else _buffer.mul_(c.Momentum).add_(gradient, alpha: 1 - c.Dampening);
            direction = c.Nesterov ? gradient.add(_buffer, alpha: c.Momentum) : _buffer;
        }
        return new RuleUpdate(direction, context.LearningRate, context.LearningRate);
    }

    /// <inheritdoc />
    public void Save(StateWriter writer) => writer.Tensor("momentum_buffer", _buffer);

    /// <inheritdoc />
    public void Load(StateReader reader)
    {
        StateTensors.Load(reader, "momentum_buffer", ref _buffer);
    }

    /// <inheritdoc />
    public void MoveTo(Device device) => StateTensors.MoveTo(ref _buffer, device);

    /// <inheritdoc />
    public void Dispose()
    {
        _buffer?.Dispose();
        _buffer = null;
    }
}
