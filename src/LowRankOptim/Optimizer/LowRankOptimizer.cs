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
/// around it) → after (the subspace's reaction, e.g. Online Subspace Descent's basis step). A gradient that is
/// not finite, or so large that its squares would overflow, takes no step: the parameter's weights and state are
/// left as they were and <see cref="UpdateSkipped"/> is raised. See docs/design.md.
/// Works with TorchSharp's LR schedulers, <c>step(closure)</c>, <c>zero_grad</c>, <c>state_dict</c> and
/// checkpoint files. Build it after moving the model to its device: state is keyed by parameter handle.
/// </summary>
public sealed partial class LowRankOptimizer : OptimizerHelper, IBetas
{
    /// <summary>The longest optimizer type name a checkpoint may start with, in bytes.</summary>
    private const int MaxTypeNameBytes = 256;

    private readonly List<LowRankParameterState> _states = [];
    private readonly StepEngine _engine;
    private LoadSession? _load;
    private DataParallel? _dataParallel;
    private bool _disposed;
    private GradientRelease? _release;

    /// <summary>Creates the optimizer over <paramref name="groups"/>; unset group options come from <paramref name="defaults"/>.</summary>
    /// <exception cref="ArgumentException">An option is invalid, a group is empty of options it needs, or a parameter appears twice.</exception>
    /// <param name="groups">The parameter groups; each group's unset options come from <paramref name="defaults"/>.</param>
    /// <param name="defaults">The options of every group that leaves them unset; a preset (e.g. <c>LowRankPresets.AdamW(lr: 1e-3)</c>) sets them all.</param>
    public LowRankOptimizer(IEnumerable<LowRankParamGroup> groups, LowRankOptions defaults)
    {
        ArgumentNullException.ThrowIfNull(groups);
        ArgumentNullException.ThrowIfNull(defaults);
        _engine = new StepEngine(ReportFailure, ReportSkip, Diagnostics);
        defaults.InitialLearningRate = defaults.LearningRate ?? 0;
        _defaults = defaults;
        _parameter_groups = new List<ParamGroup>();
        foreach (var group in groups) add_param_group(group);
    }

    /// <summary>Raised when a subspace refresh fails and the previous basis is kept. Never thrown from <c>step</c>.</summary>
    public event EventHandler<RefreshFailedEventArgs>? RefreshFailed;

    /// <summary>
    /// Raised when a parameter takes no step because its gradient is not finite or so large that its squares would
    /// overflow the working dtype; its weights and optimizer state are left unchanged. Never thrown from <c>step</c>.
    /// </summary>
    public event EventHandler<UpdateSkippedEventArgs>? UpdateSkipped;

    /// <summary>The per-parameter states, in the order of <c>state_dict()</c>.</summary>
    public IReadOnlyList<LowRankParameterState> States => _states;

    /// <summary>Exact bytes of all optimizer-state tensors (bases, moments, factors).</summary>
    public long StateBytes => _states.Sum(s => s.StateBytes);

    /// <summary>Refreshes that failed, over all parameters.</summary>
    public long RefreshFailures => _states.Sum(s => s.RefreshFailures);

    /// <summary>Steps skipped because of an unusable gradient, over all parameters.</summary>
    public long SkippedUpdates => _states.Sum(s => s.SkippedUpdates);

    /// <summary>
    /// Whether each parameter's step first screens its gradient and skips the step, leaving weights, moments and bases
    /// unchanged and raising <see cref="UpdateSkipped"/>, when the gradient is not finite or its squares could overflow
    /// the working dtype (true by default). The screen is one reduction over the gradient and one read-back per
    /// parameter and step; set false to trade that safety for speed (a refresh then checks finiteness itself, as before).
    /// </summary>
    public bool SkipUnusableGradients
    {
        get => _engine.ScreenGradients;
        set => _engine.ScreenGradients = value;
    }

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

