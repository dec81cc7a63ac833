using TorchSharp;

namespace LowRankOptim;

/// <summary>When a declared state tensor exists.</summary>
public enum SlotPresence
{
    /// <summary>Allocated (zeros) when the component is created; always present.</summary>
    Allocated,
    /// <summary>Absent until the component first sets it (a basis at the first refresh); planned as present.</summary>
    WhenSet,
    /// <summary>Present only for a while (a warm-up accumulator); not part of the steady-state plan.</summary>
    Transient,
    /// <summary>Never present in this configuration; kept so the checkpoint layout is the same for every configuration.</summary>
    Unused,
}

/// <summary>One declared piece of a component's state, saved as a checkpoint entry of the same name.</summary>
/// <param name="Name">The checkpoint entry name.</param>
public abstract record StateEntry(string Name);

/// <summary>A state tensor: its declared shape and storage are checked whenever it is set or loaded.</summary>
/// <param name="Name">The checkpoint entry name.</param>
/// <param name="Shape">The tensor's shape.</param>
/// <param name="Storage">How it is stored.</param>
/// <param name="Presence">When it exists.</param>
public sealed record TensorEntry(string Name, long[] Shape, StateStorage Storage, SlotPresence Presence = SlotPresence.Allocated) : StateEntry(Name)
{
    /// <summary>A dense tensor of <paramref name="dtype"/>.</summary>
    /// <param name="name">The entry's name.</param>
    /// <param name="shape">The tensor's shape.</param>
    /// <param name="dtype">Its dtype (dense storage).</param>
    /// <param name="presence">When it holds a tensor.</param>
    public TensorEntry(string name, long[] shape, torch.ScalarType dtype, SlotPresence presence = SlotPresence.Allocated)
        : this(name, shape, StateStorage.Dense(dtype), presence) { }

    /// <summary>
    /// What the values must satisfy when they are loaded: by default finite for floating-point storage and anything
    /// for integer storage; second moments declare <see cref="TensorValues.NonNegative"/>.
    /// </summary>
    public TensorValues Values { get; init; } = DefaultValues(Storage);

    /// <summary>
    /// Whether the entry is an optimizer moment, and of which sign: a group's <see cref="MomentStorage"/> compresses
    /// moments only (a basis or an index tensor is always stored as declared).
    /// </summary>
    public MomentKind Moment { get; init; }

    /// <summary>Bytes in the steady-state plan: the storage's bytes when the tensor is allocated or set once, else 0.</summary>
    public long PlannedBytes => Presence is SlotPresence.Allocated or SlotPresence.WhenSet ? Storage.Bytes(Shape) : 0;

    /// <summary>The dtype the component sees (the tensor's, or the workspace's for compressed storage).</summary>
    internal torch.ScalarType DType => Storage.WorkingType;

    private static TensorValues DefaultValues(StateStorage storage) =>
        storage is DenseStorage { DType: torch.ScalarType.Float16 or torch.ScalarType.BFloat16 or torch.ScalarType.Float32 or torch.ScalarType.Float64 }
            ? TensorValues.Finite
            : TensorValues.Any;
}

/// <summary>A 64-bit counter (steps, refreshes) saved and restored with the state; a loaded value must be ≥ 0.</summary>
/// <param name="Name">The checkpoint entry name.</param>
public sealed record CounterEntry(string Name) : StateEntry(Name);

/// <summary>A structural value (side, rank) written with the state and checked on load.</summary>
/// <param name="Name">The checkpoint entry name.</param>
/// <param name="Value">The value this configuration has.</param>
public sealed record ConstantEntry(string Name, long Value) : StateEntry(Name);

/// <summary>The state of a nested component (Online Subspace Descent's basis rule), declared by its own config.</summary>
/// <param name="Name">A name for messages (the nested entries keep their own names).</param>
/// <param name="Declaration">The nested component's declaration.</param>
public sealed record ComponentEntry(string Name, StateDeclaration Declaration) : StateEntry(Name);

/// <summary>
/// A component's declared state, in checkpoint order. Allocation (<see cref="StateSlots"/>), exact bytes, the
/// memory plan, save, load, device moves and disposal all derive from it, so plan = allocation by construction.
/// </summary>
public sealed class StateDeclaration
{
    /// <summary>Declares <paramref name="entries"/> in checkpoint order.</summary>
    /// <param name="entries">The entries, in saved order.</param>
    public StateDeclaration(params IEnumerable<StateEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        Entries = [.. entries];
        var duplicate = Entries.Where(e => e is not ComponentEntry).GroupBy(e => e.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"state entry '{duplicate.Key}' is declared twice.", nameof(entries));
    }

    /// <summary>The entries, in checkpoint order.</summary>
    public IReadOnlyList<StateEntry> Entries { get; }

    /// <summary>Bytes of the steady state (allocated and set-once tensors, nested components included).</summary>
    public long PlannedBytes => Entries.Sum(e => e switch
    {
        TensorEntry t => t.PlannedBytes,
        ComponentEntry c => c.Declaration.PlannedBytes,
        _ => 0,
    });
}
