using LowRankOptim.Kernels;
using TorchSharp;

namespace LowRankOptim;

/// <summary>
/// The live state of one component, built from its <see cref="StateDeclaration"/>: the tensors, counters and
/// nested components it declared. Bytes, save, load, device moves and disposal are done here, once, for every
/// component; a component only reads and sets its slots.
/// </summary>
public sealed class StateSlots : IDisposable
{
    private readonly object[] _slots; // TensorSlot, CounterSlot, ConstantEntry or NestedSlot, one per entry

    /// <summary>
    /// Allocates the declared state on <paramref name="device"/>: zeros for allocated tensors, 0 for counters. Moments are
    /// stored as the group's <see cref="MomentStorage"/> says (set by the optimizer while it creates the components).
    /// </summary>
    /// <param name="declaration">The declared entries.</param>
    /// <param name="device">Where the tensors live.</param>
    public StateSlots(StateDeclaration declaration, torch.Device device)
    {
        ArgumentNullException.ThrowIfNull(declaration);
        ArgumentNullException.ThrowIfNull(device);
        Declaration = declaration = MomentStorageScope.Current.Apply(declaration);
        Device = device;
        _slots = new object[declaration.Entries.Count];
        try
        {
            for (var i = 0; i < _slots.Length; i++)
            {
                _slots[i] = declaration.Entries[i] switch
                {
                    TensorEntry t => new TensorSlot(t, this),
                    CounterEntry c => new CounterSlot(c),
                    ConstantEntry c => c,
                    ComponentEntry c => new NestedSlot(c),
                    var e => throw new ArgumentException($"unknown state entry kind {e.GetType().Name}.", nameof(declaration)),
                };
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The declaration these slots follow (moments in the storage they were created with).</summary>
    public StateDeclaration Declaration { get; }

    /// <summary>The device of the tensors.</summary>
    public torch.Device Device { get; private set; }

    /// <summary>Exact bytes of the tensors present now, nested components included.</summary>
    public long Bytes => _slots.Sum(s => s switch
    {
        TensorSlot t => t.Bytes,
        NestedSlot n => n.Slots?.Bytes ?? 0,
        _ => 0,
    });

    /// <summary>The tensor slot declared as <paramref name="name"/>.</summary>
    /// <param name="name">The declared entry's name.</param>
    public TensorSlot Tensor(string name) => Find<TensorSlot>(name, s => s.Entry.Name);

    /// <summary>The counter declared as <paramref name="name"/>.</summary>
    /// <param name="name">The declared entry's name.</param>
    public CounterSlot Counter(string name) => Find<CounterSlot>(name, s => s.Entry.Name);

    /// <summary>Every tensor slot, nested components' included, in declaration order.</summary>
    internal IEnumerable<TensorSlot> TensorSlots => _slots.SelectMany(s => s switch
    {
        TensorSlot t => [t],
        NestedSlot { Slots: { } n } => n.TensorSlots,
        _ => (IEnumerable<TensorSlot>)[],
    });

    /// <summary>Every counter, nested components' included, in declaration order.</summary>
    internal IEnumerable<CounterSlot> CounterSlots => _slots.SelectMany(s => s switch
    {
        CounterSlot c => [c],
        NestedSlot { Slots: { } n } => n.CounterSlots,
        _ => (IEnumerable<CounterSlot>)[],
    });

    /// <summary>Attaches the state of the nested component declared as <paramref name="name"/>; its declaration must be the declared one.</summary>
    /// <param name="name">The declared component entry's name.</param>
    /// <param name="nested">The component's slots.</param>
    public void Attach(string name, StateSlots nested)
    {
        ArgumentNullException.ThrowIfNull(nested);
        var slot = Find<NestedSlot>(name, s => s.Entry.Name);
        if (!SameLayout(slot.Entry.Declaration, nested.Declaration))
            throw new InvalidOperationException($"the nested state '{name}' does not follow its declaration.");
        slot.Slots = nested;
    }

    /// <summary>Writes every entry in declaration order.</summary>
    /// <param name="writer">Where the entries go.</param>
    public void Save(StateWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        foreach (var slot in _slots)
        {
            switch (slot)
            {
                case TensorSlot t: t.Save(writer); break;
                case CounterSlot c: writer.Long(c.Entry.Name, c.Value); break;
                case ConstantEntry c: writer.Long(c.Name, c.Value); break;
                case NestedSlot n: Nested(n).Save(writer); break;
            }
        }
    }

    /// <summary>
    /// Reads what <see cref="Save"/> wrote into these (freshly created) slots: constants must match, counters must be
    /// ≥ 0, tensors must have the declared shape and dtype and values (<see cref="TensorEntry.Values"/>), allocated
    /// tensors must be present and unused ones absent.
    /// </summary>
    /// <exception cref="InvalidDataException">An entry does not match the declaration; names the entry and the place.</exception>
    /// <param name="reader">The entries written by <see cref="Save"/>.</param>
    public void Load(StateReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        foreach (var slot in _slots)
        {
            switch (slot)
            {
                case TensorSlot t: t.Load(reader); break;
                case CounterSlot c: c.Value = reader.Count(c.Entry.Name); break;
                case ConstantEntry c: reader.ExpectLong(c.Name, c.Value); break;
                case NestedSlot n: Nested(n).Load(reader); break;
            }
        }
    }

    /// <summary>Moves every tensor to <paramref name="device"/>.</summary>
    /// <param name="device">The target device.</param>
    public void MoveTo(torch.Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        foreach (var slot in _slots)
        {
            if (slot is TensorSlot t) t.MoveTo(device);
            else if (slot is NestedSlot n) n.Slots?.MoveTo(device);
        }
        Device = device;
    }

    /// <summary>Disposes every tensor (nested components included).</summary>
    public void Dispose()
    {
        foreach (var slot in _slots)
        {
            if (slot is TensorSlot t) t.Clear();
            else if (slot is NestedSlot n) n.Slots?.Dispose();
        }
    }

    /// <summary>
    /// Stores back every compressed tensor's workspace after a step that changed the state (<paramref name="step"/> keys
    /// stochastic rounding) and frees the workspaces; dense tensors are untouched.
    /// </summary>
    /// <param name="step">The step that changed the state.</param>
    public void Commit(long step)
    {
        foreach (var slot in _slots)
        {
            if (slot is TensorSlot t) t.Commit(step);
            else if (slot is NestedSlot n) n.Slots?.Commit(step);
        }
    }

    /// <summary>Drops every compressed tensor's workspace without storing it: the stored state is kept as it was (a skipped step).</summary>
    public void Discard()
    {
        foreach (var slot in _slots)
        {
            if (slot is TensorSlot t) t.Discard();
            else if (slot is NestedSlot n) n.Slots?.Discard();
        }
    }

    /// <summary>
    /// Gives every tensor its stochastic-rounding stream, derived from <paramref name="stream"/> (the parameter and the
    /// component) and its position, so each state tensor of each parameter draws its own random numbers.
    /// </summary>
    /// <param name="stream">The component's stream.</param>
    internal void AssignStreams(ulong stream)
    {
        for (var i = 0; i < _slots.Length; i++)
        {
            var own = stream * 64 + (ulong)i + 1;
            if (_slots[i] is TensorSlot t) t.Stream = own;
            else if (_slots[i] is NestedSlot { Slots: { } n }) n.AssignStreams(own);
        }
    }

    private static StateSlots Nested(NestedSlot n) =>
        n.Slots ?? throw new InvalidOperationException($"the nested state '{n.Entry.Name}' was declared but never attached.");

    private static bool SameLayout(StateDeclaration a, StateDeclaration b) =>
        a.Entries.Count == b.Entries.Count && a.Entries.Zip(b.Entries).All(p => p.First switch
        {
            TensorEntry t => p.Second is TensorEntry u && t.Name == u.Name && t.Shape.SequenceEqual(u.Shape) && t.Storage == u.Storage && t.Presence == u.Presence,
            ComponentEntry c => p.Second is ComponentEntry d && SameLayout(c.Declaration, d.Declaration),
            _ => p.First == p.Second,
        });

    private T Find<T>(string name, Func<T, string> nameOf) where T : class =>
        _slots.OfType<T>().FirstOrDefault(s => nameOf(s) == name) ?? throw new ArgumentException($"no {typeof(T).Name} named '{name}' is declared.", nameof(name));

    private sealed class NestedSlot(ComponentEntry entry)
    {
        public ComponentEntry Entry { get; } = entry;
        public StateSlots? Slots { get; set; }
    }
}

/// <summary>
/// One declared state tensor. Setting it checks the declared shape and dtype and detaches it from dispose scopes.
/// <para>
/// With compressed storage (<see cref="BlockwiseStorage"/>, <see cref="BFloat16Storage"/>) the slot keeps the stored form,
/// and <see cref="Value"/> is a dense workspace in the working dtype, decoded at the first read of a step; the engine stores
/// it back after the step (<see cref="StateSlots.Commit"/>, or drops it for a skipped step), so a component reads and
/// writes its moments as dense tensors whatever the storage. A fused kernel may work on <see cref="Compressed"/> directly
/// while no workspace exists.
/// </para>
/// </summary>
public sealed class TensorSlot
{
    private readonly StateSlots _owner;
    private torch.Tensor? _value;             // dense storage: the tensor; compressed: the workspace while decoded
    private CompressedState? _compressed;     // compressed storage: the stored form

    internal TensorSlot(TensorEntry entry, StateSlots owner)
    {
        Entry = entry;
        _owner = owner;
        if (entry.Presence != SlotPresence.Allocated) return;
        if (IsCompressed) _compressed = CompressedState.Zeros(entry.Storage, entry.Shape, owner.Device);
        else _value = torch.zeros(entry.Shape, dtype: entry.DType, device: owner.Device).DetachFromDisposeScope();
    }

    /// <summary>The declaration.</summary>
    public TensorEntry Entry { get; }

    /// <summary>The tensor (for compressed storage, the decoded workspace), or null while absent.</summary>
    public torch.Tensor? Value
    {
        get
        {
            if (_value is null && _compressed is not null)
                _value = _compressed.Decode(Entry.Shape, Entry.DType).DetachFromDisposeScope();
            return _value;
        }
    }

    /// <summary>The tensor, which must be present.</summary>
    public torch.Tensor Required => Value ?? throw new InvalidOperationException($"state tensor '{Entry.Name}' is not set.");

    /// <summary>True while the tensor is present.</summary>
    public bool HasValue => _value is not null || _compressed is not null;

    /// <summary>The stored form of a compressed tensor while no workspace is decoded (for fused kernels), else null.</summary>
    internal CompressedState? Compressed => _value is null ? _compressed : null;

    /// <summary>This tensor's stochastic-rounding stream (<see cref="StateSlots.AssignStreams"/>).</summary>
    internal ulong Stream { get; set; }

    /// <summary>Exact bytes held now: the stored form, plus the workspace while decoded.</summary>
    internal long Bytes => (_compressed?.Bytes ?? 0) + (_value is { } v ? v.numel() * v.element_size() : 0);

    private bool IsCompressed => Entry.Storage is CompressedStorage;

    /// <summary>The rounding of a store at <paramref name="step"/>: nearest, or stochastic keyed by seed, stream and step.</summary>
    internal Rounding RoundingAt(long step) => Entry.Storage is CompressedStorage { Rounding: StateRounding.Stochastic, Seed: var seed }
        ? new(StateRounding.Stochastic, RoundingNoise.Key(seed, Stream, step))
        : Rounding.Nearest;

    /// <summary>Stores <paramref name="value"/> (detached from every dispose scope), disposing the previous tensor.</summary>
    /// <exception cref="InvalidOperationException">The value's shape or dtype differs from the declaration, or the slot is unused.</exception>
    /// <param name="value">A tensor of the declared shape and dtype; the slot owns it from now on (compressed storage: as the workspace, stored at the end of the step).</param>
    public void Set(torch.Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (Entry.Presence == SlotPresence.Unused)
            throw new InvalidOperationException($"state tensor '{Entry.Name}' is declared unused in this configuration.");
        if (!value.shape.SequenceEqual(Entry.Shape) || value.dtype != Entry.DType)
            throw new InvalidOperationException(
                $"state tensor '{Entry.Name}' is declared {StateReader.Format(Entry.Shape)} {Entry.DType}, not {StateReader.Format(value.shape)} {value.dtype}.");
        var old = _value;
        _value = value.DetachFromDisposeScope();
        if (!ReferenceEquals(old, _value)) old?.Dispose();
        if (IsCompressed) _compressed ??= CompressedState.Zeros(Entry.Storage, Entry.Shape, _owner.Device);
    }

    /// <summary>Disposes and removes the tensor.</summary>
    public void Clear()
    {
        _value?.Dispose();
        _value = null;
        _compressed?.Dispose();
        _compressed = null;
    }

    /// <summary>The device tensors of this slot live on.</summary>
    public torch.Device Device => _owner.Device;

    /// <summary>Stores the workspace of a compressed tensor (rounded for <paramref name="step"/>) and frees it.</summary>
    internal void Commit(long step)
    {
        if (!IsCompressed || _value is null) return;
        _compressed!.Encode(_value, RoundingAt(step));
        _value.Dispose();
        _value = null;
    }

    /// <summary>Frees the workspace of a compressed tensor without storing it (the stored form stays as it was).</summary>
    internal void Discard()
    {
        if (!IsCompressed || _value is null) return;
        _value.Dispose();
        _value = null;
    }

    /// <summary>Writes the entry (compressed storage: its stored form; a workspace exists only inside a step).</summary>
    internal void Save(StateWriter writer)
    {
        if (!IsCompressed) writer.Tensor(Entry.Name, _value);
        else if (_compressed is null) CompressedState.SaveAbsent(writer, Entry.Name, Entry.Storage);
        else _compressed.Save(writer, Entry.Name);
    }

    /// <summary>Reads the entry into this fresh slot, checking shape, dtype, values and presence.</summary>
    internal void Load(StateReader reader)
    {
        if (Entry.Presence == SlotPresence.Unused)
        {
            if (IsCompressed) CompressedState.LoadAbsent(reader, Entry.Name, Entry.Storage);
            else reader.AbsentTensor(Entry.Name);
            return;
        }
        var present = IsCompressed ? LoadCompressed(reader) : LoadDense(reader);
        if (!present && Entry.Presence == SlotPresence.Allocated)
            throw new InvalidDataException($"{reader.Context}: entry '{Entry.Name}' must hold a tensor but the saved state has an absent tensor.");
    }

    private bool LoadDense(StateReader reader)
    {
        var value = reader.Tensor(Entry.Name, Entry.Shape, Entry.DType, Device, Entry.Values);
        if (value is null) Clear(); else Set(value);
        return value is not null;
    }

    private bool LoadCompressed(StateReader reader)
    {
        var loaded = CompressedState.Load(reader, Entry, Device);
        Clear();
        _compressed = loaded;
        return loaded is not null;
    }

    /// <summary>Moves the tensor (and the stored form) to <paramref name="device"/>.</summary>
    internal void MoveTo(torch.Device device)
    {
        _compressed?.MoveTo(device);
        if (_value is { } v && v.device != device)
        {
            var moved = v.to(device).DetachFromDisposeScope();
            v.Dispose();
            _value = moved;
        }
    }
}

/// <summary>A declared 64-bit counter.</summary>
public sealed class CounterSlot
{
    internal CounterSlot(CounterEntry entry) => Entry = entry;

    /// <summary>The declaration.</summary>
    public CounterEntry Entry { get; }

    /// <summary>The value.</summary>
    public long Value { get; set; }
}