    /// <summary>
    /// β1, β2 of the default rule; setting them sets every group's (OneCycleLR uses the groups'). Values outside
    /// [0, 1) are refused here, with the messages of construction, and nothing is changed.
    /// </summary>
    public (double, double) Betas
    {
        get => Defaults.Rule is IBetasRuleConfig b ? b.Betas : throw new NotSupportedException($"The rule {Defaults.Rule?.GetType().Name} has no betas.");
        set
        {
            var groups = _parameter_groups.Cast<LowRankParamGroup>().ToList();
            foreach (var g in groups) LowRankParamGroup.CheckBetas(g.Options, value);
            foreach (var g in groups) g.Betas = value;
            if (Defaults.Rule is IBetasRuleConfig b) Defaults.Rule = b.WithBetas(value.Item1, value.Item2);
        }
    }

    /// <summary>
    /// Adds a group; its unset options are filled from the defaults and every value is validated. Parameters must
    /// be real floating-point tensors (float16, bfloat16, float32, float64), each in one group only, once.
    /// </summary>
    /// <param name="param_group">A <see cref="LowRankParamGroup"/>.</param>
    public override void add_param_group(ParamGroup param_group)
    {
        ThrowIfDisposed();
        if (param_group is not LowRankParamGroup group)
            throw new ArgumentException($"LowRankOptimizer needs LowRankParamGroup groups, not {param_group?.GetType().Name ?? "null"}.", nameof(param_group));
        var index = _parameter_groups.Count;
        var where = $"parameter group {index}";
        group.Options ??= new LowRankOptions();
        var options = group.Options;
        if (options.Owner is not null && options.Owner != this)
            throw new ArgumentException($"{where}: its options object already belongs to another optimizer.", nameof(param_group));
        if (options.Owner == this)
            throw new ArgumentException(
                $"{where}: its options object already belongs to parameter group {options.GroupIndex} of this optimizer; give each group its own " +
                "LowRankOptions (every LowRankPresets call returns a new one).", nameof(param_group));
        options.FillFrom(Defaults);
        options.Validate(where);
        var parameters = group.Parameters.ToList();
        for (var i = 0; i < parameters.Count; i++) CheckParameter(parameters, i, where);
        options.EffectiveWeightRounding.CheckParameters(parameters.Select(p => p.dtype).ToList(), where);
        var created = new List<LowRankParameterState>();
        try
        {
            foreach (var p in parameters)
            {
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
        options.Seal(this, index);
        group.Parameters = parameters;
        _parameter_groups.Add(group);
        foreach (var s in created)
        {
            _state[s.Parameter.Handle] = s;
            _states.Add(s);
        }
        CheckGroup(index, created); // Reporting/LowRankOptimizer.Reporting.cs
    }

    /// <summary>The data-parallel execution of this optimizer (<see cref="Distribute"/>), or null in a single process. Never saved.</summary>
    public DataParallel? DataParallel => _dataParallel;

    /// <summary>
    /// Collective, once: from now on <c>step()</c> averages over the ranks of <paramref name="communicator"/> what each
    /// subspace declares (docs/distributed.md). Checks that every rank is configured alike
    /// (<see cref="DataParallelMismatchException"/> otherwise, on every rank), broadcasts rank 0's parameter values, and
    /// with <paramref name="shardState"/> keeps on this rank only the rule state of the parameters it owns (ZeRO stage 1).
    /// Call it on every rank after building (and loading) the same model and optimizer; an execution policy, never saved.
    /// </summary>
    /// <param name="communicator">The ranks.</param>
    /// <param name="shardState">Shard the update rules' state over the ranks.</param>
    /// <param name="chunkBytes">Gradient bytes per engine run (see <see cref="LowRankOptim.DataParallel.ChunkBytes"/>).</param>
    /// <returns>The data-parallel execution, also in <see cref="DataParallel"/>.</returns>
    /// <exception cref="InvalidOperationException">The optimizer is already distributed.</exception>
    public DataParallel Distribute(ICommunicator communicator, bool shardState = false, long chunkBytes = 256L << 20)
    {
        ArgumentNullException.ThrowIfNull(communicator);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkBytes, 1);
        if (_dataParallel is not null) throw new InvalidOperationException("the optimizer is already distributed.");
        var dataParallel = new DataParallel(this, communicator, shardState, chunkBytes);
        dataParallel.Start();
        _dataParallel = dataParallel;
        _engine.Communication = dataParallel;
        return dataParallel;
    }

    /// <summary>Refuses a null, complex, integer or duplicated parameter, naming it.</summary>
    private void CheckParameter(List<Parameter> parameters, int i, string where)
    {
        var p = parameters[i] ?? throw new ArgumentException($"{where}: parameter {i} is null.", "param_group");
        var what = $"{where}: parameter {i} (shape {StateReader.Format(p.shape)}, {p.dtype})";
        if (p.is_complex())
            throw new ArgumentException(
                $"{what} is complex: LowRankOptimizer trains real parameters only (its rules would drop the imaginary part). " +
                "Train a real view instead (torch.view_as_real), as a separate real parameter.", "param_group");
        if (p.dtype is not (ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float64))
            throw new ArgumentException($"{what} is not a floating-point tensor: LowRankOptimizer trains float16, bfloat16, float32 and float64 parameters.", "param_group");
        for (var j = 0; j < i; j++)
            if (parameters[j].Handle == p.Handle)
                throw new ArgumentException($"{what} appears twice in the group (as parameters {j} and {i}); list each parameter once.", "param_group");
        if (_state.TryGetValue(p.Handle, out var other))
            throw new ArgumentException(
                $"{what} appears in more than one group: it is already in parameter group {((LowRankParameterState)other).GroupIndex}.", "param_group");
    }

    /// <summary>
    /// Performs one optimization step; returns the closure's loss when a closure is given. Every group's options are
    /// checked first (a learning rate or beta set since the last step), so an invalid value throws before any parameter moves.
    /// </summary>
    /// <exception cref="ArgumentException">A group's option is invalid (the message of construction), or a gradient's shape or dtype differs from its parameter's.</exception>
    /// <exception cref="InvalidOperationException">The optimizer has no parameters (it was built from an empty parameter list).</exception>
    /// <exception cref="ObjectDisposedException">The optimizer was disposed.</exception>
    /// <param name="closure">Optional: re-evaluates the model and returns the loss.</param>
    public override Tensor step(Func<Tensor>? closure = null)
    {
        ThrowIfDisposed();
        if (_states.Count == 0)
            throw new InvalidOperationException(
                "LowRankOptimizer.step: the optimizer has no parameters (it was built from an empty parameter list, as torch.optim refuses to be): " +
                "there is nothing to train. Pass the model's parameters, or add a group with add_param_group.");
        foreach (LowRankParamGroup group in _parameter_groups) group.Options.CheckBeforeStep();
        if (_release is { } release) return release.Step(closure)!;
        if (_dataParallel is { } dataParallel) return DistributedStep(dataParallel, closure);
        long gradientBytes = 0;
        var loss = _step<LowRankParamGroup>(group =>
        {
            foreach (var p in group.Parameters)
            {
                // One scope and one engine run per parameter: temporaries never pile up across the model.
                using var scope = NewDisposeScope();
                if (p.grad is not { } grad || p.numel() == 0) continue;
                gradientBytes += grad.numel() * grad.element_size();
                _engine.Run([new ParameterStep((LowRankParameterState)_state[p.Handle], p, grad, group.Options)]);
            }
        }, closure!);
        PeakGradientBytes = gradientBytes;
        return loss;
    }

    /// <summary>Every parameter's step in one collective sequence (chunks of parameters share their all-reduces).</summary>
    private Tensor DistributedStep(DataParallel dataParallel, Func<Tensor>? closure)
    {
        var all = new List<(LowRankParameterState, Parameter, Tensor?, LowRankOptions)>();
        var groups = 0;
        return _step<LowRankParamGroup>(group =>
        {
            foreach (var p in group.Parameters) all.Add(((LowRankParameterState)_state[p.Handle], p, p.grad, group.Options));
            // The gradients are valid inside the base class's step only: run once the last group is collected.
            if (++groups == _parameter_groups.Count) dataParallel.Step(all, _engine);
        }, closure!);
    }

    /// <summary>
    /// Steps one parameter now with <paramref name="gradient"/> (its group's options, its own step counter), as
    /// <see cref="step"/> does for every parameter that has a gradient. For updates outside <c>step()</c>, such as
    /// during backward; the gradient is read, never stored or freed.
    /// </summary>
    /// <param name="parameter">A parameter of this optimizer.</param>
    /// <param name="gradient">Its gradient: same shape and dtype as the parameter.</param>
    /// <exception cref="ArgumentException">The parameter is not in this optimizer, the gradient's shape or dtype differs from it, or a group option is invalid.</exception>
    /// <exception cref="ObjectDisposedException">The optimizer was disposed.</exception>
    public void StepParameter(Parameter parameter, Tensor gradient)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(parameter);
        ArgumentNullException.ThrowIfNull(gradient);
        if (!_state.TryGetValue(parameter.Handle, out var state))
            throw new ArgumentException($"the parameter of shape {StateReader.Format(parameter.shape)} is not in this optimizer.", nameof(parameter));
        var s = (LowRankParameterState)state;
        var options = ((LowRankParamGroup)_parameter_groups[s.GroupIndex]).Options;
        options.CheckBeforeStep();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        if (parameter.numel() == 0)
        {
            StepEngine.CheckGradient(s, parameter, gradient);
            return;
        }
        _engine.Run([new ParameterStep(s, parameter, gradient, options)]);
    }

