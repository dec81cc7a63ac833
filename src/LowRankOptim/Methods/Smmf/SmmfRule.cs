using LowRankOptim.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The per-tensor state of <see cref="SmmfConfig"/>. Factorized: ρ_M (n̂), γ_M (m̂), the packed signs of M
/// (⌈N/8⌉ bytes), ρ_V (n̂), γ_V (m̂), i.e. 2·(n̂ + m̂)·4 + ⌈N/8⌉ bytes ((n̂ + m̂)·4 without β). Unfactorized
/// (1-D with vector_reshape = false): full M and V in the working dtype.
/// </summary>
internal sealed class SmmfRule : IUpdateRule
{
    private readonly long[] _shape;
    private readonly long _count;
    private readonly bool _momentum;
    private readonly KernelStorage _storage;                 // the working dtype, which the fused kernels compute in
    private readonly KernelChoice<ISmmfStepKernel> _kernels;
    private readonly TensorSlot _momentRowsSlot, _momentColsSlot, _momentSignsSlot, _varianceRowsSlot, _varianceColsSlot; // factorized
    private readonly TensorSlot _expAvgSlot, _expAvgSqSlot;                                                           // unfactorized

    internal SmmfRule(StateDeclaration declaration, long[] shape, SmmfConfig config, ScalarType dtype, Device device)
    {
        _shape = shape;
        _count = SquareMatricization.Count(shape);
        _momentum = config.Beta.HasValue;
        IsFactorized = config.Factorizes(shape);
        (Rows, Cols) = IsFactorized ? SquareMatricization.Of(_count) : (_count, 1);
        _storage = KernelStorage.Dense(dtype);
        _kernels = new($"the parameter of shape {StateReader.Format(shape)}");
        // An explicit choice that cannot be honoured fails here, with the reason (an unfactorized tensor runs no kernel).
        if (IsFactorized) _kernels.For(config.Kernel.Backend(), device, _storage, _count);
        State = new StateSlots(declaration, device);
        (_momentRowsSlot, _momentColsSlot, _momentSignsSlot) = (State.Tensor("moment_rows"), State.Tensor("moment_cols"), State.Tensor("moment_signs"));
        (_varianceRowsSlot, _varianceColsSlot) = (State.Tensor("variance_rows"), State.Tensor("variance_cols"));
        (_expAvgSlot, _expAvgSqSlot) = (State.Tensor("exp_avg"), State.Tensor("exp_avg_sq"));
    }

    /// <summary>
    /// Factorized: float32 row and column factors of M (with β) and V, and M's signs packed in ⌈N/8⌉ bytes;
    /// unfactorized: full M (with β) and V in the working dtype.
    /// </summary>
    internal static StateDeclaration Declare(long[] shape, bool factorized, bool momentum, ScalarType dtype)
    {
        var count = SquareMatricization.Count(shape);
        var (rows, cols) = factorized ? SquareMatricization.Of(count) : (count, 1);
        SlotPresence When(bool present) => present ? SlotPresence.Allocated : SlotPresence.Unused;
        return new(
            new TensorEntry("moment_rows", [rows], ScalarType.Float32, When(factorized && momentum)) { Values = TensorValues.NonNegative },
            new TensorEntry("moment_cols", [cols], ScalarType.Float32, When(factorized && momentum)) { Values = TensorValues.NonNegative },
            new TensorEntry("moment_signs", [(count + 7) / 8], ScalarType.Byte, When(factorized && momentum)),
            new TensorEntry("variance_rows", [rows], ScalarType.Float32, When(factorized)) { Values = TensorValues.NonNegative },
            new TensorEntry("variance_cols", [cols], ScalarType.Float32, When(factorized)) { Values = TensorValues.NonNegative },
            new TensorEntry("exp_avg", shape, dtype, When(!factorized && momentum)),
            new TensorEntry("exp_avg_sq", shape, dtype, When(!factorized)) { Values = TensorValues.NonNegative });
    }

    /// <inheritdoc />
    public StateSlots State { get; }

    private Tensor? _momentRows => _momentRowsSlot.Value;
    private Tensor? _momentCols => _momentColsSlot.Value;
    private Tensor? _momentSigns => _momentSignsSlot.Value;
    private Tensor? _varianceRows => _varianceRowsSlot.Value;
    private Tensor? _varianceCols => _varianceColsSlot.Value;
    private Tensor? _expAvg => _expAvgSlot.Value;
    private Tensor? _expAvgSq => _expAvgSqSlot.Value;

    /// <summary>True when the tensor is square-matricized; false for a 1-D tensor with vector_reshape = false.</summary>
    public bool IsFactorized { get; }

    /// <summary>n̂, the rows of the matrix view (N when unfactorized).</summary>
    public long Rows { get; }

    /// <summary>m̂, the columns of the matrix view (1 when unfactorized).</summary>
    public long Cols { get; }

