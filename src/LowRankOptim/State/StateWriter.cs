using TorchSharp;

namespace LowRankOptim;

/// <summary>
/// Writes optimizer state as named, typed entries inside TorchSharp's <c>save_state_dict</c> stream, so a
/// load can say which entry was expected and what was found instead of failing on a byte offset.
/// </summary>
public sealed class StateWriter
{
    private readonly BinaryWriter _writer;

    /// <summary>Wraps a writer positioned where the entries go.</summary>
    /// <param name="writer">The stream writer.</param>
    public StateWriter(BinaryWriter writer) => _writer = writer;

    /// <summary>Writes a 64-bit integer entry.</summary>
    /// <param name="name">The entry's name (read back by it).</param>
    /// <param name="value">The value.</param>
    public void Long(string name, long value) { Header(name, EntryKind.Long); _writer.Write(value); }

    /// <summary>Writes a double entry.</summary>
    /// <param name="name">The entry's name (read back by it).</param>
    /// <param name="value">The value.</param>
    public void Double(string name, double value) { Header(name, EntryKind.Double); _writer.Write(value); }

    /// <summary>Writes an optional double entry.</summary>
    /// <param name="name">The entry's name (read back by it).</param>
    /// <param name="value">The value, or null.</param>
    public void OptionalDouble(string name, double? value)
    {
        Header(name, EntryKind.OptionalDouble);
        _writer.Write(value.HasValue);
        if (value.HasValue) _writer.Write(value.Value);
    }

    /// <summary>Writes a boolean entry.</summary>
    /// <param name="name">The entry's name (read back by it).</param>
    /// <param name="value">The value.</param>
    public void Bool(string name, bool value) { Header(name, EntryKind.Bool); _writer.Write(value); }

    /// <summary>Writes a string entry.</summary>
    /// <param name="name">The entry's name (read back by it).</param>
    /// <param name="value">The value.</param>
    public void String(string name, string value) { Header(name, EntryKind.String); _writer.Write(value); }

    /// <summary>Writes a tensor entry (TorchSharp's tensor format); null is written as absent.</summary>
    /// <param name="name">The entry's name (read back by it).</param>
    /// <param name="value">The tensor, or null for an absent one.</param>
    public void Tensor(string name, torch.Tensor? value)
    {
        Header(name, EntryKind.Tensor);
        _writer.Write(value is not null);
        if (value is null) return;
        using var cpu = value.device_type == DeviceType.CPU ? null : value.cpu();
        (cpu ?? value).Save(_writer);
    }

    private void Header(string name, EntryKind kind)
    {
        _writer.Write(name);
        _writer.Write((byte)kind);
    }
}

/// <summary>The kind tag written before each entry.</summary>
internal enum EntryKind : byte
{
    Long = 1,
    Double = 2,
    OptionalDouble = 3,
    Bool = 4,
    String = 5,
    Tensor = 6,
}