    private void ReportFailure(LowRankParameterState state, ISubspace subspace, long step, string reason)
    {
        state.RefreshFailures++;
        var firstLine = FirstLine(reason);
        RefreshFailed?.Invoke(this, new RefreshFailedEventArgs(state.Index, step, subspace.HasBasis, firstLine) { Details = reason });
    }

    private void ReportSkip(LowRankParameterState state, long step, string reason)
    {
        state.SkippedUpdates++;
        UpdateSkipped?.Invoke(this, new UpdateSkippedEventArgs(state.Index, step, reason));
    }

    /// <summary>The first line of a message (libtorch's errors append multi-kilobyte native stack traces).</summary>
    internal static string FirstLine(string text)
    {
        var end = text.IndexOfAny(['\r', '\n']);
        return (end < 0 ? text : text[..end]).TrimEnd();
    }

    /// <summary>Sets every gradient to null (PyTorch's default <c>set_to_none=True</c>), releasing its memory.</summary>
    public override void zero_grad()
    {
        ThrowIfDisposed();
        _release?.ThrowIfInWindow("zero_grad()");
        foreach (var group in _parameter_groups)
            foreach (var p in group.Parameters)
                p.grad = null;
    }

    /// <summary>
    /// Saves the state to <paramref name="location"/> atomically: the file is written under a temporary name in the
    /// same folder, flushed to disk, then renamed over <paramref name="location"/>, so a crash or error mid-save never
    /// leaves a partial checkpoint under the real name (an existing file stays as it was). Every entry of the file
    /// carries a CRC-32 (checkpoint format 2).
    /// </summary>
    /// <exception cref="ObjectDisposedException">The optimizer was disposed.</exception>
    /// <param name="location">The file.</param>
    public new void save_state_dict(string location)
    {
        ThrowIfDisposed();
        ArgumentException.ThrowIfNullOrEmpty(location);
        var target = Path.GetFullPath(location);
        var folder = Path.GetDirectoryName(target) ?? ".";
        var temporary = Path.Combine(folder, $".{Path.GetFileName(target)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true)) save_state_dict(writer);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, target, overwrite: true);
        }
        catch
        {
            try { File.Delete(temporary); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>
    /// Loads a file written by <c>save_state_dict</c>. Nothing changes unless the whole file is read and
    /// matches this optimizer (type, group count, parameter shapes, method configuration), every entry passes its
    /// checksum and its checks (counts ≥ 0, finite values, second moments ≥ 0, indices in range), and the file ends
    /// after the last parameter's state. Hyperparameters (lr, weight_decay, betas, eps, …) are restored from the file.
    /// </summary>
    /// <exception cref="InvalidDataException">The file does not match this optimizer or is corrupted; the message names the group or parameter and the entry.</exception>
    /// <param name="location">The file.</param>
    public new void load_state_dict(string location)
    {
        ThrowIfDisposed();
        using var stream = File.OpenRead(location);
        using var reader = new BinaryReader(stream);
        Load(reader, () =>
        {
            if (stream.Position != stream.Length)
                throw new InvalidDataException(
                    $"{location}: {stream.Length - stream.Position} bytes follow the last parameter's state; the file is corrupted or not a checkpoint of this optimizer.");
        });
    }

    /// <summary>Loads a stream written by <c>save_state_dict</c>; atomic as <see cref="load_state_dict(string)"/> (bytes after the state are left unread).</summary>
    /// <param name="reader">The stream, positioned at the start of the saved state.</param>
    public new void load_state_dict(BinaryReader reader)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(reader);
        Load(reader, null);
    }

    private void Load(BinaryReader reader, Action? beforeCommit)
    {
        string name;
        long groups, states;
        try
        {
            name = ReadTypeName(reader);
            if (name != GetType().Name)
                throw new InvalidDataException($"The state was saved by optimizer type '{name}'; this is a '{GetType().Name}', and only its own state can be loaded.");
            groups = ReadLeb128(reader);
            states = ReadLeb128(reader);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException("The stream ended inside the checkpoint's header (optimizer type, group and parameter counts).", e);
        }
        CheckCounts(groups, states);
        LoadBody(reader, beforeCommit);
    }

    /// <summary>Loads another <see cref="LowRankOptimizer"/>'s <c>state_dict()</c>; atomic, and copies (never shares) tensors.</summary>
    /// <param name="state_dict">The other optimizer's <c>state_dict()</c>.</param>
    public override void load_state_dict(StateDictionary state_dict)
    {
        ThrowIfDisposed();
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
        LoadBody(reader, null);
    }

    /// <summary>The optimizer's type name that starts a checkpoint (BinaryWriter's string), at most <see cref="MaxTypeNameBytes"/> bytes.</summary>
    private static string ReadTypeName(BinaryReader reader)
    {
        int length;
        try
        {
            length = reader.Read7BitEncodedInt();
        }
        catch (FormatException e)
        {
            throw new InvalidDataException("The checkpoint does not start with an optimizer type name.", e);
        }
        if (length < 0 || length > MaxTypeNameBytes)
            throw new InvalidDataException($"The checkpoint starts with a type name of {length} bytes (at most {MaxTypeNameBytes}): it is not an optimizer checkpoint, or it is corrupted.");
        var bytes = reader.ReadBytes(length);
        if (bytes.Length != length) throw new EndOfStreamException();
        return System.Text.Encoding.UTF8.GetString(bytes);
    }

    /// <summary>The unsigned LEB128 counts TorchSharp's save_state_dict writes after the type name (at most 9 bytes each).</summary>
    private static long ReadLeb128(BinaryReader reader)
    {
        long value = 0;
        for (var shift = 0; shift < 63; shift += 7)
        {
            long b = reader.ReadByte();
            value |= (b & 0x7f) << shift;
            if ((b & 0x80) == 0) return value;
        }
        throw new InvalidDataException("A group or parameter count in the checkpoint's header is longer than 9 bytes: the file is corrupted.");
    }

    private void CheckCounts(long groups, long states)
    {
        if (groups != _parameter_groups.Count)
            throw new InvalidDataException($"The saved state has {groups} parameter groups; this optimizer has {_parameter_groups.Count}. The counts must be equal.");
        if (states != _states.Count)
            throw new InvalidDataException($"The saved state has {states} parameter states; this optimizer has {_states.Count} parameters. The counts must be equal.");
    }

    /// <summary>Reads every group's options and every parameter's state into a deferred load session, then (after <paramref name="beforeCommit"/>) applies it.</summary>
    private void LoadBody(BinaryReader reader, Action? beforeCommit)
    {
        _release?.ThrowIfInWindow("load_state_dict");
        _load?.Dispose();
        _load = new LoadSession(_parameter_groups.Count, _states.Count, deferred: true);
        try
        {
            foreach (var group in _parameter_groups) group.Options.LoadStateDict(reader);
            foreach (var state in _states) state.LoadStateDict(reader);
            if (_load is not { Complete: true } load)
                throw new InvalidOperationException("the load session ended before every group and parameter was read.");
            beforeCommit?.Invoke();
            Commit(load);
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
    /// same pieces in the same order, so it is atomic too). The saved method configuration must be structurally
    /// equal to the group's (see <see cref="LowRankOptions"/>); hyperparameters are taken from the file.
    /// </summary>
    internal void StageOptions(int groupIndex, LowRankOptions staged)
    {
        _release?.ThrowIfInWindow("load_state_dict");
        var current = ((LowRankParamGroup)_parameter_groups[groupIndex]).Options;
        staged.KeepExecutionPolicyOf(current);
        try
        {
            staged.Validate($"saved parameter group {groupIndex}");
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"parameter group {groupIndex} options: entry '{e.ParamName}' holds an invalid value: {e.Message}", e);
        }
        if (current.StructuralMismatch(staged, groupIndex) is { } mismatch) throw new InvalidDataException(mismatch);
        if (_load is null || (groupIndex == 0 && _load.Started))
        {
            _load?.Dispose();
            _load = new LoadSession(_parameter_groups.Count, _states.Count, deferred: false);
        }
        _load.Started = true;
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
        if (!load.Complete || load.Deferred) return;
        Commit(load);
    }

    private void Commit(LoadSession load)
    {
        for (var i = 0; i < load.Options.Length; i++)
            ((LowRankParamGroup)_parameter_groups[i]).Options.CopyFrom(load.Options[i]!);
        for (var i = 0; i < load.States.Length; i++)
            _states[i].Apply(load.States[i]!);
        _load = null; // the staged components now belong to the states
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (_disposed) return;
        _disposed = true;
        base.Dispose(disposing);
        if (!disposing) return;
        _release?.Dispose();
        _load?.Dispose();
        _load = null;
        foreach (var s in _states) s.Dispose();
    }

    private sealed class LoadSession(int groups, int states, bool deferred) : IDisposable
    {
        public LowRankOptions?[] Options { get; } = new LowRankOptions?[groups];
        public LowRankParameterState.StagedState?[] States { get; } = new LowRankParameterState.StagedState?[states];

        /// <summary>Applied by the caller (this class's own load paths) rather than when the last piece arrives.</summary>
        public bool Deferred { get; } = deferred;

        /// <summary>True once group 0's options were staged.</summary>
        public bool Started { get; set; }

        public bool Complete => Options.All(o => o is not null) && States.All(s => s is not null);

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
/// <param name="Reason">Why it failed, in one line (the first line of libtorch's message).</param>
public sealed record RefreshFailedEventArgs(int ParameterIndex, long Step, bool KeptPreviousBasis, string Reason)
{
    /// <summary>The full text of the failure (libtorch's message with its native stack trace, when it came from libtorch).</summary>
    public string Details { get; init; } = Reason;
}

/// <summary>Reports a parameter that took no step because its gradient was unusable; its weights and state are unchanged.</summary>
/// <param name="ParameterIndex">The parameter's index in the optimizer.</param>
/// <param name="Step">The 1-based step that was skipped (the parameter's step counter did not advance).</param>
/// <param name="Reason">Why: non-finite entries, or a magnitude whose square would overflow the working dtype.</param>
public sealed record UpdateSkippedEventArgs(int ParameterIndex, long Step, string Reason);
