using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The per-layer mode of a <see cref="LowRankOptimizer"/>, from <see cref="LowRankOptimizer.ReleaseGradientsDuringBackward"/>:
/// during <c>loss.backward()</c> each parameter's gradient is taken as soon as autograd has finished it, and
/// projected (or applied) and released, instead of waiting in <c>.grad</c> for <c>step()</c>. The training loop
/// stays the standard one: <c>backward()</c> k times, then <c>step()</c>, the boundary for whatever must wait.
/// The results equal the standard path's (backward k times, optional <c>clip_grad_norm_</c>, <c>step()</c>) up to
/// float rounding; see docs/per-layer.md for the design, the memory it saves and what each case keeps.
/// <para>
/// How: forward pre-hooks on every <c>Module&lt;Tensor, Tensor&gt;</c> that owns parameters wrap the module's input in a
/// pass-through autograd function (<see cref="GradientTap"/>) whose backward runs right after the module's. Per
/// step (k micro-batches):
/// </para>
/// <list type="bullet">
/// <item>micro-batches 1..k−1: a parameter whose projection allows it (a subspace that needs only R after projecting,
/// no refresh due, no L2 decay, no clipping) accumulates Σ Proj(G_i) and its gradient is freed at once; a stock
/// Linear's weight forms Proj(G_i) from the call's δ and X without G_i (<see cref="ProjectedLinear"/>); any other
/// keeps Σ G_i (the standard path's memory for that parameter);</item>
/// <item>micro-batch k: the step's gradient is complete at the tap; the refresh (if due) and the projection run there,
/// the full gradient is freed, and without clipping the update is applied at once; with clipping, R (or the full
/// gradient where the update needs it) and ‖G‖ wait for <c>step()</c>, which computes the global norm exactly as
/// <c>clip_grad_norm_</c> and applies the clipped updates (clipping and projection are linear: they commute);</item>
/// <item>parameters whose module cannot be tapped (an Embedding's integer input, modules of other signatures) keep
/// their gradient in <c>.grad</c> and are stepped by <c>step()</c>.</item>
/// </list>
/// A parameter is taken at a tap only once all the calls of its owning modules have fired their taps and its gradient
/// of the pass is there (autograd accumulates every use of a parameter in one backward pass at once); a parameter
/// whose gradient is not there (read outside its modules, or owned by a module that cannot be tapped) waits in
/// <c>.grad</c> for <c>step()</c>, as in the standard path. Tied weights (one tensor under two modules) are one parameter.
/// The mode is execution policy: nothing of it is saved in checkpoints. Dispose it to return to the standard path.
/// </summary>
public sealed class GradientRelease : IDisposable
{
    private readonly LowRankOptimizer _optimizer;
    private readonly StepEngine _engine;
    private readonly List<ReleaseSlot> _slots = [];      // optimizer order (the standard step's order)
    private readonly List<ReleaseSlot> _normOrder = [];  // the model's parameter order, then the optimizer's others
    private readonly List<Action> _removeHooks = [];
    private int _passes;
    private bool _forwardSinceTap;
    private bool _disposed;
    private Exception? _fault;
    private long _peak;

    internal GradientRelease(LowRankOptimizer optimizer, StepEngine engine, nn.Module model, int accumulationSteps, double? maxGradNorm)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (accumulationSteps < 1)
            throw new ArgumentOutOfRangeException("accumulation_steps", accumulationSteps, "accumulation_steps must be >= 1 (the number of backward passes per step()).");
        if (maxGradNorm is { } c && !(c > 0 && double.IsFinite(c)))
            throw new ArgumentOutOfRangeException("max_grad_norm", maxGradNorm, "max_grad_norm must be a finite number > 0, or null for no clipping.");
        _optimizer = optimizer;
        _engine = engine;
        AccumulationSteps = accumulationSteps;
        MaxGradNorm = maxGradNorm;

