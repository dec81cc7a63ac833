using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The step, in named phases over a list of parameter steps:
/// prepare → refresh → project → communicate → update → apply → after.
/// Each phase runs over the whole list before the next starts, so a phase can work on many tensors at once
/// (the communicate phase is where a data-parallel all-reduce of the projected gradients goes). The engine
/// knows the extension interfaces only (<see cref="ISubspace"/>, <see cref="IUpdateRule"/>) and never tests a
/// method's type. Only prepare and apply touch parameter values (the rule may read them through
/// <see cref="RuleContext.ParameterRms"/>, and a rule's fused path writes them in update).
/// </summary>
internal sealed class StepEngine(Action<LowRankParameterState, ISubspace, long, string> reportFailure)
{
    /// <summary>Runs every phase over <paramref name="steps"/>; temporaries live in the caller's dispose scope.</summary>
    public void Run(IReadOnlyList<ParameterStep> steps)
    {
        Gather(steps);
        Finish(steps);
    }

    /// <summary>
    /// The phases that read the full gradient: prepare → refresh → project. Afterwards each step holds R in
    /// <see cref="ParameterStep.Projected"/> (or is <see cref="ParameterStep.Skipped"/>). <see cref="Run"/> is
    /// Gather then <see cref="Finish"/>; the per-layer mode (PerLayer/GradientRelease) runs the two halves at
    /// different times (Gather during backward, Finish at once or at <c>step()</c>), and for a subspace that does
    /// not read the gradient after projection it replaces R by a sum over micro-batches in between
    /// (<see cref="ParameterStep.KeepOnlyProjected"/>).
    /// </summary>
    public void Gather(IReadOnlyList<ParameterStep> steps)
    {
        foreach (var s in steps) Prepare(s);
        foreach (var s in steps) Refresh(s);
        foreach (var s in steps) Project(s);
    }

    /// <summary>The phases from R on: communicate → update → apply → after.</summary>
    public void Finish(IReadOnlyList<ParameterStep> steps)
    {
        Communicate(steps);
        foreach (var s in steps) Update(s);
        foreach (var s in steps) Apply(s);
        foreach (var s in steps) After(s);
    }

    /// <summary>Checks the gradient, casts it to the working dtype, adds L2 decay and builds the step's contexts.</summary>
    private static void Prepare(ParameterStep s)
    {
        var (p, grad, options, state) = (s.Parameter, s.Gradient, s.Options, s.State);
        if (!grad.shape.SequenceEqual(p.shape) || grad.dtype != p.dtype)
            throw new ArgumentException(
                $"{state.Describe()}: the gradient has shape {StateReader.Format(grad.shape)} and dtype {grad.dtype}; " +
                $"it must have the parameter's shape {StateReader.Format(p.shape)} and dtype {p.dtype}.", "gradient");
        var rule = options.Rule!;
        s.Step = state.Step + 1;
        s.Decay = new WeightDecayPolicy(options.WeightDecay!.Value, options.DecayOrder!.Value);
        var working = rule.WorkingType(grad.dtype);
        s.Working = s.Decay.CoupleToGradient(grad.dtype == working ? grad : grad.to(working), p);
        s.Subspace = new SubspaceContext(state.Index, s.Step, options.Lr, options.InitialLearningRate);
        s.Rule = new RuleContext(s.Step, options.Lr, rule, () => ParameterRms(p), s.Decay);
        if (state.Subspace is null) return;
        s.View = options.Projection!.MatrixViewOf(state.Shape)!.Value;
        s.Matrix = s.Working.reshape(s.View.Rows, s.View.Cols);
    }

    /// <summary>Recomputes the basis when due; a numerical failure keeps the old basis and is reported.</summary>
    private void Refresh(ParameterStep s)
    {
        var subspace = s.State.Subspace;
        if (subspace is null || !subspace.NeedsRefresh(s.Step)) return;
        string reason;
        try
        {
            if (s.Matrix!.isfinite().all().item<bool>())
            {
                s.Projected = subspace.Refresh(s.Matrix, s.Subspace);
                s.State.Refreshes++;
                return;
            }
            reason = "the gradient has non-finite entries";
        }
        catch (Exception e) when (e is SubspaceRefreshException or System.Runtime.InteropServices.ExternalException)
        {
            reason = e.Message;
        }
        reportFailure(s.State, subspace, s.Step, reason);
        s.Skipped = !subspace.HasBasis; // no basis to project with yet: no update this step
    }

    /// <summary>R = Proj(G), unless the refresh computed it; the working gradient itself in the full space.</summary>
    private static void Project(ParameterStep s)
    {
        if (s.Skipped) return;
        s.Projected ??= s.State.Subspace is { } subspace ? subspace.Project(s.Matrix!) : s.Working;
    }

    /// <summary>
    /// The data-parallel seam: where the projected gradients of every rank would be summed. A single process
    /// has nothing to exchange.
    /// </summary>
    private static void Communicate(IReadOnlyList<ParameterStep> steps) { }

    /// <summary>The rule updates its state from R; in the full space it may update the weights itself in the same pass.</summary>
    private static void Update(ParameterStep s)
    {
        if (s.Skipped) return;
        var rule = s.State.Rule;
        if (s.State.Subspace is null && rule.TryUpdateInPlace(s.Parameter, s.Projected!, s.Rule, out var decayLr))
        {
            s.WeightsUpdated = true;
            s.DecayLearningRate = decayLr;
        }
        else
        {
            s.Update = rule.Compute(s.Projected!, s.Rule);
            s.DecayLearningRate = s.Update.DecayLearningRate;
        }
        s.State.Step = s.Step;
    }

    /// <summary>W ← W − c·Back(N) (or the subspace's own update), with decoupled decay before or after.</summary>
    private static void Apply(ParameterStep s)
    {
        if (s.Skipped) return;
        var p = s.Parameter;
        if (!s.WeightsUpdated)
        {
            s.Decay.ApplyBeforeUpdate(p, s.DecayLearningRate);
            if (s.State.Subspace is { } subspace)
                subspace.Apply(new SubspaceUpdate(p.view(s.View.Rows, s.View.Cols), s.Matrix!, s.Projected!, s.Update.Direction, s.Update.Coefficient, s.Rule, s.Subspace));
            else
                p.add_(s.Update.Direction, alpha: -s.Update.Coefficient);
        }
        s.Decay.ApplyAfterUpdate(p, s.DecayLearningRate);
    }

    /// <summary>The subspace's reaction to the step (Online Subspace Descent's basis step); a failure keeps the basis and is reported.</summary>
    private void After(ParameterStep s)
    {
        if (s.Skipped || s.State.Subspace is not { } subspace) return;
        try
        {
            subspace.AfterUpdate(s.Matrix!, s.Projected!, s.Subspace);
        }
        catch (SubspaceRefreshException e)
        {
            reportFailure(s.State, subspace, s.Step, e.Message);
        }
    }

    private static double ParameterRms(Tensor p)
    {
        using var scope = NewDisposeScope();
        var w = p.to(ScalarType.Float32);
        return w.norm().div_(Math.Sqrt(w.numel())).item<float>();
    }
}
