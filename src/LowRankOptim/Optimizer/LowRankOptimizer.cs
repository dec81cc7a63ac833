using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.optim;

namespace LowRankOptim;

/// <summary>
/// The one optimizer of LowRankOptim: a drop-in for <c>torch.optim.AdamW</c> whose param groups choose a
/// projection (an <see cref="IProjectionConfig"/>: GaLore's SVD subspaces, DCT columns, Online Subspace Descent,
/// APOLLO's random projection, or none) and an update rule (an <see cref="IUpdateRuleConfig"/>: Adam,
/// Adafactor, SGD, SMMF). Each parameter's step runs the phases of the step engine: prepare (working dtype,
/// L2 decay) → refresh (a failed refresh keeps the old basis and raises <see cref="RefreshFailed"/>) → project →
/// communicate → update (the rule) → apply (back-projection or the subspace's own update, decoupled decay
/// around it) → after (the subspace's reaction, e.g. Online Subspace Descent's basis step). See docs/design.md.
/// Works with TorchSharp's LR schedulers, <c>step(closure)</c>, <c>zero_grad</c>, <c>state_dict</c> and
/// checkpoint files. Build it after moving the model to its device: state is keyed by parameter handle.
/// </summary>
public sealed class LowRankOptimizer : OptimizerHelper, IBetas
{
    private readonly List<LowRankParameterState> _states = [];
    private readonly StepEngine _engine;
    private LoadSession? _load;
    private GradientRelease? _release;

    /// <summary>Creates the optimizer over <paramref name="groups"/>; unset group options come from <paramref name="defaults"/>.</summary>
    /// <exception cref="ArgumentException">An option is invalid, a group is empty of options it needs, or a parameter appears twice.</exception>
    public LowRankOptimizer(IEnumerable<LowRankParamGroup> groups, LowRankOptions defaults)
    {
        ArgumentNullException.ThrowIfNull(groups);
        ArgumentNullException.ThrowIfNull(defaults);
        _engine = new StepEngine(ReportFailure);
        defaults.InitialLearningRate = defaults.LearningRate ?? 0;
        _defaults = defaults;
        _parameter_groups = new List<ParamGroup>();
        foreach (var group in groups) add_param_group(group);
    }

    /// <summary>Raised when a subspace refresh fails and the previous basis is kept. Never thrown from <c>step</c>.</summary>
    public event EventHandler<RefreshFailedEventArgs>? RefreshFailed;

    /// <summary>The per-parameter states, in the order of <c>state_dict()</c>.</summary>
    public IReadOnlyList<LowRankParameterState> States => _states;

    /// <summary>Exact bytes of all optimizer-state tensors (bases, moments, factors).</summary>
    public long StateBytes => _states.Sum(s => s.StateBytes);

    /// <summary>Refreshes that failed, over all parameters.</summary>
    public long RefreshFailures => _states.Sum(s => s.RefreshFailures);

    /// <summary>
    /// Bytes of the gradient tensors alive at the peak of the last <c>step()</c>: in the standard path every
    /// <c>.grad</c> at <c>step()</c>; in the per-layer mode (<see cref="ReleaseGradientsDuringBackward"/>) the largest
    /// sum, over the moments gradients are taken during backward and <c>step()</c>, of every <c>.grad</c> and what the
    /// mode holds (accumulated gradients, projected gradients waiting for <c>step()</c>). 0 before the first step.
    /// </summary>
    public long PeakGradientBytes { get; internal set; }

