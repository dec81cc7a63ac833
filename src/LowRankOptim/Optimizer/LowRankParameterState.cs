using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The optimizer state of one parameter: its step count, its subspace (null in the full space) and its
/// rule's moments. Saved as named entries, so a load reports exactly what does not match.
/// </summary>
public sealed class LowRankParameterState : OptimizerState, IDisposable
{
    private const int FormatVersion = 2;
    private readonly LowRankOptimizer? _owner;

    internal LowRankParameterState(Parameter parameter, int index, int groupIndex, LowRankOptimizer? owner) : base(parameter)
    {
        Index = index;
        GroupIndex = groupIndex;
        _owner = owner;
        Shape = parameter.shape;
    }

    /// <summary>The parameter's position in the optimizer (over all groups, in order).</summary>
    public int Index { get; }
    /// <summary>The index of the parameter's group.</summary>
    public int GroupIndex { get; }
    /// <summary>The parameter's shape.</summary>
    public long[] Shape { get; }
    /// <summary>Steps taken (k of the last update; 0 before the first).</summary>
    public long Step { get; internal set; }
    /// <summary>Refreshes that produced a new basis.</summary>
    public long Refreshes { get; internal set; }
    /// <summary>Refreshes that failed and kept the previous basis (non-finite gradient, SVD failure).</summary>
    public long RefreshFailures { get; internal set; }
    /// <summary>Steps skipped because the rule's input was not finite or could overflow (weights and state left unchanged).</summary>
    public long SkippedUpdates { get; internal set; }
    /// <summary>The matrix view the subspace was built for (null in the full space).</summary>
    internal MatrixShape? View { get; private set; }
    /// <summary>The subspace, or null when the parameter is trained in the full space.</summary>
    public ISubspace? Subspace { get; private set; }
    /// <summary>The update rule's state.</summary>
    public IUpdateRule Rule { get; private set; } = null!;
    /// <summary>Exact bytes of every tensor this parameter's state holds.</summary>
    public long StateBytes => (Subspace?.StateBytes ?? 0) + Rule.StateBytes;

    /// <summary>The parameter this state belongs to.</summary>
    public Parameter Parameter => _parameter;

    /// <summary>The kernel choice of the stochastically rounded weight update (<see cref="RoundedWeightUpdate"/>), cached per parameter.</summary>
    internal Kernels.KernelChoice<Kernels.IWeightUpdateKernel> WeightKernels => _weightKernels ??= new($"the bfloat16 parameter {Index} of shape {StateReader.Format(Shape)}");
    private Kernels.KernelChoice<Kernels.IWeightUpdateKernel>? _weightKernels;

    internal string Describe() => $"parameter {Index} (shape {StateReader.Format(Shape)}, group {GroupIndex})";

    /// <summary>
    /// Ends a step for the compressed state (<see cref="MomentStorage"/>): stores the workspaces of a step that changed the
    /// state, or drops them, unchanged, for a skipped one.
    /// </summary>
    internal void EndStep(long step, bool changed)
    {
        if (changed)
        {
            Subspace?.State.Commit(step);
            Rule.State.Commit(step);
        }
        else
        {
            Subspace?.State.Discard();
            Rule.State.Discard();
        }
    }

    /// <summary>Creates fresh components for <paramref name="options"/> (disposing any previous ones).</summary>
    /// <param name="options">The group's (complete) <see cref="LowRankOptions"/>.</param>
    public override void Initialize(OptimizerOptions options)
    {
        var (subspace, rule) = CreateComponents((LowRankOptions)options);
        Replace(0, 0, 0, 0, subspace, rule);
    }

    /// <summary>
    /// The matrix view a <paramref name="projection"/> gives a parameter of <paramref name="shape"/>, or null when it is
    /// trained in the full space: the projection applies no view, or the parameter is empty (it never changes, as in torch).
    /// </summary>
    internal static MatrixShape? ProjectedView(IProjectionConfig projection, long[] shape) =>
        projection.MatrixViewOf(shape) is MatrixShape m && m.Rows > 0 && m.Cols > 0 ? m : null;

    private (ISubspace? Subspace, IUpdateRule Rule) CreateComponents(LowRankOptions options)
    {
        var dtype = options.Rule!.WorkingType(_parameter.dtype);
        var device = _parameter.device;
        var matrix = ProjectedView(options.Projection!, Shape);
        using var storage = MomentStorageScope.Use(options.EffectiveMomentStorage);
        var subspace = matrix is MatrixShape m ? options.Projection!.Create(m, dtype, device) : null;
        View = matrix;
        try
        {
            var rule = options.Rule.Create(subspace?.ProjectedShape ?? Shape, dtype, device);
            // Each state tensor of each parameter draws its own stochastic-rounding numbers.
            subspace?.State.AssignStreams(2 * (ulong)Index + 1);
            rule.State.AssignStreams(2 * (ulong)Index + 2);
            return (subspace, rule);
        }
        catch
        {
            subspace?.Dispose();
            throw;
        }
    }

