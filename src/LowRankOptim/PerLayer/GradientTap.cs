using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// A pass-through autograd function: forward returns an alias of its input, backward hands the incoming gradient
/// on unchanged and, before that, tells its <see cref="TapPoint"/> that autograd reached it. Placed on a module's
/// input by a forward pre-hook, it fires once the module's backward has run and autograd has accumulated the
/// module's parameter gradients (libtorch runs AccumulateGrad nodes first): TorchSharp has no tensor or module
/// backward hooks, and this is the pattern of /work/shared/spec/torchsharp.md §5 (B).
/// </summary>
internal sealed class GradientTap : autograd.SingleTensorFunction<GradientTap>
{
    private const string Key = "tap";

    /// <inheritdoc />
    public override string Name => "LowRankOptimGradientTap";

    /// <summary>Wraps <paramref name="input"/>; <paramref name="point"/> is told when backward passes through.</summary>
    public static Tensor On(Tensor input, TapPoint point) => apply(input, point);

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        ctx.save_data(Key, vars[1]); // a TapPoint, never a tensor
        return ((Tensor)vars[0]).alias();
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
    {
        // Called from libtorch's autograd engine: nothing may escape as an exception (TapPoint records faults).
        (ctx.get_data(Key) as TapPoint)?.Fire();
        return [grad, null!];
    }
}

/// <summary>One tap in the graph: the module call whose input it wraps, or none for a tap that only marks a backward pass.</summary>
internal sealed class TapPoint(GradientRelease owner, ModuleRecord? module)
{
    public ModuleRecord? Module { get; } = module;

    public void Fire() => owner.OnTap(this);
}

/// <summary>A module that owns parameters of the optimizer, with the slots of those parameters.</summary>
internal sealed class ModuleRecord(string name, ReleaseSlot[] slots)
{
    public string Name { get; } = name;
    public ReleaseSlot[] Slots { get; } = slots;

    /// <summary>Set by the pre-hook when the call's input could not be tapped: the post-hook taps the output instead.</summary>
    public bool TapOutput { get; set; }

    /// <summary>A Linear whose weight can accumulate in the projected space without its m×n gradient (<see cref="ProjectedLinear"/>), or null.</summary>
    public LinearCall? Linear { get; set; }

    /// <summary>Set by the pre-hook (the tapped input) when this call's output is to be wrapped by <see cref="ProjectedLinear"/>.</summary>
    public Tensor? ProjectedInput { get; set; }
}