    /// <summary>
    /// Starts the per-layer mode over <paramref name="model"/>: each parameter's gradient is taken as soon as backward
    /// has finished it, projected (or applied) and released, instead of waiting in <c>.grad</c> for <c>step()</c>.
    /// The loop stays the standard one: <c>loss.backward()</c> <paramref name="accumulation_steps"/> times, then
    /// <c>step()</c> (and no <c>clip_grad_norm_</c>: pass <paramref name="max_grad_norm"/>). The results equal the
    /// standard path's up to float rounding (docs/per-layer.md). Dispose the result to return to the standard path.
    /// </summary>
    /// <param name="model">The model whose backward passes are observed; every trainable parameter must be in this optimizer.</param>
    /// <param name="accumulation_steps">k ≥ 1: backward passes (micro-batches) per step; their gradients are summed.</param>
    /// <param name="max_grad_norm">Clip the global 2-norm of the step's gradient to this value, as <c>clip_grad_norm_</c>; null for none.</param>
    /// <exception cref="ArgumentException">A trainable parameter of the model is not in this optimizer, or the model has no module the mode can observe.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="accumulation_steps"/> &lt; 1, or <paramref name="max_grad_norm"/> is not a finite number &gt; 0.</exception>
    /// <exception cref="InvalidOperationException">A per-layer mode is already active on this optimizer.</exception>
    public GradientRelease ReleaseGradientsDuringBackward(nn.Module model, int accumulation_steps = 1, double? max_grad_norm = null)
    {
        if (_release is not null)
            throw new InvalidOperationException("The per-layer mode is already active on this optimizer; dispose its GradientRelease first.");
        return _release = new GradientRelease(this, _engine, model, accumulation_steps, max_grad_norm);
    }

    internal bool Owns(Parameter parameter) => _state.ContainsKey(parameter.Handle);

    internal LowRankOptions OptionsOf(LowRankParameterState state) => ((LowRankParamGroup)_parameter_groups[state.GroupIndex]).Options;

    internal void Detach(GradientRelease release)
    {
        if (ReferenceEquals(_release, release)) _release = null;
    }

    /// <summary>The default options of groups added later.</summary>
    public LowRankOptions Defaults => (LowRankOptions)_defaults;

    /// <summary>β1, β2 of the default rule; setting them sets every group's (OneCycleLR uses the groups').</summary>
    public (double, double) Betas
    {
        get => Defaults.Rule is IBetasRuleConfig b ? b.Betas : throw new NotSupportedException($"The rule {Defaults.Rule?.GetType().Name} has no betas.");
        set
        {
            foreach (LowRankParamGroup g in _parameter_groups) g.Betas = value;
            if (Defaults.Rule is IBetasRuleConfig b) Defaults.Rule = b.WithBetas(value.Item1, value.Item2);
        }
    }

    /// <summary>Adds a group; its unset options are filled from the defaults and every value is validated.</summary>
    public override void add_param_group(ParamGroup param_group)
    {
        if (param_group is not LowRankParamGroup group)
            throw new ArgumentException($"LowRankOptimizer needs LowRankParamGroup groups, not {param_group?.GetType().Name ?? "null"}.", nameof(param_group));
        var index = _parameter_groups.Count;
        var where = $"parameter group {index}";
        group.Options ??= new LowRankOptions();
        var options = group.Options;
        if (options.Owner is not null && options.Owner != this)
            throw new ArgumentException($"{where}: its options object already belongs to another optimizer.", nameof(param_group));
        options.FillFrom(Defaults);
        options.Validate(where);
        var parameters = group.Parameters.ToList();
        var created = new List<LowRankParameterState>();
        try
        {
            foreach (var p in parameters)
            {
                if (_state.ContainsKey(p.Handle) || created.Any(s => s.Parameter.Handle == p.Handle))
                    throw new ArgumentException($"{where}: parameter of shape {StateReader.Format(p.shape)} appears in more than one group.", nameof(param_group));
                var state = new LowRankParameterState(p, _states.Count + created.Count, index, this);
                created.Add(state);
                state.Initialize(options);
            }
        }
        catch
        {
            foreach (var s in created) s.Dispose();
            throw;
        }
        options.Owner = this;
        options.GroupIndex = index;
        group.Parameters = parameters;
        _parameter_groups.Add(group);
        foreach (var s in created)
        {
            _state[s.Parameter.Handle] = s;
            _states.Add(s);
        }
    }

    /// <summary>
    /// Performs one optimization step; returns the closure's loss when a closure is given. In the per-layer mode it
    /// completes the step whose updates began during the last backward pass (and throws, changing nothing, before
    /// the step's last backward pass).
    /// </summary>
    public override Tensor step(Func<Tensor>? closure = null)
    {
        if (_release is { } release) return release.Step(closure)!;
        long gradientBytes = 0;
        var loss = _step<LowRankParamGroup>(group =>
        {
            foreach (var p in group.Parameters)
            {
                // One scope and one engine run per parameter: temporaries never pile up across the model.
                using var scope = NewDisposeScope();
                if (p.grad is not { } grad) continue;
                gradientBytes += grad.numel() * grad.element_size();
                _engine.Run([new ParameterStep((LowRankParameterState)_state[p.Handle], p, grad, group.Options)]);
            }
        }, closure!);
        PeakGradientBytes = gradientBytes;
        return loss;
    }

