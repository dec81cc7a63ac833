using System.Security.Cryptography;
using System.Text;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// Data-parallel training of one <see cref="LowRankOptimizer"/> over the ranks of an <see cref="ICommunicator"/>
/// (<see cref="LowRankOptimizer.Distribute"/> creates it; docs/distributed.md). Every rank runs the same model on
/// its share of the global batch; the optimizer's communicate phase then averages (sum / <see cref="Size"/>) over
/// ranks exactly what each subspace declares (<see cref="ISubspace.Exchange"/>): the projected gradient R on most
/// steps of a projected parameter, the whole gradient at its refreshes and for full-space parameters. Every rank
/// then computes the same basis and update from the same averaged numbers, so weights stay bit-identical.
/// <para>
/// With <see cref="ShardsState"/> (ZeRO stage 1) each parameter has one owner rank that holds its update rule's
/// state (the moments) and runs the rule; it broadcasts the rule's direction N (projected shape: as small as R) and
/// its step sizes for a projected parameter, and the updated weights for a full-space one. Subspace state (bases,
/// indices, seeds) stays on every rank: each rank projects its own gradient with it.
/// </para>
/// Execution policy: never written to checkpoints. Every member that says "collective" must be called by every rank.
/// </summary>
public sealed class DataParallel : IStepCommunication
{
    private readonly LowRankOptimizer _optimizer;
    private readonly int[] _owner;

    internal DataParallel(LowRankOptimizer optimizer, ICommunicator communicator, bool shardState, long chunkBytes)
    {
        _optimizer = optimizer;
        Communicator = communicator;
        ShardsState = shardState && communicator.Size > 1;
        ChunkBytes = chunkBytes;
        _owner = Partition(optimizer.States, communicator.Size);
    }

    /// <summary>The communicator.</summary>
    public ICommunicator Communicator { get; }

    /// <summary>This process's rank.</summary>
    public int Rank => Communicator.Rank;

    /// <summary>The number of ranks.</summary>
    public int Size => Communicator.Size;

    /// <summary>True when each rank holds the update-rule state of its own parameters only (ZeRO stage 1).</summary>
    public bool ShardsState { get; }

    /// <summary>
    /// The gradient bytes one engine run covers: <c>step()</c> runs the step over consecutive parameters up to this
    /// many gradient bytes at a time, so the collectives of a run carry many tensors while temporaries stay bounded.
    /// </summary>
    public long ChunkBytes { get; }

    /// <summary>Bytes this rank sent into collectives, by kind, since the optimizer was distributed.</summary>
    public DataParallelTraffic Traffic { get; } = new();

    /// <summary>The rank that owns parameter <paramref name="parameterIndex"/> (holds its rule state when sharded; updates it).</summary>
    /// <param name="parameterIndex">The parameter's index in the optimizer.</param>
    public int OwnerOf(int parameterIndex) => _owner[parameterIndex];

    /// <summary>
    /// Owners: parameters by planned rule-state bytes, largest first, each to the rank with the fewest bytes so far
    /// (ties: lower index, lower rank). Depends only on the configuration, so every rank computes the same.
    /// </summary>
    private static int[] Partition(IReadOnlyList<LowRankParameterState> states, int size)
    {
        var owner = new int[states.Count];
        var load = new long[size];
        foreach (var s in states.OrderByDescending(s => s.Rule.State.Declaration.PlannedBytes).ThenBy(s => s.Index))
        {
            var rank = Array.IndexOf(load, load.Min());
            owner[s.Index] = rank;
            load[rank] += Math.Max(1, s.Rule.State.Declaration.PlannedBytes);
        }
        return owner;
    }

    /// <summary>Collective: checks the configuration, broadcasts rank 0's parameter values and releases the state this rank does not own.</summary>
    internal void Start()
    {
        Verify();
        BroadcastParameters();
        ReleaseUnowned();
    }

    /// <summary>Collective: overwrites every parameter of the optimizer with rank 0's values (bucketed).</summary>
    public void BroadcastParameters()
    {
        using var _ = no_grad();
        var parameters = _optimizer.States.Select(s => (Tensor)s.Parameter).ToList();
        if (Rank == 0) Traffic.Weights += Bytes(parameters);
        Communicator.Broadcast(parameters, 0);
    }

