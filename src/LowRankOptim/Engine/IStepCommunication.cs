namespace LowRankOptim;

/// <summary>
/// The communicate phase of <see cref="StepEngine"/> in data-parallel training: collective calls that every rank
/// makes at the same points of the step, over the same parameter steps. Implemented by
/// <see cref="DataParallel"/>; the engine calls it only when one is attached.
/// </summary>
internal interface IStepCommunication
{
    /// <summary>
    /// After prepare: asks each subspace what it needs (<see cref="ParameterStep.Exchange"/>), marks what this rank
    /// owns (<see cref="ParameterStep.Owned"/>), and averages the working gradients of full exchanges in place.
    /// </summary>
    void SumGradients(IReadOnlyList<ParameterStep> steps);

    /// <summary>
    /// Before the screen: combines each projected exchange's <see cref="ParameterStep.GradientNorm"/> over the ranks
    /// (√Σ‖G_r‖², which is not finite when any rank's is not and bounds every rank's), so all ranks take the same skips.
    /// Full exchanges screen the averaged gradient, the same on every rank, and are left as they are.
    /// </summary>
    void CombineGradientNorms(IReadOnlyList<ParameterStep> steps);

    /// <summary>After project: averages the projected gradients (and declared gradient entries) of projected exchanges.</summary>
    void SumProjected(IReadOnlyList<ParameterStep> steps);

    /// <summary>After update, sharded state: each owner broadcasts the rule's result of its projected parameters.</summary>
    void ShareUpdates(IReadOnlyList<ParameterStep> steps);

    /// <summary>After the step, sharded state: each owner broadcasts the new values of its full-space parameters.</summary>
    void ShareWeights(IReadOnlyList<ParameterStep> steps);
}