        // Parameters are identified by their tensor, not by their Parameter object: TorchSharp can hold one tensor under
        // two Parameter objects (a weight tied by `linear.weight = embedding.weight`), which share one gradient.
        var names = new Dictionary<IntPtr, string>();
        foreach (var (name, p) in model.named_parameters())
            names.TryAdd(TensorId(p), name);
        var byTensor = new Dictionary<IntPtr, ReleaseSlot>();
        foreach (var state in optimizer.States)
        {
            var id = TensorId(state.Parameter);
            var name = names.TryGetValue(id, out var n) ? n : null;
            if (byTensor.TryGetValue(id, out var twin))
                throw new ArgumentException($"Parameters {twin.State.Index} and {state.Index} of the optimizer are one tensor{(name is null ? "" : $" ('{name}', tied)")} under two " +
                    "Parameter objects: every step would update it twice, in the standard path too. Put it in the optimizer once.", nameof(model));
            var slot = new ReleaseSlot(state, name ?? $"parameter {state.Index} (not in the model)") { AlwaysDeferred = name is null };
            _slots.Add(slot);
            byTensor[id] = slot;
        }
        // Every trainable parameter of the model must be the optimizer's: its gradient would otherwise be taken by nobody.
        foreach (var (name, p) in model.named_parameters())
            if (p.requires_grad && !byTensor.ContainsKey(TensorId(p)))
                throw new ArgumentException($"The model's parameter '{name}' (shape {StateReader.Format(p.shape)}) is not in this optimizer; " +
                    "the per-layer mode takes every trainable parameter's gradient during backward. Add it to a parameter group, or set requires_grad = false.", nameof(model));
        _normOrder.AddRange(names.Keys.Where(byTensor.ContainsKey).Select(id => byTensor[id]).Distinct());
        _normOrder.AddRange(_slots.Where(s => s.AlwaysDeferred));

