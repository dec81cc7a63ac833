using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The backward of a stock <c>Linear</c> call whose weight accumulates in the projected space this micro-batch
/// (docs/per-layer.md, "Projected Linear micro-batches"). The module's forward has already computed y = X·Wᵀ + b
/// with its own graph; the forward hook replaces y by this function's output (the same values, y detached), so
/// autograd runs this backward instead of the Linear's: it returns ∂X = δ·W, ∂b = Σ δ and ∂W = δᵀX as the Linear's
/// would, except that it first offers δ and X to <see cref="GradientRelease"/>: when the mode adds R = Proj(δᵀX) to
/// the weight's projected sum (formed without the m×n gradient), ∂W is none. The Linear's own graph node is left unreferenced and never runs. The pattern is
/// /work/shared/spec/torchsharp.md §5 (A) with the stock module's forward kept.
/// </summary>
internal sealed class ProjectedLinear : autograd.SingleTensorFunction<ProjectedLinear>
{
    private const string Key = "call";

    /// <inheritdoc />
    public override string Name => "LowRankOptimProjectedLinear";

    /// <summary>
    /// Wraps the output of one Linear call: <paramref name="input"/> is the call's (tapped) input, <paramref name="output"/>
    /// its result.
    /// </summary>
    public static Tensor On(Tensor input, Tensor output, LinearCall call)
    {
        var bias = call.Module.bias;
        using var detached = output.detach();
        call.Output = detached;
        try
        {
            // Tensors first: libtorch matches the returned gradients to the tensor inputs by position.
            return bias is null ? apply(input, call.Weight, call) : apply(input, call.Weight, bias, call);
        }
        finally
        {
            call.Output = null;
        }
    }

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var call = (LinearCall)vars[^1];
        ctx.save_for_backward([(Tensor)vars[0]]);
        ctx.save_data(Key, call); // a LinearCall, never a tensor
        return call.Output!.alias(); // y's values, as a new node's output
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
    {
        var call = (LinearCall)ctx.get_data(Key);
        using var input = ctx.get_saved_variables()[0];
        var weight = call.Weight;
        // ∂X and ∂b exactly as the Linear's backward forms them (on the rows of tokens); they leave this function for
        // libtorch, so they are made outside any dispose scope of the mode's. Called from libtorch's autograd engine:
        // nothing may escape as an exception (the mode records faults, step() rethrows them).
        using var rows = grad.reshape(-1, weight.shape[0]);
        using var inputRows = input.reshape(-1, weight.shape[1]);
        var gradInput = rows.mm(weight).view(input.shape);
        var gradBias = call.HasBias ? rows.sum(0L, keepdim: false) : null; // 0L: a literal 0 would bind to sum(ScalarType)
        // ∂W through autograd (AccumulateGrad adds every use of the weight at once, as for the Linear's), unless it went
        // into the projected space: then none, and .grad is not touched.
        var gradWeight = call.Owner.TakeProjected(call, rows, inputRows) ? null : rows.t().mm(inputRows);
        return call.HasBias ? [gradInput, gradWeight!, gradBias!, null!] : [gradInput, gradWeight!, null!];
    }
}

/// <summary>One Linear module whose weight may accumulate through <see cref="ProjectedLinear"/>: the owner, the module's record and weight slot.</summary>
internal sealed class LinearCall(GradientRelease owner, TorchSharp.Modules.Linear module, ReleaseSlot weight)
{
    public GradientRelease Owner { get; } = owner;
    public TorchSharp.Modules.Linear Module { get; } = module;
    public ReleaseSlot Slot { get; } = weight;
    public Tensor Weight => Slot.Parameter;
    public bool HasBias => Module.bias is not null;
    /// <summary>The call's output while <see cref="ProjectedLinear.On"/> hands it to forward (not a saved tensor).</summary>
    public Tensor? Output { get; set; }
}