    /// <summary>
    /// Collective: checks that every rank has the same configuration as rank 0: world size, groups and their options
    /// (projection, rule, learning rates), parameter shapes and dtypes, step and refresh counters, and the subspace
    /// state (bases, indices, seeds: by hash). Throws <see cref="DataParallelMismatchException"/> on every rank, naming
    /// the ranks that differ and the first difference, so no rank is left waiting in a later collective.
    /// </summary>
    public void Verify()
    {
        var mine = Describe();
        var text = BroadcastBytes(Encoding.UTF8.GetBytes(string.Join('\n', mine)), 0);
        var reference = Encoding.UTF8.GetString(text).Split('\n');
        var firstDifference = FirstDifference(reference, mine);
        using var flags = OneHot(firstDifference + 1);
        Traffic.Control += Size * 8L;
        Communicator.AllReduceSum([flags]);
        var differing = flags.data<long>().ToArray();
        var ranks = Enumerable.Range(0, Size).Where(r => differing[r] != 0).ToList();
        if (ranks.Count == 0) return;
        string Line(string[] lines, long index) => index < lines.Length ? $"'{lines[index]}'" : "nothing";
        var detail = string.Join("; ", ranks.Select(r => $"rank {r} differs where rank 0 has {Line(reference, differing[r] - 1)}"));
        var own = firstDifference >= 0 ? $" This rank ({Rank}) has {Line(mine, firstDifference)} there." : $" See the message of rank {ranks[0]}.";
        throw new DataParallelMismatchException(
            $"The data-parallel ranks are not configured alike: {detail}.{own} Every rank must build the same model and optimizer " +
            "(same groups, options, shapes and dtypes) and load the same checkpoint.");
    }

    /// <summary>A vector of <see cref="Size"/> int64 zeros with <paramref name="value"/> at this rank's index.</summary>
    private Tensor OneHot(long value)
    {
        var values = new long[Size];
        values[Rank] = value;
        return tensor(values);
    }

    private static int FirstDifference(string[] reference, string[] mine)
    {
        for (var i = 0; i < Math.Max(reference.Length, mine.Length); i++)
            if (i >= reference.Length || i >= mine.Length || reference[i] != mine[i]) return i;
        return -1;
    }

