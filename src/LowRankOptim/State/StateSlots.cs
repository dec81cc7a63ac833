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

    /// <summary>Allocates the declared state on <paramref name="device"/>: zeros for allocated tensors, 0 for counters.</summary>
    /// <param name="declaration">The declared entries.</param>
    /// <param name="device">Where the tensors live.</param>
    public StateSlots(StateDeclaration declaration, torch.Device device)
    {
        ArgumentNullException.ThrowIfNull(declaration);
        ArgumentNullException.ThrowIfNull(device);
        Declaration = declaration;
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

    /// <summary>The declaration these slots follow.</summary>
    public StateDeclaration Declaration { get; }

    /// <summary>The device of the tensors.</summary>
    public torch.Device Device { get; private set; }

    /// <summary>Exact bytes of the tensors present now, nested components included.</summary>
    public long Bytes => _slots.Sum(s => s switch
    {
        TensorSlot t => t.Value is { } v ? v.numel() * v.element_size() : 0,
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
                case TensorSlot t: writer.Tensor(t.Entry.Name, t.Value); break;
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
                case TensorSlot t:
                    if (t.Entry.Presence == SlotPresence.Unused) { reader.AbsentTensor(t.Entry.Name); break; }
                    var value = reader.Tensor(t.Entry.Name, t.Entry.Shape, t.Entry.DType, Device, t.Entry.Values);
                    if (value is null && t.Entry.Presence == SlotPresence.Allocated)
                        throw new InvalidDataException($"{reader.Context}: entry '{t.Entry.Name}' must hold a tensor but the saved state has an absent tensor.");
                    if (value is null) t.Clear(); else t.Set(value);
                    break;
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
            if (slot is TensorSlot { Value: { } v } t && v.device != device) t.Set(v.to(device));
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

/// <summary>One declared state tensor. Setting it checks the declared shape and dtype and detaches it from dispose scopes.</summary>
public sealed class TensorSlot
{
    private readonly StateSlots _owner;
    private torch.Tensor? _value;

    internal TensorSlot(TensorEntry entry, StateSlots owner)
    {
        Entry = entry;
        _owner = owner;
        if (entry.Presence == SlotPresence.Allocated)
            _value = torch.zeros(entry.Shape, dtype: entry.DType, device: owner.Device).DetachFromDisposeScope();
    }

    /// <summary>The declaration.</summary>
    public TensorEntry Entry { get; }

    /// <summary>The tensor, or null while absent.</summary>
    public torch.Tensor? Value => _value;

    /// <summary>The tensor, which must be present.</summary>
    public torch.Tensor Required => _value ?? throw new InvalidOperationException($"state tensor '{Entry.Name}' is not set.");

    /// <summary>True while the tensor is present.</summary>
    public bool HasValue => _value is not null;

    /// <summary>Stores <paramref name="value"/> (detached from every dispose scope), disposing the previous tensor.</summary>
    /// <exception cref="InvalidOperationException">The value's shape or dtype differs from the declaration, or the slot is unused.</exception>
    /// <param name="value">A tensor of the declared shape and dtype; the slot owns it from now on.</param>
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
    }

    /// <summary>Disposes and removes the tensor.</summary>
    public void Clear()
    {
        _value?.Dispose();
        _value = null;
    }

    /// <summary>The device tensors of this slot live on.</summary>
    public torch.Device Device => _owner.Device;
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