        // Hooks on every module that owns trainable parameters of the optimizer.
        var modules = new List<(string Name, nn.Module Module)> { ("", model) };
        modules.AddRange(model.named_modules().Where(m => !ReferenceEquals(m.Item2, model)));
        var hooked = 0;
        try
        {
            foreach (var (moduleName, module) in modules.DistinctBy(m => m.Module, ReferenceEqualityComparer.Instance))
            {
                var owned = module.named_parameters(recurse: false)
                    .Where(np => np.parameter.requires_grad && byTensor.ContainsKey(TensorId(np.parameter)))
                    .Select(np => byTensor[TensorId(np.parameter)]).Distinct().ToArray();
                if (owned.Length == 0) continue;
                if (module is not nn.Module<Tensor, Tensor> tapped)
                {
                    foreach (var slot in owned) slot.AlwaysDeferred = true;
                    continue;
                }
                var record = new ModuleRecord(moduleName, owned);
                if (module is Linear linear && byTensor.TryGetValue(TensorId(linear.weight!), out var weightSlot) && MayProjectCalls(weightSlot, linear))
                    record.Linear = new LinearCall(this, linear, weightSlot);
                var pre = tapped.register_forward_pre_hook((_, input) => OnForward(record, input));
                _removeHooks.Add(pre.remove);
                var post = tapped.register_forward_hook((_, _, output) => AfterForward(record, output));
                _removeHooks.Add(post.remove);
                hooked++;
            }
        }
        catch
        {
            RemoveHooks();
            throw;
        }
        if (hooked == 0)
            throw new ArgumentException("The model has no module of type nn.Module<Tensor, Tensor> that owns parameters (Linear, Embedding, " +
                "norms, custom modules): the per-layer mode has nothing to observe during backward.", nameof(model));
    }

    /// <summary>k: the backward passes (micro-batches) of one step; the update happens during the k-th.</summary>
    public int AccumulationSteps { get; }

    /// <summary>The global-norm clipping threshold (as <c>clip_grad_norm_(parameters, max_norm)</c>, norm 2), or null.</summary>
    public double? MaxGradNorm { get; }

    /// <summary>Backward passes seen since the last <c>step()</c>.</summary>
    public int MicroBatches => _passes;

    /// <summary>The total gradient norm (before clipping) of the last step, as <c>clip_grad_norm_</c> returns it; NaN without clipping.</summary>
    public double LastGradNorm { get; private set; } = double.NaN;

    private bool Clipping => MaxGradNorm is not null;

    /// <summary>Linear calls whose weight gradient went into the projected space as Proj(δᵀX), without its m×n matrix (for tests).</summary>
    internal long ProjectedLinearCalls { get; private set; }

    /// <summary>
    /// Forward pre-hook: counts the use, and wraps the input in a tap of this call. One tap per call, even where modules
    /// read the same tensor (q/k/v): each fires right after its own module, so one layer's gradient is alive at a time.
    /// </summary>
    private Tensor OnForward(ModuleRecord record, Tensor input)
    {
        if (_disposed || _fault is not null || !is_grad_enabled()) return input;
        foreach (var slot in record.Slots) slot.Pending++;
        _forwardSinceTap = true;
        if (input is null || !input.requires_grad || !input.is_floating_point())
        {
            record.TapOutput = true; // no tap possible on the input: the output's marks the backward pass
            return input!;
        }
        var tapped = GradientTap.On(input, new TapPoint(this, record));
        if (record.Linear is { Slot: { ProjectedSum: not null, Outside: false, Completed: false } weight } && HasGradient(weight))
        {
            // A gradient left in .grad after an earlier pass whose calls went to the projected space is of a use outside
            // the weight's modules, added after that pass's tap: its gradients wait in .grad for step(), as at the taps.
            weight.Outside = true;
        }
        // Micro-batches 1..k−1 (counted by the backward passes seen so far): this call's weight gradient may go straight
        // into the projected space. The last one keeps the Linear's own backward: its tap completes the step's gradient.
        if (record.Linear is { Slot.AlwaysDeferred: false } && _passes < AccumulationSteps - 1)
            record.ProjectedInput = tapped;
        return tapped;
    }

    /// <summary>
    /// True when calls of <paramref name="linear"/> can hand its weight's gradient to the projected space as δ and X
    /// (<see cref="ProjectedLinear"/>): micro-batches accumulate there (k > 1, no clipping), the subspace is a basis
    /// projection of the weight itself (no head blocks or reshaping), and it needs only R after projecting.
    /// Whether a given micro-batch does is decided in its backward (<see cref="TakeProjected"/>).
    /// </summary>
    private bool MayProjectCalls(ReleaseSlot slot, Linear linear) =>
        AccumulationSteps > 1 && !Clipping && !slot.AlwaysDeferred
        && slot.State.Subspace is IProductProjection and ISubspace { ReadsGradientAfterProjection: false }
        && slot.State.View is { } view && linear.weight!.dim() == 2
        && view.Rows == linear.weight.shape[0] && view.Cols == linear.weight.shape[1];

    /// <summary>Forward hook: a module whose input could not be tapped gets a tap on its output, which only marks the backward pass.</summary>
    private Tensor AfterForward(ModuleRecord record, Tensor output)
    {
        if (record.ProjectedInput is { } input)
        {
            record.ProjectedInput = null;
            if (_disposed || _fault is not null || output is null || !output.requires_grad || !output.is_floating_point()) return output!;
            return ProjectedLinear.On(input, output, record.Linear!);
        }
        if (!record.TapOutput) return output;
        record.TapOutput = false;
        if (_disposed || _fault is not null || output is null || !output.requires_grad || !output.is_floating_point()) return output!;
        return GradientTap.On(output, new TapPoint(this, null));
    }

    /// <summary>A tap fired during backward: parameters whose every counted use has fired have their gradient complete.</summary>
    internal void OnTap(TapPoint point)
    {
        if (_disposed || _fault is not null) return;
        try
        {
            if (!EnterPass()) return;
            List<ReleaseSlot>? complete = null;
            if (point.Module is { } module)
                foreach (var slot in module.Slots)
                    if (--slot.Pending == 0 && !slot.AlwaysDeferred) (complete ??= []).Add(slot);
            if (complete is null) return;
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            Measure(complete);
            var last = _passes == AccumulationSteps;
            foreach (var slot in complete)
            {
                if (slot.Completed || slot.Outside) continue;
                var g = slot.Parameter.grad;
                if (slot.TakenDirectly)
                {
                    // This pass's gradient of its calls is in ProjectedSum already. A use outside them would add its gradient to
                    // .grad after this tap (autograd adds a pass's uses at once): the next pass's call sees it (TakeProjected).
                    slot.TakenDirectly = false;
                    if (g is null) continue;
                }
                if (g is null)
                {
                    // Autograd accumulates a parameter once per backward pass, after every use: no gradient at the tap of its
                    // modules means a use outside them is still to come. It waits in .grad for step() for the rest of this step.
                    slot.Outside = true;
                    continue;
                }
                slot.Parameter.grad = null;
                Absorb(slot, g, last, deferFinish: Clipping);
            }
        }
        catch (Exception e)
        {
            _fault = e; // never through libtorch's autograd engine: step() rethrows it
        }
    }

    /// <summary>
    /// At the first event of a backward pass (a tap or a projected Linear's backward), counts the pass. False, with the
    /// fault recorded, for a pass beyond k.
    /// </summary>
    private bool EnterPass()
    {
        if (_forwardSinceTap)
        {
            _forwardSinceTap = false;
            if (_passes == 0) _peak = 0;
            _passes++;
        }
        if (_passes <= AccumulationSteps) return true;
        _fault = new InvalidOperationException($"Backward pass {_passes} since the last step() with accumulation_steps = {AccumulationSteps}: " +
            $"call step() after every {AccumulationSteps} backward passes. The updates were applied during the {AccumulationSteps}th.");
        return false;
    }

    /// <summary>
    /// The backward of a <see cref="ProjectedLinear"/> call: its weight's gradient is δᵀX (<paramref name="delta"/>: B×m,
    /// <paramref name="input"/>: B×n). True when it was added to the weight's projected sum as Proj(δᵀX), which happens
    /// when the weight accumulates in the projected space and this is not the last micro-batch (whose tap completes the
    /// step's gradient: a refresh or the screen may read it); false to have the caller return δᵀX to autograd, as the
    /// Linear's backward would. Called from libtorch's autograd engine: faults are recorded, never thrown.
    /// </summary>
    internal bool TakeProjected(LinearCall call, Tensor delta, Tensor input)
    {
        if (_disposed || _fault is not null) return false;
        var slot = call.Slot;
        try
        {
            if (!EnterPass() || _passes >= AccumulationSteps || slot.AlwaysDeferred || slot.Outside || slot.Completed) return false;
            Decide(slot);
            if (!slot.ProjectedAccumulation || slot.State.Subspace is not IProductProjection basis || !slot.State.Subspace.HasBasis || _engine.Communication is not null)
                return false;
            // Prepare (StepEngine) would project δᵀX as it is: the working dtype is the gradient's, and the basis's.
            if (_optimizer.OptionsOf(slot.State).Rule!.WorkingType(delta.dtype) != delta.dtype || basis.BasisType != delta.dtype || !basis.ProductIsCheaper(delta.shape[0]))
                return false;
            if (HasGradient(slot))
            {
                // A gradient in .grad now is of a use outside the weight's modules that came after an earlier pass's tap
                // (autograd adds all uses of a pass at once): from now on its gradients wait in .grad for step(), as at the taps.
                slot.Outside = true;
                return false;
            }
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            var r = basis.ProjectProduct(delta, input);
            if (slot.ProjectedSum is null) slot.ProjectedSum = r.DetachFromDisposeScope();
            else slot.ProjectedSum.add_(r);
            slot.TakenDirectly = true;
            ProjectedLinearCalls++;
            return true;
        }
        catch (Exception e)
        {
            _fault = e; // step() rethrows it; the caller returns δᵀX
            return false;
        }
    }

    /// <summary>
    /// Takes a gradient of <paramref name="slot"/> (already removed from <c>.grad</c>, owned by the caller's scope).
    /// Before the last micro-batch it accumulates; in the last it completes the step's gradient and gathers,
    /// finishes, or keeps it for <c>step()</c>.
    /// </summary>
    private void Absorb(ReleaseSlot slot, Tensor? gradient, bool last, bool deferFinish)
    {
        var options = _optimizer.OptionsOf(slot.State);
        Decide(slot);
        if (!last)
        {
            if (slot.ProjectedAccumulation)
            {
                // Proj(G_i) with the current basis (no refresh is due): the projection is linear, so Σ Proj(G_i) = Proj(Σ G_i).
                var step = new ParameterStep(slot.State, slot.Parameter, gradient!, options);
                _engine.Gather([step]);
                if (slot.ProjectedSum is null) slot.ProjectedSum = step.Projected!.DetachFromDisposeScope();
                else slot.ProjectedSum.add_(step.Projected!);
            }
            else if (slot.Held is null) slot.Held = gradient!.DetachFromDisposeScope();
            else slot.Held.add_(gradient!); // in place, as autograd accumulates .grad
            return;
        }

        // The last micro-batch: G = Σ G_i (Held + this one), or, after projected accumulation, the last micro-batch's
        // G_k (zero when only earlier micro-batches had one: Proj(0) = 0).
        Tensor full;
        if (slot.Held is { } held)
        {
            if (gradient is not null) held.add_(gradient);
            full = held;
        }
        else full = gradient ?? zeros_like(slot.Parameter);
        if (Clipping) slot.Norm = full.norm().DetachFromDisposeScope();
        slot.Completed = true;
        if (ReleasesAfterProjection(slot, options))
        {
            if (slot.ProjectedSum is { } earlier && _engine.ScreenGradients && !earlier.isfinite().all().item<bool>())
            {
                // An earlier micro-batch's gradient was not finite, so is the step's Σ G: the screen skips the step and
                // reports it as the standard path's would (it reads only this micro-batch's G).
                using var nan = double.NaN.ToScalar();
                full = full_like(full, nan);
            }
            var s = new ParameterStep(slot.State, slot.Parameter, full, options);
            _engine.Gather([s]); // the refresh, if due, sees the step's whole gradient
            var owned = false;
            if (!s.Skipped)
            {
                var r = s.Projected!;
                if (slot.ProjectedSum is { } sum)
                {
                    r = sum.add_(r);
                    slot.ProjectedSum = null;
                    owned = true;
                }
                s.KeepOnlyProjected(r);
            }
            if (slot.Held is not null)
            {
                slot.Held.Dispose();
                slot.Held = null;
            }
            if (deferFinish)
            {
                if (!owned) s.Projected?.DetachFromDisposeScope();
                slot.Ready = s;
                return;
            }
            _engine.Finish([s]);
            if (owned) s.Projected!.Dispose();
            slot.Finished = true;
            return;
        }
        if (deferFinish)
        {
            slot.Held ??= full.DetachFromDisposeScope();
            return;
        }
        _engine.Run([new ParameterStep(slot.State, slot.Parameter, full, options)]);
        slot.Held?.Dispose();
        slot.Held = null;
        slot.Finished = true;
    }

    /// <summary>At the slot's first gradient of the step: is a refresh due, and may micro-batches accumulate in the projected space?</summary>
    private void Decide(ReleaseSlot slot)
    {
        if (slot.Decided) return;
        slot.Decided = true;
        slot.Due = slot.State.Subspace?.NeedsRefresh(slot.State.Step + 1) ?? false;
        slot.ProjectedAccumulation = AccumulationSteps > 1 && !slot.Due && !Clipping && ReleasesAfterProjection(slot, _optimizer.OptionsOf(slot.State));
    }

    /// <summary>
    /// True when the step needs only R once projected: a subspace that promises it, and no L2 decay (λW is added to
    /// the gradient once per step, before the projection).
    /// </summary>
    private static bool ReleasesAfterProjection(ReleaseSlot slot, LowRankOptions options) =>
        slot.State.Subspace is { ReadsGradientAfterProjection: false }
        && !(options.DecayOrder == WeightDecayOrder.CoupledToGradient && options.WeightDecay is not 0.0);

    /// <summary>
    /// The boundary: after the k-th backward pass, steps what waited (deferred parameters, clipped updates) and
    /// starts the next step. Throws, changing nothing, before the k-th.
    /// </summary>
    internal Tensor? Step(Func<Tensor>? closure)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Tensor? loss = null;
        if (closure is not null)
            using (enable_grad())
                loss = closure();
        if (_fault is { } fault)
        {
            _fault = null;
            ResetWindow();
            throw new InvalidOperationException($"The per-layer mode failed during backward: {fault.Message} This step's window was discarded.", fault);
        }
        if (_passes < AccumulationSteps)
            throw new InvalidOperationException($"step() after {_passes} of {AccumulationSteps} backward passes: with accumulation_steps = {AccumulationSteps}, " +
                $"call step() once after every {AccumulationSteps} backward passes. Nothing was changed; the accumulated gradients are kept.");
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();

        // A safety net: autograd accumulates a parameter's gradient once per backward pass, so a gradient after the taken one
        // can only come from outside the passes' graphs (a gradient set or accumulated by hand, a second backward call).
        var late = _slots.Where(s => s.Completed && HasGradient(s)).ToList();
        if (late.Count > 0)
        {
            var names = string.Join(", ", late.Select(s => $"'{s.Name}'"));
            ResetWindow();
            throw new InvalidOperationException($"The parameter(s) {names} received gradient after the per-layer mode took their step's gradient during " +
                $"the last of {AccumulationSteps} backward passes (a gradient set or accumulated outside the backward passes, or one backward pass more than declared). " +
                "The updates applied during backward stay applied; the late gradients are left in .grad.");
        }
        Measure(_slots); // a leftover .grad of a slot that holds its sum is added to it in place

        // What waited in .grad (untapped modules, incomplete counts) is the last micro-batch's gradient of its parameter.
        foreach (var slot in _slots)
        {
            var g = slot.Parameter.grad;
            if (g is not null)
            {
                slot.Parameter.grad = null;
                Absorb(slot, g, last: true, deferFinish: true);
            }
            else if (!slot.Completed && (slot.Held is not null || slot.ProjectedSum is not null))
                Absorb(slot, null, last: true, deferFinish: true);
        }

        // Global-norm clipping exactly as torch.nn.utils.clip_grad_norm_ (norm 2): every ‖G‖ is of the step's complete gradient.
        Tensor? coefficient = null;
        if (MaxGradNorm is { } maxNorm)
        {
            var norms = _normOrder.Where(s => s.Norm is not null).Select(s => s.Norm!).ToList();
            if (norms.Count > 0)
            {
                var total = norms.Count == 1 ? norms[0] : stack(norms.Select(n => n.to(norms[0].dtype))).norm();
                LastGradNorm = total.to(ScalarType.Float64).item<double>();
                using var epsilon = 1e-6.ToScalar();
                using var max = maxNorm.ToScalar();
                using var one = 1.0.ToScalar();
                var denominator = total.add(epsilon);
                coefficient = full_like(denominator, max).div_(denominator).clamp_max_(one);
            }
            else LastGradNorm = 0;
        }

        foreach (var slot in _slots)
        {
            if (slot.Ready is { } ready)
            {
                if (coefficient is not null) ready.Projected?.mul_(coefficient);
                _engine.Finish([ready]);
            }
            else if (slot.Completed && !slot.Finished && slot.Held is { } held)
            {
                if (coefficient is not null) held.mul_(coefficient);
                _engine.Run([new ParameterStep(slot.State, slot.Parameter, held, _optimizer.OptionsOf(slot.State))]);
            }
        }
        _optimizer.PeakGradientBytes = _peak;
        ResetWindow();
        return loss;
    }

    /// <summary>Throws when a step is under way (some backward passes seen, <c>step()</c> not yet called).</summary>
    internal void ThrowIfInWindow(string what)
    {
        if (_passes > 0)
            throw new InvalidOperationException($"{what} between backward passes of a step ({_passes} of {AccumulationSteps} seen) in the per-layer mode: " +
                "call it after step(). Nothing was changed.");
    }

    private static bool HasGradient(ReleaseSlot slot)
    {
        using var g = slot.Parameter.grad;
        return g is not null;
    }

    /// <summary>
    /// Records the bytes of gradient tensors alive now: every <c>.grad</c> plus what the slots hold. The <c>.grad</c> of a
    /// slot in <paramref name="folding"/> that already holds its sum is not counted: it is added in place, as autograd adds
    /// a pass's gradient into an existing <c>.grad</c> (whose incoming buffer the standard path's count leaves out too).
    /// </summary>
    private void Measure(IReadOnlyCollection<ReleaseSlot> folding)
    {
        long bytes = 0;
        foreach (var slot in _slots)
        {
            bytes += slot.Bytes;
            if (slot.Held is not null && folding.Contains(slot)) continue;
            using var g = slot.Parameter.grad;
            bytes += ReleaseSlot.BytesOf(g);
        }
        _peak = Math.Max(_peak, bytes);
    }

    /// <summary>
    /// The identity of a parameter's tensor: TorchSharp's handle points to an at::Tensor, whose one field is the
    /// TensorImpl pointer; two Parameter objects of one tensor (a tied weight) have different handles and one TensorImpl.
    /// </summary>
    private static IntPtr TensorId(Tensor t) => System.Runtime.InteropServices.Marshal.ReadIntPtr(t.Handle);

    private void ResetWindow()
    {
        foreach (var slot in _slots) slot.Reset();
        _passes = 0;
        _forwardSinceTap = false;
    }

    private void RemoveHooks()
    {
        foreach (var remove in _removeHooks) remove();
        _removeHooks.Clear();
    }

    /// <summary>
    /// Removes the hooks and returns the optimizer to the standard path. Dispose it between steps: the gradients
    /// of a step under way (accumulated micro-batches) are discarded.
    /// </summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        RemoveHooks();
        ResetWindow();
        _optimizer.Detach(this);
    }
}
