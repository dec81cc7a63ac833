using LowRankOptim.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>The per-parameter state of <see cref="AdamConfig"/>: exp_avg and exp_avg_sq.</summary>
internal sealed class AdamRule : IUpdateRule, IRoundedInPlaceRule
{
    /// <summary>Elements per part of the rounded full-space step: its direction workspace is this many elements (2 MiB in bf16).</summary>
    internal static long RoundedPartElements { get; set; } = 1L << 20;

    private readonly ScalarType _dtype;
    private readonly KernelStorage _storage;
    private readonly long _count;
    private readonly TensorSlot _expAvg;
    private readonly TensorSlot _expAvgSq;
    private readonly KernelChoice<IAdamDirectionKernel> _kernels;
    private readonly KernelChoice<IAdamUpdateKernel> _updateKernels;
    private readonly KernelChoice<IQuantizedAdamKernel>? _quantizedKernels; // block-wise moments only
    private readonly KernelStorage _quantizedStorage;

    internal AdamRule(StateDeclaration declaration, ScalarType dtype, Device device, KernelPreference kernel = KernelPreference.Auto)
    {
        _dtype = dtype;
        _storage = KernelStorage.Dense(dtype);
        var shape = declaration.Entries.OfType<TensorEntry>().First(e => e.Name == "exp_avg").Shape;
        _count = DTypes.Elements(shape);
        var subject = $"the Adam state of shape {StateReader.Format(shape)}";
        (_kernels, _updateKernels) = (new(subject), new(subject));
        State = new StateSlots(declaration, device);
        _expAvg = State.Tensor("exp_avg");
        _expAvgSq = State.Tensor("exp_avg_sq");
        if (_expAvg.Entry.Storage is BlockwiseStorage m && _expAvgSq.Entry.Storage is BlockwiseStorage)
        {
            // m and v have the same count, so both are block-wise or neither (MomentStorage's size policy).
            _quantizedStorage = KernelStorage.Blockwise(m.Format.Bits, dtype);
            // The format too: a kernel must take its block size (the CUDA kernel's blocks are at most 256 entries).
            _quantizedKernels = new(subject, m.Format);
        }
        try
        {
            // An explicit choice that cannot be honoured fails here, with the reason.
            if (_quantizedKernels is null) _kernels.For(kernel.Backend(), device, _storage, _count);
            else _quantizedKernels.For(kernel.Backend(), device, _quantizedStorage, _count);
        }
        catch
        {
            State.Dispose();
            throw;
        }
    }

    /// <summary>exp_avg and exp_avg_sq, dense in the gradient's dtype.</summary>
    internal static StateDeclaration Declare(long[] shape, ScalarType dtype) =>
        new(new TensorEntry("exp_avg", shape, dtype) { Moment = MomentKind.Signed },
            new TensorEntry("exp_avg_sq", shape, dtype) { Values = TensorValues.NonNegative, Moment = MomentKind.NonNegative });

    /// <inheritdoc />
    public StateSlots State { get; }

    /// <summary>The first moment m.</summary>
    public Tensor ExpAvg => _expAvg.Required;
    /// <summary>The second moment v.</summary>
    public Tensor ExpAvgSq => _expAvgSq.Required;

    /// <inheritdoc />
    public RuleUpdate Compute(Tensor gradient, in RuleContext context)
    {
        var c = RuleChecks.ConfigAs<AdamConfig>(context.Config);
        if (Quantized(context.Step) is { } moments)
        {
            var q = QuantizedKernel(c, gradient, moments);
            using var dense = q.Backend == KernelBackend.Reference || gradient.is_contiguous() ? null : gradient.contiguous();
            var (s, coefficient) = Scalars(c, context.Step, context.LearningRate);
            return new RuleUpdate(q.QuantizedAdamDirection(dense ?? gradient, moments, s), coefficient, context.LearningRate);
        }
        var kernel = gradient.dtype == _dtype
            ? _kernels.ForCall(c.Kernel.Backend(), ExpAvg.device, _storage, _count, gradient, ExpAvg, ExpAvgSq)
            : _kernels.Reference;
        using var contiguous = kernel.Backend == KernelBackend.Reference || gradient.is_contiguous() ? null : gradient.contiguous();
        return Update(c, contiguous ?? gradient, ExpAvg, ExpAvgSq, context.Step, context.LearningRate, kernel);
    }

