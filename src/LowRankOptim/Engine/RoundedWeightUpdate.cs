using LowRankOptim.Kernels;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The apply phase of a bfloat16 parameter whose group rounds its weights stochastically (<see cref="WeightRounding"/>):
/// W ← SR(((W·before) − c·U)·after), computed in float32 and rounded once by an <see cref="IWeightUpdateKernel"/>, so that
/// neither the update nor the decoupled decay is lost to bf16's nearest rounding (a step that moves W by less than half a
/// bf16 ulp leaves it unchanged otherwise, and 1 − η·λ itself rounds to 1 in bf16 for η·λ &lt; 2⁻⁹).
/// </summary>
/// <remarks>
/// U is the rule's direction in the full space: Adam with dense moments forms it a part of 2²⁰ elements at a time
/// (<see cref="IRoundedInPlaceRule"/>: 2 MiB of workspace in bf16), other rules for the whole parameter. In a projected
/// group U is the subspace's whole update (the back-projected direction, GaLore+'s sparse residual, APOLLO's scaled
/// gradient), which the subspace writes into a zeroed buffer of the rule's working dtype instead of into W: numel × 2
/// bytes for bf16 (4 for rules working in float32), freed when the parameter's step ends. The kernel itself needs no
/// workspace on the CPU; a strided parameter or a CUDA tensor takes the reference (a float32 copy of W).
/// </remarks>
internal static class RoundedWeightUpdate
{
    /// <summary>Applies the step <paramref name="s"/> (not skipped; the rule has computed its update) to the parameter's bf16 weights.</summary>
    public static void Apply(ParameterStep s)
    {
        var p = s.Parameter;
        var lr = s.DecayLearningRate;
        var scalars = new WeightUpdateScalars(s.Update.Coefficient, s.Decay.FactorBeforeUpdate(lr), s.Decay.FactorAfterUpdate(lr), s.WeightRounding);
        if (s.State.Subspace is not { } subspace)
        {
            Update(s.State, p, s.Update.Direction, scalars);
            return;
        }
        // The subspace's update lands in a zeroed buffer: W + Δ is then rounded once (Δ already carries −c).
        using var delta = zeros(s.View.Rows, s.View.Cols, s.Update.Direction.dtype, p.device);
        subspace.Apply(new SubspaceUpdate(delta, s.Matrix!, s.Projected!, s.Update.Direction, s.Update.Coefficient, s.Rule, s.Subspace));
        Update(s.State, p, delta, scalars with { Coefficient = -1 });
    }

    /// <summary>
    /// The full-space step of a rule that rounds the weights a part at a time (<see cref="IRoundedInPlaceRule"/>, Adam's
    /// dense moments): no direction of the parameter's size. False when the rule has no such path or declines.
    /// </summary>
    public static bool TryInPlace(ParameterStep s)
    {
        if (s.State.Rule is not IRoundedInPlaceRule rule) return false;
        var lr = s.Rule.LearningRate; // the decay's learning rate of the rules that have this path (Adam's)
        var scalars = new WeightUpdateScalars(0, s.Decay.FactorBeforeUpdate(lr), s.Decay.FactorAfterUpdate(lr), s.WeightRounding);
        if (!rule.TryUpdateRounded(s.Parameter, s.Projected!, s.Rule, Kernel(s.State, s.Parameter), scalars)) return false;
        s.DecayLearningRate = lr;
        return true;
    }

    /// <summary>W ← round(((W·before) − c·U)·after) with the parameter's kernel (the reference for a layout the CPU kernel cannot take).</summary>
    private static void Update(LowRankParameterState state, Tensor weights, Tensor update, in WeightUpdateScalars scalars) =>
        Kernel(state, weights, update).UpdateWeights(weights, update, scalars);

    /// <summary>The parameter's weight kernel for these tensors.</summary>
    private static IWeightUpdateKernel Kernel(LowRankParameterState state, Tensor weights, Tensor? update = null)
    {
        // No CUDA kernel yet: CUDA tensors take the reference, whatever LOWRANKOPTIM_KERNELS names.
        KernelBackend? backend = weights.device_type == TorchSharp.DeviceType.CPU ? null : KernelBackend.Reference;
        return state.WeightKernels.ForCall(backend, weights.device, KernelStorage.Dense(ScalarType.BFloat16), weights.numel(), weights, update);
    }
}
