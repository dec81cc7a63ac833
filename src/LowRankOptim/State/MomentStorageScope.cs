namespace LowRankOptim;

/// <summary>
/// The moment storage of the components being created: the optimizer sets it around a parameter's
/// <c>Create</c> calls (and the planner around <c>DeclareState</c>), and <see cref="StateSlots"/> applies it to the
/// declaration it is given. So a method declares its moments once (<see cref="TensorEntry.Moment"/>) and gets every
/// storage format without a storage argument in its config's signatures.
/// </summary>
internal static class MomentStorageScope
{
    private static readonly AsyncLocal<MomentStorage?> Ambient = new();

    /// <summary>The storage in force (dense outside a scope).</summary>
    public static MomentStorage Current => Ambient.Value ?? MomentStorage.Dense;

    /// <summary>Makes <paramref name="storage"/> the storage in force until the result is disposed.</summary>
    public static Scope Use(MomentStorage storage)
    {
        var previous = Ambient.Value;
        Ambient.Value = storage;
        return new Scope(previous);
    }

    /// <summary>Restores the storage that was in force before <see cref="Use"/>.</summary>
    public readonly struct Scope(MomentStorage? previous) : IDisposable
    {
        /// <inheritdoc />
        public void Dispose() => Ambient.Value = previous;
    }
}