    /// <summary>
    /// The full-space step in one pass (moments and weights, no direction tensor), in torch.optim.AdamW's
    /// order, so that with torch conventions it equals TorchSharp's AdamW. Declines only for a parameter
    /// whose dtype differs from the moments' or, under an explicit kernel choice, a parameter whose layout the
    /// kernels cannot take (the optimizer then goes through <see cref="Compute"/>).
    /// </summary>
    public bool TryUpdateInPlace(Tensor parameter, Tensor gradient, in RuleContext context, out double decayLearningRate)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        ArgumentNullException.ThrowIfNull(gradient);
        var c = RuleChecks.ConfigAs<AdamConfig>(context.Config);
        var lr = decayLearningRate = context.LearningRate;
        if (parameter.dtype != _dtype || gradient.dtype != _dtype) return false;
        if (Quantized(context.Step) is { } moments)
        {
            var q = QuantizedKernel(c, gradient, moments, parameter);
            if (!q.Accepts(parameter)) return false;
            using var dense = q.Backend == KernelBackend.Reference || gradient.is_contiguous() ? null : gradient.contiguous();
            var (s, stepSize) = Scalars(c, context.Step, lr);
            q.QuantizedAdamUpdate(dense ?? gradient, moments, s with { StepSize = stepSize, DecayFactor = context.Decay.FactorBeforeUpdate(lr) }, parameter);
            return true;
        }
        var kernel = _updateKernels.ForCall(c.Kernel.Backend(), ExpAvg.device, _storage, _count, gradient, ExpAvg, ExpAvgSq, parameter);
        if (!kernel.Accepts(parameter)) return false; // an explicit kernel choice and a strided parameter: Compute's path
        using var contiguous = kernel.Backend == KernelBackend.Reference || gradient.is_contiguous() ? null : gradient.contiguous();
        var (scalars, coefficient) = Scalars(c, context.Step, lr);
        kernel.AdamUpdate(contiguous ?? gradient, ExpAvg, ExpAvgSq, scalars with { StepSize = coefficient, DecayFactor = context.Decay.FactorBeforeUpdate(lr) }, parameter);
        return true;
    }

    /// <summary>
    /// The full-space step of stochastically rounded bf16 weights a part of <see cref="RoundedPartElements"/> at a time:
    /// the direction kernel on the part's moments and gradient, then the weight kernel on the part's weights with its
    /// flat offset, which is <see cref="Compute"/> followed by the rounded update of the whole, element for element, with
    /// a workspace of one part's direction instead of the parameter's. Declines (the engine then computes the whole
    /// direction) for block-wise moments, for a gradient or parameter of another dtype, and for strided tensors.
    /// </summary>
    public bool TryUpdateRounded(Tensor parameter, Tensor gradient, in RuleContext context, IWeightUpdateKernel kernel, in WeightUpdateScalars weights)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        ArgumentNullException.ThrowIfNull(gradient);
        ArgumentNullException.ThrowIfNull(kernel);
        var c = RuleChecks.ConfigAs<AdamConfig>(context.Config);
        if (_quantizedKernels is not null || parameter.dtype != _dtype || gradient.dtype != _dtype || !parameter.is_contiguous() || !gradient.is_contiguous())
            return false;
        var direction = _kernels.ForCall(c.Kernel.Backend(), ExpAvg.device, _storage, _count, gradient, ExpAvg, ExpAvgSq);
        var (scalars, coefficient) = Scalars(c, context.Step, context.LearningRate);
        using var w = parameter.view(-1);
        using var g = gradient.view(-1);
        using var m = ExpAvg.view(-1);
        using var v = ExpAvgSq.view(-1);
        for (long start = 0; start < _count; start += RoundedPartElements)
        {
            var length = Math.Min(RoundedPartElements, _count - start);
            using var gPart = g.narrow(0, start, length);
            using var mPart = m.narrow(0, start, length);
            using var vPart = v.narrow(0, start, length);
            using var wPart = w.narrow(0, start, length);
            using var part = direction.AdamDirection(gPart, mPart, vPart, scalars);
            kernel.UpdateWeights(wPart, part, weights with { Coefficient = coefficient, FirstIndex = start });
        }
        return true;
    }

    /// <summary>
    /// The block-wise moments as the quantized kernels take them, with the rounding of step <paramref name="step"/>; null
    /// for dense or bfloat16 moments, or while a workspace is decoded (then the dense path runs on it and the slots store it).
    /// </summary>
    private QuantizedMoments? Quantized(long step) =>
        _quantizedKernels is not null && _expAvg.Compressed is BlockwiseState m && _expAvgSq.Compressed is BlockwiseState v
            ? new QuantizedMoments(new(m.Codes, m.Absmax, m.Format, _expAvg.RoundingAt(step)), new(v.Codes, v.Absmax, v.Format, _expAvgSq.RoundingAt(step)))
            : null;

    /// <summary>The quantized Adam kernel for this call (the reference for a gradient of another dtype than the moments' working one).</summary>
    private IQuantizedAdamKernel QuantizedKernel(AdamConfig c, Tensor gradient, in QuantizedMoments moments, Tensor? parameter = null) =>
        gradient.dtype == _dtype
            ? _quantizedKernels!.ForCall(c.Kernel.Backend(), moments.ExpAvg.Codes.device, _quantizedStorage, _count,
                gradient, moments.ExpAvg.Codes, moments.ExpAvg.Absmax, moments.ExpAvgSq.Codes, moments.ExpAvgSq.Absmax, parameter)
            : KernelSelection.Reference<IQuantizedAdamKernel>(KernelStorage.Blockwise(moments.ExpAvg.Format.Bits, gradient.dtype));

    /// <summary>
    /// One Adam step on moments <paramref name="expAvg"/>, <paramref name="expAvgSq"/> (updated in place) at
    /// 1-based step <paramref name="k"/> with <paramref name="kernel"/> (the reference when null); shared with
    /// other moment sets that follow the group's Adam config (GaLore+'s sparse residual).
    /// </summary>
    internal static RuleUpdate Update(AdamConfig c, Tensor gradient, Tensor expAvg, Tensor expAvgSq, long k, double lr, IAdamDirectionKernel? kernel = null)
    {
        kernel ??= KernelSelection.Reference<IAdamDirectionKernel>(KernelStorage.Dense(expAvg.dtype));
        var (scalars, coefficient) = Scalars(c, k, lr);
        return new RuleUpdate(kernel.AdamDirection(gradient, expAvg, expAvgSq, scalars), coefficient, lr);
    }

    /// <summary>The kernel scalars of step <paramref name="k"/> and the coefficient c of W ← W − c·direction.</summary>
    private static (AdamScalars Scalars, double Coefficient) Scalars(AdamConfig c, long k, double lr)
    {
        double bc1 = c.CorrectBias ? 1 - Math.Pow(c.Beta1, k) : 1;
        double bc2 = c.CorrectBias ? 1 - Math.Pow(c.Beta2, k) : 1;
        return c.EpsMode == AdamEpsilonMode.AfterBiasCorrection
            // torch.optim.AdamW: p −= (η / bc1) · m / (√v / √bc2 + ε)
            ? (new AdamScalars(c.Beta1, c.Beta2, c.Eps, Math.Sqrt(bc2)), lr / bc1)
            // galore_torch: p −= η·√bc2/bc1 · m / (√v + ε)
            : (new AdamScalars(c.Beta1, c.Beta2, c.Eps, 1.0), lr * Math.Sqrt(bc2) / bc1);
    }

    /// <summary>The direction kernel this rule's state currently runs on (for tests and logs).</summary>
    internal IAdamDirectionKernel Kernels(KernelPreference preference) => _kernels.For(preference.Backend(), ExpAvg.device, _storage, _count);

}
