using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

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
