using System.Text;
using TorchSharp;

namespace LowRankOptim;

/// <summary>
/// Writes optimizer state as named, typed entries inside TorchSharp's <c>save_state_dict</c> stream, so a
/// load can say which entry was expected and what was found instead of failing on a byte offset. The optimizer
/// writes checkpoint format 2, where every entry is followed by the CRC-32 of its bytes (name, kind, value), so a
/// load finds a corrupted entry and names it; a writer made with the public constructor writes format 1 entries
/// (no checksums), as earlier releases did.
/// </summary>
public sealed class StateWriter
{
    private readonly BinaryWriter _raw;
    private readonly ChecksumStream? _checksum;
    private readonly BinaryWriter _writer;

    /// <summary>Wraps a writer positioned where the entries go (format 1: no checksums).</summary>
    /// <param name="writer">The stream writer.</param>
    public StateWriter(BinaryWriter writer) : this(writer, checksums: false) { }

    /// <summary>Wraps a writer; with <paramref name="checksums"/> every entry is followed by its CRC-32 (format 2).</summary>
    internal StateWriter(BinaryWriter writer, bool checksums)
    {
        ArgumentNullException.ThrowIfNull(writer);
        _raw = writer;
        if (!checksums)
        {
            _writer = writer;
            return;
        }
        _checksum = new ChecksumStream(writer.BaseStream); // BaseStream flushes the writer first
        _writer = new BinaryWriter(_checksum, Encoding.UTF8, leaveOpen: true);
    }

    /// <summary>True when every entry carries a checksum (format 2).</summary>
    internal bool Checksums => _checksum is not null;

    /// <summary>Writes a 64-bit integer entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    /// <param name="value">The value.</param>
    public void Long(string name, long value) { Header(name, EntryKind.Long); _writer.Write(value); End(); }

    /// <summary>Writes a double entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    /// <param name="value">The value.</param>
    public void Double(string name, double value) { Header(name, EntryKind.Double); _writer.Write(value); End(); }

    /// <summary>Writes an optional double entry.</summary>
    /// <param name="name">The entry's name (read back by it).</param>
    /// <param name="value">The value, or null.</param>
    public void OptionalDouble(string name, double? value)
    {
        Header(name, EntryKind.OptionalDouble);
        _writer.Write(value.HasValue);
        if (value.HasValue) _writer.Write(value.Value);
        End();
    }

    /// <summary>Writes a boolean entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    /// <param name="value">The value.</param>
    public void Bool(string name, bool value) { Header(name, EntryKind.Bool); _writer.Write(value); End(); }

    /// <summary>Writes a string entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    /// <param name="value">The value.</param>
    public void String(string name, string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (Encoding.UTF8.GetByteCount(value) > StateReader.MaxStringBytes)
            throw new ArgumentException($"entry '{name}': a string entry holds at most {StateReader.MaxStringBytes} bytes.", nameof(value));
        Header(name, EntryKind.String);
        _writer.Write(value);
        End();
    }

    /// <summary>Writes a tensor entry (TorchSharp's tensor format); null is written as absent.</summary>
    /// <param name="name">The entry's name (read back by it).</param>
    /// <param name="value">The tensor, or null for an absent one.</param>
    public void Tensor(string name, torch.Tensor? value)
    {
        Header(name, EntryKind.Tensor);
        _writer.Write(value is not null);
        if (value is not null)
        {
            if (value.dim() > StateReader.MaxDimensions)
                throw new ArgumentException($"entry '{name}': a state tensor has at most {StateReader.MaxDimensions} dimensions.", nameof(value));
            using var cpu = value.device_type == DeviceType.CPU ? null : value.cpu();
            (cpu ?? value).Save(_writer);
        }
        End();
    }

    private void Header(string name, EntryKind kind)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (Encoding.UTF8.GetByteCount(name) > StateReader.MaxNameBytes)
            throw new ArgumentException($"entry names hold at most {StateReader.MaxNameBytes} bytes: '{name}'.", nameof(name));
        _checksum?.Reset();
        _writer.Write(name);
        _writer.Write((byte)kind);
    }

    /// <summary>Format 2: the entry's CRC-32 (little-endian), itself not checksummed.</summary>
    private void End()
    {
        if (_checksum is null) return;
        _writer.Flush();
        _raw.Write(_checksum.Value);
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
