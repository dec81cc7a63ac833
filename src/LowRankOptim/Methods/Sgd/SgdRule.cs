using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>The per-parameter state of <see cref="SgdConfig"/>: the momentum buffer, when μ ≠ 0.</summary>
internal sealed class SgdRule : IUpdateRule
{
    private readonly TensorSlot _buffer;

    internal SgdRule(StateDeclaration declaration, Device device)
    {
        State = new StateSlots(declaration, device);
        _buffer = State.Tensor("momentum_buffer");
    }

    /// <summary>momentum_buffer, allocated only when μ ≠ 0.</summary>
    internal static StateDeclaration Declare(long[] shape, bool momentum, ScalarType dtype) =>
        new(new TensorEntry("momentum_buffer", shape, dtype, momentum ? SlotPresence.Allocated : SlotPresence.Unused) { Moment = MomentKind.Signed });

    /// <inheritdoc />
    public StateSlots State { get; }

    /// <inheritdoc />
    public RuleUpdate Compute(Tensor gradient, in RuleContext context)
    {
        var c = RuleChecks.ConfigAs<SgdConfig>(context.Config);
        if ((c.Momentum != 0) != _buffer.HasValue)
            throw new InvalidOperationException("SGD momentum cannot switch between 0 and non-zero after the optimizer is built.");
        var direction = gradient;
        if (_buffer.Value is { } buffer)
        {
            using var momentum = c.Momentum.ToScalar();
            using var undamped = (1 - c.Dampening).ToScalar();
            if (context.Step == 1) buffer.copy_(gradient);
            else buffer.mul_(momentum).add_(gradient, alpha: undamped);
            direction = c.Nesterov ? gradient.add(buffer, alpha: momentum) : buffer;
        }
        return new RuleUpdate(direction, context.LearningRate, context.LearningRate);
    }

}
