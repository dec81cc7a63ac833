using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The step, in named phases over a list of parameter steps:
/// prepare → screen → refresh → project → communicate → update → apply → after → store (compressed moments written back).
/// Each phase runs over the whole list before the next starts, so a phase can work on many tensors at once.
/// The communicate phase is the data-parallel seam (<see cref="Communication"/>, null in a single process): it sums
/// over ranks what each subspace declares (<see cref="ISubspace.Exchange"/>): whole gradients before the screen and
/// refresh phases, projected gradients after the project phase; with sharded state it also shares what the owning rank
/// computed (directions after update, full-space weights after the step). The engine
/// knows the extension interfaces only (<see cref="ISubspace"/>, <see cref="IUpdateRule"/>) and never tests a
/// method's type. Only prepare and apply touch parameter values (the rule may read them through
/// <see cref="RuleContext.ParameterRms"/>, and a rule's fused path writes them in update).
/// <para>
/// Failures: a gradient of the wrong shape or dtype throws before anything changes (prepare). A refresh that fails
/// numerically (non-finite gradient, <see cref="SubspaceRefreshException"/>, libtorch's "failed to converge")
/// keeps the basis and is reported; any other exception propagates. A gradient that is not finite, or whose
/// squares could overflow the working dtype, skips the parameter's step (screen): its weights, rule state (moments)
/// and basis stay as they were; the step is counted, so refresh and decay schedules stay in phase with the others;
/// the skip is reported (and a refresh or basis step that could not be taken, as a failed refresh).
/// </para>
/// </summary>
internal sealed class StepEngine(
    Action<LowRankParameterState, ISubspace, long, string> reportFailure,
    Action<LowRankParameterState, long, string> reportSkip,
    IRefreshObserver? observer = null)
{
    /// <summary>The communicate phase's data-parallel exchange, or null in a single process (execution policy, never saved).</summary>
    public IStepCommunication? Communication { get; set; }

    /// <summary>
    /// Safety factor of the overflow bound: G is usable while its Frobenius norm ‖G‖ &lt; √(max of the dtype) / 256, so
    /// every square, every sum of squares over G or its projection R (‖R‖ ≤ ‖G‖ for orthonormal bases) and every moment
    /// built from them stays finite with a margin of 2¹⁶ (for projections that are not orthonormal, such as APOLLO's
    /// Gaussian one).
    /// </summary>
    private const double OverflowMargin = 256;

    /// <summary>Screen each gradient before the step (see <see cref="LowRankOptimizer.SkipUnusableGradients"/>).</summary>
    public bool ScreenGradients { get; set; } = true;

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
        Communication?.SumGradients(steps);
        if (ScreenGradients)
        {
            foreach (var s in steps) s.GradientNorm = Norm(s.Working);
            Communication?.CombineGradientNorms(steps);
            foreach (var s in steps) Screen(s);
        }
        foreach (var s in steps) Refresh(s);
        foreach (var s in steps) Project(s);
        if (observer is not null)
            foreach (var s in steps) Observe(s);
    }

    /// <summary>The phases from R on: communicate → update → apply → after.</summary>
    public void Finish(IReadOnlyList<ParameterStep> steps)
    {
        Communication?.SumProjected(steps);
        foreach (var s in steps) Update(s);
        Communication?.ShareUpdates(steps);
        foreach (var s in steps) Apply(s);
        foreach (var s in steps) After(s);
        foreach (var s in steps) s.State.EndStep(s.Step, changed: !s.Skipped);
        Communication?.ShareWeights(steps);
    }

    /// <summary>Throws when <paramref name="gradient"/>'s shape or dtype differs from its parameter's, naming both.</summary>
    public static void CheckGradient(LowRankParameterState state, Tensor parameter, Tensor gradient)
    {
        if (!gradient.shape.SequenceEqual(parameter.shape) || gradient.dtype != parameter.dtype)
            throw new ArgumentException(
                $"{state.Describe()}: the gradient has shape {StateReader.Format(gradient.shape)} and dtype {gradient.dtype}; " +
                $"it must have the parameter's shape {StateReader.Format(parameter.shape)} and dtype {parameter.dtype}.", "gradient");
    }

    /// <summary>Checks the gradient, casts it to the working dtype, adds L2 decay and builds the step's contexts.</summary>
    private static void Prepare(ParameterStep s)
    {
        var (p, grad, options, state) = (s.Parameter, s.Gradient, s.Options, s.State);
        CheckGradient(state, p, grad);
        var rule = options.Rule!;
        s.Step = state.Step + 1;
        s.Decay = new WeightDecayPolicy(options.WeightDecay!.Value, options.DecayOrder!.Value);
        var working = rule.WorkingType(grad.dtype);
        s.Working = s.Decay.CoupleToGradient(grad.dtype == working ? grad : grad.to(working), p);
        s.Subspace = new SubspaceContext(state.Index, s.Step, options.Lr, options.InitialLearningRate);
        s.Rule = new RuleContext(s.Step, options.Lr, rule, () => Rms.OfParameter(p), s.Decay);
        s.WeightRounding = p.dtype == ScalarType.BFloat16
            ? options.EffectiveWeightRounding.At(WeightRounding.StreamOf(state.Index), s.Step)
            : Kernels.Rounding.Nearest;
        if (state.Subspace is null) return;
        s.View = state.View!.Value;
        // Subspaces view the matrix (head blocks, the residual's flat indices): a strided gradient is copied once.
        var matrix = s.Working.reshape(s.View.Rows, s.View.Cols);
        s.Matrix = matrix.is_contiguous() ? matrix : matrix.contiguous();
    }

    /// <summary>
    /// Skips the step when the gradient G (in the working dtype, L2 decay added) is not finite or so large that the
    /// squares the rules and refreshes form from it (G², R², sums of them) could overflow the working dtype: its norm
    /// (<see cref="Norm"/>, one read of G; in data-parallel runs combined over the ranks first) tells both. Nothing
    /// has changed yet, so weights, moments and bases stay as they were; the step is counted (refresh and decay
    /// schedules stay in phase; not before a first basis exists) and reported, and so is a refresh or basis step that
    /// was due (as a failed refresh).
    /// One read-back per parameter and step.
    /// </summary>
    private void Screen(ParameterStep s)
    {
        var g = s.Working;
        if (g.numel() == 0) return;
        var norm = s.GradientNorm;
        var bound = Math.Sqrt(LargestFinite(g.dtype)) / OverflowMargin;
        if (norm < bound) return; // false for NaN
        s.Skipped = true;
        s.Unusable = double.IsFinite(norm)
            ? $"the gradient's norm {norm:G3} is so large that its squares could overflow {g.dtype} (steps are taken below {bound:G3})"
            : "the gradient has non-finite entries (or a norm beyond the range of " + g.dtype + ")";
        // Counted, unless there is no basis yet (as after a failed first refresh: the first step is still to come).
        if (s.State.Subspace is not { HasBasis: false }) s.State.Step = s.Step;
        reportSkip(s.State, s.Step, s.Unusable);
        if (s.State.Subspace is not { } subspace) return;
        // A basis that was due to move could not: reported as the refresh failure it is.
        if (subspace.NeedsRefresh(s.Step) || subspace.UpdatesBasisAfterEveryStep)
            reportFailure(s.State, subspace, s.Step, s.Unusable + "; the basis keeps its value");
    }

    /// <summary>
    /// ‖<paramref name="g"/>‖₂ as a number for the screen: NaN or ∞ for a non-finite entry; 0 for an empty tensor.
    /// A dense float32 gradient takes √(g·g), one BLAS pass (1.3–1.45× faster than libtorch's norm at 4096×4096 and
    /// 4096×11008 on the CPU): its float32 sum is exact enough for a bound 256× below overflow, becomes ∞ only above the
    /// bound, and NaN and ∞ entries carry through it.
    /// </summary>
    internal static double Norm(Tensor g)
    {
        if (g.numel() == 0) return 0;
        if (g.dtype == ScalarType.Float32 && g.is_contiguous())
        {
            using var flat = g.view(-1);
            using var squares = flat.dot(flat);
            return Math.Sqrt(squares.item<float>());
        }
        using var n = g.norm();
        using var wide = n.to(ScalarType.Float64);
        return wide.item<double>();
    }

    /// <summary>Recomputes the basis when due; a numerical failure keeps the old basis and is reported.</summary>
    private void Refresh(ParameterStep s)
    {
        var subspace = s.State.Subspace;
        if (s.Skipped || subspace is null || !subspace.NeedsRefresh(s.Step)) return;
        string reason;
        try
        {
            if (ScreenGradients || s.Matrix!.isfinite().all().item<bool>()) // a screened gradient is finite
            {
                var before = observer?.BeforeRefresh(s.State, subspace);
                s.Projected = subspace.Refresh(s.Matrix!, s.Subspace);
                s.State.Refreshes++;
                s.Refreshed = before;
                return;
            }
            reason = "the gradient has non-finite entries";
        }
        catch (SubspaceRefreshException e)
        {
            reason = e.Message;
        }
        catch (ExternalException e) when (IsNumericalFailure(e))
        {
            reason = e.Message;
        }
        reportFailure(s.State, subspace, s.Step, reason);
        s.Skipped = !subspace.HasBasis; // no basis to project with yet: no update this step
    }

    /// <summary>
    /// True for libtorch's numerical failures of a factorization (an SVD or eigendecomposition that "failed to
    /// converge"); libtorch reports programming errors (shapes, dtypes, devices, indices) as <see cref="ExternalException"/>
    /// too, and those propagate.
    /// </summary>
    internal static bool IsNumericalFailure(ExternalException e) =>
        e.Message.Contains("failed to converge", StringComparison.OrdinalIgnoreCase);

    /// <summary>R = Proj(G), unless the refresh computed it; the working gradient itself in the full space.</summary>
    private static void Project(ParameterStep s)
    {
        if (s.Skipped) return;
        s.Projected ??= s.State.Subspace is { } subspace ? subspace.Project(s.Matrix!) : s.Working;
    }

    /// <summary>The optional observer's look at a refreshed step (subspace diagnostics): G and R with the new basis.</summary>
    private void Observe(ParameterStep s)
    {
        if (s.Refreshed is { } before && !s.Skipped)
            observer!.Refreshed(s.State, s.State.Subspace!, s.Step, s.Matrix!, s.Projected!, before);
    }

    /// <summary>
    /// The rule updates its state from R; in the full space it may update the weights itself in the same pass. For
    /// stochastically rounded bf16 weights only a rule that rounds them so (<see cref="IRoundedInPlaceRule"/>) does; the
    /// fused paths of <see cref="IUpdateRule.TryUpdateInPlace"/> round to nearest.
    /// </summary>
    private static void Update(ParameterStep s)
    {
        if (s.Skipped) return;
        if (!s.Owned)
        {
            s.State.Step = s.Step; // the owner runs the rule; its result arrives in ShareUpdates or ShareWeights
            return;
        }
        var rule = s.State.Rule;
        if (s.State.Subspace is null && s.RoundsStochastically && RoundedWeightUpdate.TryInPlace(s))
        {
            s.WeightsUpdated = true; // both decays included
        }
        else if (s.State.Subspace is null && !s.RoundsStochastically && rule.TryUpdateInPlace(s.Parameter, s.Projected!, s.Rule, out var decayLr))
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

    /// <summary>
    /// W ← W − c·Back(N) (or the subspace's own update), with decoupled decay before or after; for stochastically
    /// rounded bfloat16 weights, all of it computed in float32 and rounded once (<see cref="RoundedWeightUpdate"/>).
    /// </summary>
    private static void Apply(ParameterStep s)
    {
        if (s.Skipped || (!s.Owned && s.State.Subspace is null)) return; // a full-space weight comes from its owner
        var p = s.Parameter;
        if (s.RoundsStochastically)
        {
            if (!s.WeightsUpdated) RoundedWeightUpdate.Apply(s); // decay, update and the rounding in one float32 pass
            return;
        }
        if (!s.WeightsUpdated)
        {
            s.Decay.ApplyBeforeUpdate(p, s.DecayLearningRate);
            if (s.State.Subspace is { } subspace)
            {
                // A strided parameter that cannot be viewed as its matrix is updated through a contiguous copy.
                var viewable = p.dim() == 2 || p.is_contiguous();
                var target = viewable ? p : p.contiguous();
                subspace.Apply(new SubspaceUpdate(target.view(s.View.Rows, s.View.Cols), s.Matrix!, s.Projected!, s.Update.Direction, s.Update.Coefficient, s.Rule, s.Subspace));
                if (!viewable) p.copy_(target);
            }
            else
            {
                using var alpha = (-s.Update.Coefficient).ToScalar();
                p.add_(s.Update.Direction, alpha: alpha);
            }
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

    /// <summary>The largest finite value of a floating-point dtype.</summary>
    private static double LargestFinite(ScalarType dtype) => dtype switch
    {
        ScalarType.Float64 => double.MaxValue,
        ScalarType.Float16 => 65504.0,
        ScalarType.BFloat16 => 3.3895313892515355e38,
        _ => float.MaxValue,
    };
}