    private void Replace(long step, long refreshes, long failures, long skipped, ISubspace? subspace, IUpdateRule rule)
    {
        Subspace?.Dispose();
        Rule?.Dispose();
        (Step, Refreshes, RefreshFailures, SkippedUpdates, Subspace, Rule) = (step, refreshes, failures, skipped, subspace, rule);
    }

    /// <inheritdoc />
    public override void SaveStateDict(BinaryWriter writer)
    {
        var w = new StateWriter(writer, checksums: true);
        w.Long("state_version", FormatVersion);
        w.String("shape", StateReader.Format(Shape));
        w.Long("step", Step);
        w.Long("refreshes", Refreshes);
        w.Long("refresh_failures", RefreshFailures);
        w.Long("skipped_updates", SkippedUpdates);
        w.Bool("has_subspace", Subspace is not null);
        Subspace?.Save(w);
        Rule.Save(w);
    }

    /// <summary>
    /// Reads this parameter's saved state into new components. Inside an optimizer load the result is
    /// staged and applied only once everything has been read and checked.
    /// </summary>
    /// <param name="reader">The stream, positioned at this parameter's state.</param>
    public override void LoadStateDict(BinaryReader reader)
    {
        var options = _owner?.OptionsForLoading(GroupIndex) ?? throw new InvalidOperationException("the state belongs to no optimizer");
        var staged = Read(reader, options);
        _owner.StageState(Index, staged);
    }

    /// <summary>Copies another state of the same parameter shape and configuration.</summary>
    /// <param name="source">The state to copy.</param>
    public override void LoadStateDict(OptimizerState source)
    {
        if (source is not LowRankParameterState other)
            throw new ArgumentException($"{Describe()}: cannot load a {source?.GetType().Name ?? "null"} state into LowRankParameterState.", nameof(source));
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true)) other.SaveStateDict(writer);
        stream.Position = 0;
        using var reader = new BinaryReader(stream);
        var options = _owner?.OptionsForLoading(GroupIndex) ?? throw new InvalidOperationException("the state belongs to no optimizer");
        Apply(Read(reader, options));
    }

    internal StagedState Read(BinaryReader reader, LowRankOptions options)
    {
        var r = new StateReader(reader, Describe());
        var version = r.FormatVersion("state_version");
        var shape = r.String("shape");
        if (shape != StateReader.Format(Shape))
            throw new InvalidDataException($"{Describe()}: the saved state is for a parameter of shape {shape}; the shapes must be equal.");
        var step = r.Count("step");
        var refreshes = r.Count("refreshes");
        var failures = r.Count("refresh_failures");
        var skipped = version >= 2 ? r.Count("skipped_updates") : 0;
        var hasSubspace = r.Bool("has_subspace");
        var (subspace, rule) = CreateComponents(options);
        var staged = new StagedState(step, refreshes, failures, skipped, subspace, rule);
        try
        {
            if (hasSubspace != (subspace is not null))
                throw new InvalidDataException(hasSubspace
                    ? $"{Describe()}: the saved state has a subspace but the group's projection ({options.Projection}) trains this parameter in the full space."
                    : $"{Describe()}: the saved state has no subspace but the group's projection ({options.Projection}) projects this parameter.");
            subspace?.Load(r);
            rule.Load(r);
            return staged;
        }
        catch
        {
            staged.Dispose();
            throw;
        }
    }

    internal void Apply(StagedState staged) =>
        Replace(staged.Step, staged.Refreshes, staged.RefreshFailures, staged.SkippedUpdates, staged.Subspace, staged.Rule);

    /// <summary>True when both states hold exactly the same saved values.</summary>
    /// <param name="other">The state to compare with.</param>
    public override bool ApproximatelyEquals(OptimizerState other)
    {
        if (other is not LowRankParameterState o) return false;
        return Serialized(this).AsSpan().SequenceEqual(Serialized(o));
    }

    private static byte[] Serialized(LowRankParameterState s)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream)) s.SaveStateDict(writer);
        return stream.ToArray();
    }

    /// <inheritdoc />
    public override void to(Device device)
    {
        Subspace?.MoveTo(device);
        Rule.MoveTo(device);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Subspace?.Dispose();
        Rule?.Dispose();
    }

    /// <summary>A state read from a stream, not yet applied.</summary>
    internal sealed record StagedState(long Step, long Refreshes, long RefreshFailures, long SkippedUpdates, ISubspace? Subspace, IUpdateRule Rule) : IDisposable
    {
        public void Dispose()
        {
            Subspace?.Dispose();
            Rule.Dispose();
        }
    }
}
