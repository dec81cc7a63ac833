namespace LowRankOptim;

/// <summary>
/// A per-parameter piece of optimizer state (a subspace or an update rule). Its tensors, counters and nested
/// components live in <see cref="State"/>, built from the declaration its config made; saving, loading,
/// byte counts, device moves and disposal come from there. A component overrides <see cref="Load"/> only to
/// check what was read (indices in range, consistent flags).
/// </summary>
public interface IStatefulComponent : IDisposable
{
    /// <summary>The declared state.</summary>
    StateSlots State { get; }

    /// <summary>Writes every declared entry.</summary>
    /// <param name="writer">Where the entries go.</param>
    void Save(StateWriter writer) => State.Save(writer);

    /// <summary>
    /// Reads what <see cref="Save"/> wrote into this component, which is always freshly created by its config
    /// for the same parameter; throws <see cref="InvalidDataException"/> on any mismatch.
    /// </summary>
    /// <param name="reader">The entries written by <see cref="Save"/>.</param>
    void Load(StateReader reader) => State.Load(reader);

    /// <summary>Exact bytes of the tensors this component holds now.</summary>
    long StateBytes => State.Bytes;

    /// <summary>Moves every tensor to <paramref name="device"/>.</summary>
    /// <param name="device">The target device.</param>
    void MoveTo(TorchSharp.torch.Device device) => State.MoveTo(device);

    void IDisposable.Dispose() => State.Dispose();
}