    /// <summary>The compressed state as the kernels see it (factorized layout only).</summary>
    internal SmmfFactors Factors => new(Rows, Cols, _momentRows, _momentCols, _momentSigns, _varianceRows!, _varianceCols!);

    /// <summary>The unfactorized moments (null when factorized, or M without β).</summary>
    internal (Tensor? ExpAvg, Tensor? ExpAvgSq) FullMoments => (_expAvg, _expAvgSq);

    /// <inheritdoc />
    public RuleUpdate Compute(Tensor gradient, in RuleContext context)
    {
        var config = Checked(context.Config);
        var (beta1, beta2) = config.Decays(context.Step);
        var lr = context.LearningRate;
        if (!IsFactorized) return new RuleUpdate(FullStep(gradient, config, beta1, beta2), lr, lr);
        var kernel = KernelFor(config, gradient);
        // The fused kernels take a dense gradient; the reference takes the gradient as it is.
        using var contiguous = kernel.Backend == KernelBackend.Reference || gradient.is_contiguous() ? null : gradient.contiguous();
        var g = contiguous ?? gradient;
        var direction = empty_like(g);
        kernel.SmmfStep(g, Factors, new SmmfScalars(beta1, beta2, config.Eps), direction, updateWeights: false);
        return new RuleUpdate(direction, lr, lr);
    }

    /// <summary>
    /// Fuses the weight update into the fused kernel when one runs and the parameter is a tensor of the working
    /// dtype (float32) on the state's device that the kernel accepts (contiguous; under 2 GiB for the CPU kernel);
    /// declines otherwise (bf16 parameters, the reference path, unfactorized tensors).
    /// </summary>
    public bool TryUpdateInPlace(Tensor parameter, Tensor gradient, in RuleContext context, out double decayLearningRate)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        var config = Checked(context.Config);
        var lr = decayLearningRate = context.LearningRate;
        if (!IsFactorized) return false;
        var kernel = KernelFor(config, gradient);
        var writable = kernel.Backend != KernelBackend.Reference && parameter.dtype == _storage.DType &&
                       OnStateDevice(parameter) && kernel.Accepts(parameter);
        if (!writable) return false;
        var (beta1, beta2) = config.Decays(context.Step);
        using var contiguous = gradient.is_contiguous() ? null : gradient.contiguous();
        kernel.SmmfStep(contiguous ?? gradient, Factors, new SmmfScalars(beta1, beta2, config.Eps, lr, context.Decay.FactorBeforeUpdate(lr)), parameter, updateWeights: true);
        return true;
    }

    private SmmfConfig Checked(IUpdateRuleConfig current)
    {
        var config = RuleChecks.ConfigAs<SmmfConfig>(current);
        if (config.Beta.HasValue != _momentum)
            throw new InvalidOperationException("SMMF's beta cannot switch between null and a value after the optimizer is built.");
        if (config.Factorizes(_shape) != IsFactorized)
            throw new InvalidOperationException("SMMF's vector_reshape cannot change after the optimizer is built when it changes a tensor's layout.");
        return config;
    }

    /// <summary>
    /// The kernel of this step (factorized layout), chosen by <see cref="KernelChoice{TKernel}"/> for the state's
    /// device and the working dtype. An explicit choice was checked when the rule was created, and its kernel
    /// reports a gradient it cannot take; under Auto a gradient of another dtype or device than the state's takes
    /// the reference (the fused kernels make a non-contiguous gradient dense themselves, see <see cref="Compute"/>).
    /// </summary>
    private ISmmfStepKernel KernelFor(SmmfConfig config, Tensor gradient)
    {
        var kernel = _kernels.For(config.Kernel.Backend(), _varianceRows!.device, _storage, _count);
        return _kernels.IsExplicit || (gradient.dtype == _storage.DType && OnStateDevice(gradient)) ? kernel : _kernels.Reference;
    }

    /// <summary>True when <paramref name="tensor"/> is on the device of the factorized state (the same ordinal for CUDA).</summary>
    private bool OnStateDevice(Tensor tensor) => tensor.device_type == _varianceRows!.device_type &&
        (tensor.device_type != DeviceType.CUDA || tensor.device_index == _varianceRows.device_index);

    /// <summary>The unfactorized step: full M and V of the tensor's shape, same schedules, no compression.</summary>
    private Tensor FullStep(Tensor gradient, SmmfConfig config, double beta1, double beta2)
    {
        using var b1 = beta1.ToScalar();
        using var oneMinusB1 = (1 - beta1).ToScalar();
        using var b2 = beta2.ToScalar();
        using var oneMinusB2 = (1 - beta2).ToScalar();
        using var eps = config.Eps.ToScalar();
        _expAvg?.mul_(b1).add_(gradient, alpha: oneMinusB1);
        _expAvgSq!.mul_(b2).addcmul_(gradient, gradient, value: oneMinusB2);
        using var denominator = _expAvgSq.sqrt().add_(eps);
        return (_expAvg ?? gradient).div(denominator);
    }

}
