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
    private readonly TensorSlot _momentRowsSlot, _momentColsSlot, _momentSignsSlot, _varianceRowsSlot, _varianceColsSlot; // factorized
    private readonly TensorSlot _expAvgSlot, _expAvgSqSlot;                                                           // unfactorized

    internal SmmfRule(StateDeclaration declaration, long[] shape, SmmfConfig config, ScalarType dtype, Device device)
    {
        _shape = shape;
        _count = SquareMatricization.Count(shape);
        _momentum = config.Beta.HasValue;
        IsFactorized = config.Factorizes(shape);
        (Rows, Cols) = IsFactorized ? SquareMatricization.Of(_count) : (_count, 1);
        if (KernelSelection.Effective(config.Kernel) == KernelPreference.Cuda && IsFactorized)
            KernelSelection.Select(KernelPreference.Cuda, KernelOperation.SmmfStep, device, config.WorkingType(dtype)); // throws with the reason when it cannot run here
        if (KernelSelection.Effective(config.Kernel) == KernelPreference.Cpu && IsFactorized &&
            (device.type != DeviceType.CPU || dtype != ScalarType.Float32 || _count > SmmfCpuKernel.MaxElements))
            throw new ArgumentException(
                $"kernel = {KernelPreference.Cpu} needs float32 state on the CPU and at most {SmmfCpuKernel.MaxElements} elements, " +
                $"but the parameter of shape {StateReader.Format(shape)} has {dtype} state on {device}; use {KernelPreference.Auto} or {KernelPreference.Reference}.",
                "kernel");
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
        var kernels = KernelsFor(config, gradient);
        if (kernels is not TorchKernels)
        {
            using var contiguous = gradient.is_contiguous() ? null : gradient.contiguous();
            var g = contiguous ?? gradient;
            var direction = empty_like(g);
            kernels.SmmfStep(g, Factors, new SmmfScalars(beta1, beta2, config.Eps), direction, updateWeights: false);
            return new RuleUpdate(direction, lr, lr);
        }
        var reference = empty_like(gradient);
        TorchKernels.Instance.SmmfStep(gradient, Factors, new SmmfScalars(beta1, beta2, config.Eps), reference, updateWeights: false);
        return new RuleUpdate(reference, lr, lr);
    }

    /// <summary>
    /// Fuses the weight update into the fused kernel when one runs and the parameter is a contiguous float32
    /// tensor it can write (on the CPU for the CPU kernel, on the state's CUDA device for the CUDA kernel);
    /// declines otherwise (bf16 parameters, the reference path, unfactorized tensors).
    /// </summary>
    public bool TryUpdateInPlace(Tensor parameter, Tensor gradient, in RuleContext context, out double decayLearningRate)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        var config = Checked(context.Config);
        var lr = decayLearningRate = context.LearningRate;
        if (!IsFactorized) return false;
        var kernels = KernelsFor(config, gradient);
        var writable = kernels switch
        {
            CpuKernels => SmmfCpuKernel.Supports(parameter),
            CudaKernels => parameter.device_type == DeviceType.CUDA && parameter.dtype == ScalarType.Float32 && parameter.is_contiguous() &&
                           parameter.device_index == _varianceRows!.device_index,
            _ => false,
        };
        if (!writable) return false;
        var (beta1, beta2) = config.Decays(context.Step);
        using var contiguous = gradient.is_contiguous() ? null : gradient.contiguous();
        kernels.SmmfStep(contiguous ?? gradient, Factors, new SmmfScalars(beta1, beta2, config.Eps, lr, context.Decay.FactorBeforeUpdate(lr)), parameter, updateWeights: true);
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
    /// The kernels of this step (factorized layout): the reference, the CPU kernel or the CUDA kernel. An
    /// explicit Cpu or Cuda was checked when the rule was created, and the kernel reports a gradient it cannot
    /// take; Auto takes a fused kernel only for a float32 gradient on the state's device that it can run.
    /// </summary>
    private IOptimizerKernels KernelsFor(SmmfConfig config, Tensor gradient) => KernelSelection.Effective(config.Kernel) switch
    {
        KernelPreference.Reference => TorchKernels.Instance,
        KernelPreference.Cpu => CpuKernels.Instance,
        KernelPreference.Cuda => CudaKernels.Instance,
        _ when gradient.dtype != ScalarType.Float32 => TorchKernels.Instance,
        _ when gradient.device_type == DeviceType.CPU && _varianceRows!.device_type == DeviceType.CPU && _count <= SmmfCpuKernel.MaxElements =>
            CpuKernels.Instance,
        _ when gradient.device_type == DeviceType.CUDA && _varianceRows!.device_type == DeviceType.CUDA &&
               gradient.device_index == _varianceRows.device_index &&
               CudaKernels.Instance.Supports(KernelOperation.SmmfStep, _varianceRows.device, ScalarType.Float32, out _) => CudaKernels.Instance,
        _ => TorchKernels.Instance,
    };

    /// <summary>The unfactorized step: full M and V of the tensor's shape, same schedules, no compression.</summary>
    private Tensor FullStep(Tensor gradient, SmmfConfig config, double beta1, double beta2)
    {
        _expAvg?.mul_(beta1).add_(gradient, alpha: 1 - beta1);
        _expAvgSq!.mul_(beta2).addcmul_(gradient, gradient, value: 1 - beta2);
        using var denominator = _expAvgSq.sqrt().add_(config.Eps);
        return (_expAvg ?? gradient).div(denominator);
    }

}