    /// <summary>One line per checked fact; equal lines on every rank mean equal configurations.</summary>
    private string[] Describe()
    {
        var lines = new List<string>
        {
            $"world size {Size}",
            $"optimizer {_optimizer.GetType().Name}: {_optimizer.ParamGroups.Count()} groups, {_optimizer.States.Count} parameters, sharded state {ShardsState}",
        };
        foreach (var (group, g) in _optimizer.ParamGroups.Cast<LowRankParamGroup>().Select((x, i) => (x, i)))
        {
            using var stream = new MemoryStream();
            using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true)) group.Options.SaveStateDict(writer);
            lines.Add($"group {g}: projection {group.Options.Projection}, rule {group.Options.Rule}, options sha256 {Hash(stream.ToArray())}");
        }
        foreach (var s in _optimizer.States)
        {
            var subspace = "none";
            if (s.Subspace is { } sub)
            {
                using var stream = new MemoryStream();
                using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true)) sub.Save(new StateWriter(writer));
                subspace = Hash(stream.ToArray());
            }
            lines.Add($"parameter {s.Index}: shape {StateReader.Format(s.Shape)} {s.Parameter.dtype} in group {s.GroupIndex}, " +
                      $"step {s.Step}, refreshes {s.Refreshes}, subspace state sha256 {subspace}");
        }
        return [.. lines];
    }

    private static string Hash(byte[] bytes) => Convert.ToHexString(SHA256.HashData(bytes))[..16].ToLowerInvariant();

    /// <summary>Collective: <paramref name="bytes"/> of <paramref name="root"/> on every rank (length first, then the bytes).</summary>
    private byte[] BroadcastBytes(byte[]? bytes, int root)
    {
        using var length = tensor(new[] { Rank == root ? bytes!.LongLength : 0L });
        Traffic.Control += 8;
        Communicator.Broadcast([length], root);
        var n = length.item<long>();
        if (n < 0) return [];
        using var buffer = Rank == root ? tensor(bytes!, dtype: ScalarType.Byte) : empty(n, dtype: ScalarType.Byte);
        Traffic.Control += n;
        if (n > 0) Communicator.Broadcast([buffer], root);
        return buffer.data<byte>().ToArray();
    }

    /// <summary>Releases the rule state of parameters another rank owns (sharded); a load re-creates it, the next step releases it again.</summary>
    private void ReleaseUnowned()
    {
        if (!ShardsState) return;
        foreach (var s in _optimizer.States)
            if (_owner[s.Index] != Rank && s.Rule.StateBytes > 0) s.Rule.State.Dispose();
    }

    /// <summary>Collective: optimizer-state bytes held by each rank (index = rank).</summary>
    public long[] StateBytesPerRank()
    {
        using var bytes = OneHot(_optimizer.StateBytes);
        Traffic.Control += Size * 8L;
        Communicator.AllReduceSum([bytes]);
        return bytes.data<long>().ToArray();
    }

    /// <summary>
    /// Collective: rank 0 writes the whole optimizer state to <paramref name="path"/> in the single-process format
    /// (<c>save_state_dict</c>), so the file loads on any number of ranks, 1 included, and into an optimizer that was
    /// never distributed. With sharded state, each owner sends its rules' state to rank 0 first (rank 0 holds the
    /// whole state while it writes). Throws on every rank when rank 0 cannot write.
    /// </summary>
    /// <param name="path">The checkpoint file.</param>
    public void SaveStateDict(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (ShardsState)
        {
            for (var root = 1; root < Size; root++)
            {
                var owned = _optimizer.States.Where(s => _owner[s.Index] == root).ToList();
                if (owned.Count == 0) continue;
                byte[]? blob = null;
                if (Rank == root)
                {
                    using var stream = new MemoryStream();
                    using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
                        foreach (var s in owned) s.Rule.Save(new StateWriter(writer));
                    blob = stream.ToArray();
                }
                var received = BroadcastBytes(blob, root);
                if (Rank != 0) continue;
                using var reader = new BinaryReader(new MemoryStream(received));
                foreach (var s in owned) s.Rule.Load(new StateReader(reader, $"{s.Describe()}, sent by rank {root}"));
            }
        }
        string? error = null;
        if (Rank == 0)
        {
            try { _optimizer.save_state_dict(path); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { error = e.Message; }
            ReleaseUnowned();
        }
        var message = BroadcastBytes(Encoding.UTF8.GetBytes(error ?? ""), 0);
        if (message.Length > 0)
            throw new IOException($"rank 0 could not write the optimizer state to '{path}': {Encoding.UTF8.GetString(message)}");
    }

    /// <summary>
    /// Collective: loads a file written by <see cref="SaveStateDict"/> or by a single process's <c>save_state_dict</c>.
    /// Ranks that can read <paramref name="path"/> read it; when some cannot, rank 0 broadcasts its bytes (files under
    /// 2 GiB). Then releases the rule state of parameters this rank does not own, and <see cref="Verify"/>s.
    /// </summary>
    /// <param name="path">The checkpoint file.</param>
    public void LoadStateDict(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var present = tensor(new[] { File.Exists(path) ? 1L : 0L });
        Traffic.Control += 8;
        Communicator.AllReduceSum([present]);
        var everywhere = present.item<long>() == Size;
        if (everywhere)
        {
            _optimizer.load_state_dict(path);
        }
        else
        {
            byte[]? bytes = null;
            if (Rank == 0 && File.Exists(path))
            {
                var length = new FileInfo(path).Length;
                if (length < int.MaxValue) bytes = File.ReadAllBytes(path);
            }
            var received = BroadcastBytes(bytes ?? [], 0);
            if (received.Length == 0)
                throw new FileNotFoundException($"'{path}' is not readable by every rank, and rank 0 cannot send it (missing, or 2 GiB or more).", path);
            using var reader = new BinaryReader(new MemoryStream(received));
            _optimizer.load_state_dict(reader);
        }
        ReleaseUnowned();
        Verify();
    }

    /// <summary>
    /// The distributed <c>step()</c>: checks that every rank has gradients for the same parameters (a tiny all-reduce,
    /// so a mismatch throws on every rank instead of hanging), then runs the engine over chunks of parameters.
    /// </summary>
    internal void Step(IReadOnlyList<(LowRankParameterState State, Parameter Parameter, Tensor? Gradient, LowRankOptions Options)> all, StepEngine engine)
    {
        var mask = new int[_optimizer.States.Count];
        foreach (var item in all) if (item.Gradient is not null) mask[item.State.Index] = 1;
        using var present = tensor(mask);
        Traffic.Control += present.numel() * 4;
        Communicator.AllReduceSum([present]);
        var counts = present.data<int>().ToArray();
        var partial = Enumerable.Range(0, counts.Length).FirstOrDefault(i => counts[i] != 0 && counts[i] != Size, -1);
        if (partial >= 0)
            throw new InvalidOperationException(
                $"{_optimizer.States[partial].Describe()} has a gradient on {counts[partial]} of {Size} ranks; every rank must compute gradients for the same parameters.");
        ReleaseUnowned();
        Traffic.Steps++;
        var chunk = new List<ParameterStep>();
        long bytes = 0;
        foreach (var item in all)
        {
            if (item.Gradient is not { } grad) continue;
            chunk.Add(new ParameterStep(item.State, item.Parameter, grad, item.Options));
            bytes += grad.numel() * grad.element_size();
            if (bytes < ChunkBytes) continue;
            Run(engine, chunk);
            (chunk, bytes) = ([], 0);
        }
        if (chunk.Count > 0) Run(engine, chunk);
    }

    private static void Run(StepEngine engine, List<ParameterStep> chunk)
    {
        using var scope = NewDisposeScope();
        engine.Run(chunk);
    }

    void IStepCommunication.SumGradients(IReadOnlyList<ParameterStep> steps)
    {
        var full = new List<Tensor>();
        foreach (var s in steps)
        {
            s.Owned = !ShardsState || _owner[s.State.Index] == Rank;
            s.Exchange = s.State.Subspace?.Exchange(s.Step) ?? GradientExchange.Full;
            if (!s.Exchange.IsFull) continue;
            full.Add(s.Working);
            if (s.State.Subspace is null) Traffic.FullSpaceGradients += Bytes(s.Working);
            else Traffic.WholeProjectedGradients += Bytes(s.Working);
        }
        Average(full);
    }

    void IStepCommunication.CombineGradientNorms(IReadOnlyList<ParameterStep> steps)
    {
        var local = steps.Where(s => !s.Exchange.IsFull).ToList();
        if (local.Count == 0) return;
        using var squares = tensor(local.Select(s => s.GradientNorm * s.GradientNorm).ToArray());
        Communicator.AllReduceSum([squares]);
        Traffic.Control += local.Count * 8L;
        var sums = squares.data<double>().ToArray();
        for (var i = 0; i < local.Count; i++) local[i].GradientNorm = Math.Sqrt(sums[i]);
    }

    void IStepCommunication.SumProjected(IReadOnlyList<ParameterStep> steps)
    {
        var reduced = new List<Tensor>();
        var entries = new List<(ParameterStep Step, Tensor Index, Tensor Values)>();
        foreach (var s in steps)
        {
            if (s.Skipped || s.Exchange.IsFull) continue;
            reduced.Add(s.Projected!);
            Traffic.ProjectedGradients += Bytes(s.Projected!);
            if (s.Exchange.GradientEntries is not { } index) continue;
            if (!s.Matrix!.is_contiguous()) s.Matrix = s.Matrix.contiguous();
            var values = s.Matrix.view(-1).index_select(0, index);
            entries.Add((s, index, values));
            reduced.Add(values);
            Traffic.GradientEntries += Bytes(values);
        }
        Average(reduced);
        foreach (var (s, index, values) in entries) s.Matrix!.view(-1).index_copy_(0, index, values);
    }

    void IStepCommunication.ShareUpdates(IReadOnlyList<ParameterStep> steps)
    {
        if (!ShardsState) return;
        for (var root = 0; root < Size; root++)
        {
            var owned = steps.Where(s => !s.Skipped && s.State.Subspace is not null && _owner[s.State.Index] == root).ToList();
            if (owned.Count == 0) continue;
            var sizes = new double[2 * owned.Count];
            var directions = new List<Tensor>(owned.Count);
            for (var i = 0; i < owned.Count; i++)
            {
                var s = owned[i];
                var r = s.Projected!;
                if (Rank == root)
                {
                    var n = s.Update.Direction;
                    directions.Add(n.dtype == r.dtype && n.is_contiguous() ? n : n.to(r.dtype).contiguous());
                    sizes[2 * i] = s.Update.Coefficient;
                    sizes[2 * i + 1] = s.Update.DecayLearningRate;
                }
                else
                {
                    directions.Add(empty(r.shape, dtype: r.dtype, device: r.device));
                }
            }
            using var scalars = tensor(sizes);
            if (Rank == root) Traffic.Directions += directions.Sum(Bytes) + scalars.numel() * 8;
            Communicator.Broadcast([.. directions, scalars], root);
            if (Rank == root) continue;
            var values = scalars.data<double>().ToArray();
            for (var i = 0; i < owned.Count; i++)
            {
                owned[i].Update = new RuleUpdate(directions[i], values[2 * i], values[2 * i + 1]);
                owned[i].DecayLearningRate = values[2 * i + 1];
            }
        }
    }

    void IStepCommunication.ShareWeights(IReadOnlyList<ParameterStep> steps)
    {
        if (!ShardsState) return;
        for (var root = 0; root < Size; root++)
        {
            var owned = steps.Where(s => !s.Skipped && s.State.Subspace is null && _owner[s.State.Index] == root).Select(s => (Tensor)s.Parameter).ToList();
            if (owned.Count == 0) continue;
            if (Rank == root) Traffic.Weights += Bytes(owned);
            Communicator.Broadcast(owned, root);
        }
    }

    /// <summary>In place: the sum over ranks divided by <see cref="Size"/> (the mean of the per-rank mean gradients).</summary>
    private void Average(List<Tensor> tensors)
    {
        if (tensors.Count == 0) return;
        Communicator.AllReduceSum(tensors);
        using var size = Size.ToScalar();
        foreach (var t in tensors) t.div_(size);
    }

    private static long Bytes(Tensor t) => t.numel() * t.element_size();
    private static long Bytes(IEnumerable<Tensor> ts) => ts.Sum(Bytes);
}