    /// <summary>
    /// Steps one parameter now with <paramref name="gradient"/> (its group's options, its own step counter), as
    /// <see cref="step"/> does for every parameter that has a gradient. For updates outside <c>step()</c>, such as
    /// during backward; the gradient is read, never stored or freed.
    /// </summary>
    /// <param name="parameter">A parameter of this optimizer.</param>
    /// <param name="gradient">Its gradient: same shape and dtype as the parameter.</param>
    /// <exception cref="ArgumentException">The parameter is not in this optimizer, or the gradient's shape or dtype differs from it.</exception>
    public void StepParameter(Parameter parameter, Tensor gradient)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        ArgumentNullException.ThrowIfNull(gradient);
        if (!_state.TryGetValue(parameter.Handle, out var state))
            throw new ArgumentException($"the parameter of shape {StateReader.Format(parameter.shape)} is not in this optimizer.", nameof(parameter));
        var s = (LowRankParameterState)state;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        _engine.Run([new ParameterStep(s, parameter, gradient, ((LowRankParamGroup)_parameter_groups[s.GroupIndex]).Options)]);
    }

    private void ReportFailure(LowRankParameterState state, ISubspace subspace, long step, string reason)
    {
        state.RefreshFailures++;
        RefreshFailed?.Invoke(this, new RefreshFailedEventArgs(state.Index, step, subspace.HasBasis, reason));
    }

    /// <summary>Sets every gradient to null (PyTorch's default <c>set_to_none=True</c>), releasing its memory.</summary>
    public override void zero_grad()
    {
        _release?.ThrowIfInWindow("zero_grad()");
        foreach (var group in _parameter_groups)
            foreach (var p in group.Parameters)
                p.grad = null;
    }

    /// <summary>
    /// Loads a file written by <c>save_state_dict</c>. Nothing changes unless the whole file is read and
    /// matches this optimizer (type, group count, parameter shapes, configuration).
    /// </summary>
    public new void load_state_dict(string location)
    {
        using var stream = File.OpenRead(location);
        using var reader = new BinaryReader(stream);
        load_state_dict(reader);
    }

    /// <summary>Loads a stream written by <c>save_state_dict</c>; atomic as <see cref="load_state_dict(string)"/>.</summary>
    public new void load_state_dict(BinaryReader reader)
    {
        var name = reader.ReadString();
        if (name != GetType().Name)
            throw new InvalidDataException($"The state was saved by optimizer type '{name}'; this is a '{GetType().Name}', and only its own state can be loaded.");
        var groups = ReadLeb128(reader);
        var states = ReadLeb128(reader);
        CheckCounts(groups, states);
        LoadBody(reader);
    }

    /// <summary>Loads another <see cref="LowRankOptimizer"/>'s <c>state_dict()</c>; atomic, and copies (never shares) tensors.</summary>
    public override void load_state_dict(StateDictionary state_dict)
    {
        ArgumentNullException.ThrowIfNull(state_dict);
        CheckCounts(state_dict.Options.Count, state_dict.State.Count);
        for (var i = 0; i < state_dict.Options.Count; i++)
            if (state_dict.Options[i] is not LowRankOptions)
                throw new ArgumentException($"state_dict.Options[{i}] is a {state_dict.Options[i]?.GetType().FullName ?? "null"}; LowRankOptimizer can only load LowRankOptions.", nameof(state_dict));
        for (var i = 0; i < state_dict.State.Count; i++)
            if (state_dict.State[i] is not LowRankParameterState)
                throw new ArgumentException($"state_dict.State[{i}] is a {state_dict.State[i]?.GetType().FullName ?? "null"}; LowRankOptimizer can only load LowRankParameterState.", nameof(state_dict));
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            foreach (var o in state_dict.Options) o.SaveStateDict(writer);
            foreach (var s in state_dict.State) s.SaveStateDict(writer);
        }
        stream.Position = 0;
        using var reader = new BinaryReader(stream);
        LoadBody(reader);
    }

    /// <summary>The unsigned LEB128 counts TorchSharp's save_state_dict writes after the type name.</summary>
    private static long ReadLeb128(BinaryReader reader)
    {
        long value = 0;
        for (var shift = 0; ; shift += 7)
        {
            long b = reader.ReadByte();
            value |= (b & 0x7f) << shift;
            if ((b & 0x80) == 0) return value;
        }
    }

    private void CheckCounts(long groups, long states)
    {
        if (groups != _parameter_groups.Count)
            throw new InvalidDataException($"The saved state has {groups} parameter groups; this optimizer has {_parameter_groups.Count}. The counts must be equal.");
        if (states != _states.Count)
            throw new InvalidDataException($"The saved state has {states} parameter states; this optimizer has {_states.Count} parameters. The counts must be equal.");
    }

    private void LoadBody(BinaryReader reader)
    {
        _release?.ThrowIfInWindow("load_state_dict");
        _load?.Dispose();
        _load = null;
        try
        {
            foreach (var group in _parameter_groups) group.Options.LoadStateDict(reader);
            foreach (var state in _states) state.LoadStateDict(reader);
        }
        catch
        {
            _load?.Dispose();
            _load = null;
            throw;
        }
    }

    /// <summary>
    /// Called by a group's options as it is read. The options of group 0 start a load; options and states
    /// are staged and applied together once the last piece is in (the base class's load path reads the
    /// same pieces in the same order, so it is atomic too).
    /// </summary>
    internal void StageOptions(int groupIndex, LowRankOptions staged)
    {
        _release?.ThrowIfInWindow("load_state_dict");
        staged.KeepExecutionPolicyOf(((LowRankParamGroup)_parameter_groups[groupIndex]).Options);
        staged.Validate($"saved parameter group {groupIndex}");
        if (groupIndex == 0 || _load is null)
        {
            _load?.Dispose();
            _load = new LoadSession(_parameter_groups.Count, _states.Count);
        }
        _load.Options[groupIndex] = staged;
        TryCommit();
    }

    internal LowRankOptions OptionsForLoading(int groupIndex)
    {
        _release?.ThrowIfInWindow("load_state_dict");
        return _load?.Options[groupIndex] ?? ((LowRankParamGroup)_parameter_groups[groupIndex]).Options;
    }

    internal void StageState(int index, LowRankParameterState.StagedState staged)
    {
        if (_load is null)
        {
            _states[index].Apply(staged);
            return;
        }
        _load.States[index]?.Dispose();
        _load.States[index] = staged;
        TryCommit();
    }

    private void TryCommit()
    {
        var load = _load!;
        if (load.Options.Any(o => o is null) || load.States.Any(s => s is null)) return;
        for (var i = 0; i < load.Options.Length; i++)
            ((LowRankParamGroup)_parameter_groups[i]).Options.CopyFrom(load.Options[i]!);
        for (var i = 0; i < load.States.Length; i++)
            _states[i].Apply(load.States[i]!);
        _load = null; // the staged components now belong to the states
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (!disposing) return;
        _release?.Dispose();
        _load?.Dispose();
        _load = null;
        foreach (var s in _states) s.Dispose();
    }

    private sealed class LoadSession(int groups, int states) : IDisposable
    {
        public LowRankOptions?[] Options { get; } = new LowRankOptions?[groups];
        public LowRankParameterState.StagedState?[] States { get; } = new LowRankParameterState.StagedState?[states];

        public void Dispose()
        {
            foreach (var s in States) s?.Dispose();
        }
    }
}

/// <summary>Reports a subspace refresh that failed; the previous basis (if any) is kept.</summary>
/// <param name="ParameterIndex">The parameter's index in the optimizer.</param>
/// <param name="Step">The 1-based step of the failed refresh.</param>
/// <param name="KeptPreviousBasis">False when there was no basis yet, so the parameter's update was skipped.</param>
/// <param name="Reason">Why it failed.</param>
public sealed record RefreshFailedEventArgs(int ParameterIndex, long Step, bool KeptPreviousBasis, string Reason);
