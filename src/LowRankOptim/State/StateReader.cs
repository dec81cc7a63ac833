using TorchSharp;

namespace LowRankOptim;

/// <summary>
/// Reads entries written by <see cref="StateWriter"/>, checking each entry's name and kind, and each
/// tensor's dtype and shape, against what the reader expects. Every failure is an
/// <see cref="InvalidDataException"/> that names the place (<see cref="Context"/>), the entry, what was
/// expected and what was found.
/// </summary>
public sealed class StateReader
{
    private readonly BinaryReader _reader;

    /// <summary>Wraps a reader positioned at the first entry.</summary>
    /// <param name="reader">The stream reader.</param>
    /// <param name="context">Where this state belongs, for error messages, e.g. "parameter 3 (shape [64, 32])".</param>
    public StateReader(BinaryReader reader, string context)
    {
        _reader = reader;
        Context = context;
    }

    /// <summary>Where this state belongs, used in error messages.</summary>
    public string Context { get; }

    /// <summary>Reads a 64-bit integer entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    public long Long(string name) { Expect(name, EntryKind.Long); return _reader.ReadInt64(); }

    /// <summary>Reads a double entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    public double Double(string name) { Expect(name, EntryKind.Double); return _reader.ReadDouble(); }

    /// <summary>Reads an optional double entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    public double? OptionalDouble(string name)
    {
        Expect(name, EntryKind.OptionalDouble);
        return _reader.ReadBoolean() ? _reader.ReadDouble() : null;
    }

    /// <summary>Reads a boolean entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    public bool Bool(string name) { Expect(name, EntryKind.Bool); return _reader.ReadBoolean(); }

    /// <summary>Reads a string entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    public string String(string name) { Expect(name, EntryKind.String); return _reader.ReadString(); }

    /// <summary>
    /// Skips a long entry named <paramref name="name"/> when it is the next one (entries that older files hold
    /// and this version no longer reads); otherwise leaves the position unchanged. Needs a seekable stream.
    /// </summary>
    /// <param name="name">The entry's name, as written.</param>
    public void SkipLongIfNext(string name)
    {
        var stream = _reader.BaseStream;
        if (!stream.CanSeek) throw new NotSupportedException($"{Context}: loading needs a seekable stream.");
        var start = stream.Position;
        try
        {
            if (_reader.ReadString() == name && (EntryKind)_reader.ReadByte() == EntryKind.Long)
            {
                _reader.ReadInt64();
                return;
            }
        }
        catch (EndOfStreamException) { }
        stream.Position = start;
    }

    /// <summary>Reads a long entry and checks it equals <paramref name="expected"/>.</summary>
    /// <param name="name">The entry's name, as written.</param>
    /// <param name="expected">The value it must have.</param>
    public void ExpectLong(string name, long expected)
    {
        var found = Long(name);
        if (found != expected) throw Mismatch(name, expected.ToString(), found.ToString());
    }

    /// <summary>
    /// Reads a tensor entry into a new tensor of <paramref name="dtype"/> on <paramref name="device"/>,
    /// detached from any dispose scope; null when the entry was written as absent.
    /// </summary>
    /// <exception cref="InvalidDataException">The saved tensor's shape or dtype differs from the expected one.</exception>
    /// <param name="name">The entry's name, as written.</param>
    /// <param name="shape">The shape it must have.</param>
    /// <param name="dtype">The dtype of the new tensor.</param>
    /// <param name="device">The device of the new tensor.</param>
    public torch.Tensor? Tensor(string name, long[] shape, torch.ScalarType dtype, torch.Device device)
    {
        Expect(name, EntryKind.Tensor);
        if (!_reader.ReadBoolean()) return null;
        using var loaded = TensorExtensionMethods.Load(_reader);
        if (!loaded.shape.SequenceEqual(shape))
            throw Mismatch(name, "shape " + Format(shape), "shape " + Format(loaded.shape));
        if (loaded.dtype != dtype)
            throw Mismatch(name, "dtype " + dtype, "dtype " + loaded.dtype);
        return loaded.to(device, copy: true).DetachFromDisposeScope();
    }

    /// <summary>Reads a tensor entry that must be present.</summary>
    /// <param name="name">The entry's name, as written.</param>
    /// <param name="shape">The shape it must have.</param>
    /// <param name="dtype">The dtype of the new tensor.</param>
    /// <param name="device">The device of the new tensor.</param>
    public torch.Tensor RequiredTensor(string name, long[] shape, torch.ScalarType dtype, torch.Device device) =>
        Tensor(name, shape, dtype, device) ?? throw Mismatch(name, "a tensor", "an absent tensor");

    /// <summary>Reads a tensor entry that this configuration does not keep, so it must have been saved as absent.</summary>
    /// <param name="name">The entry's name, as written.</param>
    public void AbsentTensor(string name)
    {
        Expect(name, EntryKind.Tensor);
        if (!_reader.ReadBoolean()) return;
        TensorExtensionMethods.Load(_reader).Dispose();
        throw new InvalidDataException($"{Context}: entry '{name}' holds a tensor in the saved state, but this configuration keeps none.");
    }

    /// <summary>Formats a shape as [a, b, c].</summary>
    /// <param name="shape">The shape.</param>
    public static string Format(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";

    private void Expect(string name, EntryKind kind)
    {
        string foundName;
        EntryKind foundKind;
        try
        {
            foundName = _reader.ReadString();
            foundKind = (EntryKind)_reader.ReadByte();
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{Context}: the stream ended where entry '{name}' was expected.", e);
        }
        if (foundName != name || foundKind != kind)
            throw new InvalidDataException(
                $"{Context}: expected entry '{name}' ({kind}) but found '{foundName}' ({foundKind}); " +
                "the state was saved by a different optimizer configuration or version.");
    }

    private InvalidDataException Mismatch(string name, string expected, string found) =>
        new($"{Context}: entry '{name}' must have {expected} but the saved state has {found}.");
}