/// <summary>Bytes one rank sent into the collectives of data-parallel training, by kind (payload: numel × element size).</summary>
public sealed class DataParallelTraffic
{
    /// <summary>Optimizer steps taken.</summary>
    public long Steps { get; internal set; }
    /// <summary>All-reduced gradients of full-space parameters (no subspace).</summary>
    public long FullSpaceGradients { get; internal set; }
    /// <summary>All-reduced whole gradients of projected parameters (refresh steps, and methods that read G every step).</summary>
    public long WholeProjectedGradients { get; internal set; }
    /// <summary>All-reduced projected gradients R.</summary>
    public long ProjectedGradients { get; internal set; }
    /// <summary>All-reduced gradient entries declared by subspaces (GaLore+'s sparse residual).</summary>
    public long GradientEntries { get; internal set; }
    /// <summary>Broadcast directions and step sizes (sharded state; counted by the sending owner).</summary>
    public long Directions { get; internal set; }
    /// <summary>Broadcast weights: at the start, and full-space parameters after each step when sharded (counted by the sender).</summary>
    public long Weights { get; internal set; }
    /// <summary>Checks, configuration hashes and checkpoint transfers.</summary>
    public long Control { get; internal set; }

    /// <summary>Bytes all-reduced: full-space gradients, whole and projected gradients, entries.</summary>
    public long AllReduced => FullSpaceGradients + WholeProjectedGradients + ProjectedGradients + GradientEntries;

    /// <summary>A copy of the counters now.</summary>
    public DataParallelTraffic Snapshot() => (DataParallelTraffic)MemberwiseClone();

    /// <inheritdoc />
    public override string ToString() =>
        $"{Steps} steps: all-reduced {AllReduced} B (full-space {FullSpaceGradients}, whole projected {WholeProjectedGradients}, projected {ProjectedGradients}, entries {GradientEntries}), " +
        $"broadcast directions {Directions} B, weights {Weights} B, control {Control} B";
}

/// <summary>The ranks of a data-parallel run are not configured alike; thrown on every rank.</summary>
/// <param name="message">What differs.</param>
public sealed class DataParallelMismatchException(string message) : Exception(message);
