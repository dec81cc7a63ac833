using System.Text;
using TorchSharp;

namespace LowRankOptim;

/// <summary>What the values of a loaded state tensor must satisfy (checked before the tensor is used).</summary>
public enum TensorValues
{
    /// <summary>Anything (integer indices, packed bits; their components check them).</summary>
    Any,
    /// <summary>Finite (no NaN or ±∞): first moments, bases.</summary>
    Finite,
    /// <summary>Finite and ≥ 0: second moments and their factors, accumulated magnitudes, norms.</summary>
    NonNegative,
}

/// <summary>
/// Reads entries written by <see cref="StateWriter"/>, checking each entry's name and kind, and each
/// tensor's dtype and shape, against what the reader expects. Every failure is an
/// <see cref="InvalidDataException"/> that names the place (<see cref="Context"/>), the entry, what was
/// expected and what was found. Lengths, dtypes and dimensions read from the stream are bounded and compared
/// with what is expected before anything is allocated for them. In checkpoint format 2 (switched on by
/// <see cref="FormatVersion"/>) every entry's CRC-32 is verified before its value is used.
/// </summary>
public sealed class StateReader
{
    /// <summary>The longest entry name a reader accepts, in UTF-8 bytes.</summary>
    public const int MaxNameBytes = 256;

    /// <summary>The longest string entry a reader accepts, in UTF-8 bytes.</summary>
    public const int MaxStringBytes = 4096;

    /// <summary>The most dimensions a state tensor may have.</summary>
    public const int MaxDimensions = 64;

    private readonly ChecksumStream _stream;
    private readonly BinaryReader _reader;

    /// <summary>Wraps a reader positioned at the first entry.</summary>
    /// <param name="reader">The stream reader.</param>
    /// <param name="context">Where this state belongs, for error messages, e.g. "parameter 3 (shape [64, 32])".</param>
    public StateReader(BinaryReader reader, string context)
    {
        ArgumentNullException.ThrowIfNull(reader);
        _stream = new ChecksumStream(reader.BaseStream);
        _reader = new BinaryReader(_stream, Encoding.UTF8, leaveOpen: true);
        Context = context;
    }

    /// <summary>Where this state belongs, used in error messages.</summary>
    public string Context { get; }

    /// <summary>True once a format-2 version entry was read: every later entry carries a checksum.</summary>
    internal bool Checksums { get; private set; }

    /// <summary>Reads a 64-bit integer entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    public long Long(string name) => Entry(name, EntryKind.Long, () => _reader.ReadInt64());

    /// <summary>Reads a double entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    public double Double(string name) => Entry(name, EntryKind.Double, () => _reader.ReadDouble());

    /// <summary>Reads an optional double entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    public double? OptionalDouble(string name) => Entry(name, EntryKind.OptionalDouble, () => Flag(name) ? _reader.ReadDouble() : (double?)null);

    /// <summary>Reads a boolean entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    public bool Bool(string name) => Entry(name, EntryKind.Bool, () => Flag(name));

    /// <summary>Reads a string entry.</summary>
    /// <param name="name">The entry's name, as written.</param>
    public string String(string name) => Entry(name, EntryKind.String, () => BoundedString(name, MaxStringBytes));

    /// <summary>
    /// Reads a string entry whose checksum is reported, not enforced: for a kind name, which the caller first looks
    /// up (an unknown kind is the more useful message) and then refuses when <c>Intact</c> is false.
    /// </summary>
    internal (string Value, bool Intact) StringUnverified(string name)
    {
        Expect(name, EntryKind.String);
        var value = Guard(name, () => BoundedString(name, MaxStringBytes));
        return (value, EndEntry(name, enforce: false));
    }

    /// <summary>The message for an entry whose checksum does not match.</summary>
    internal string ChecksumFailure(string name) =>
        $"{Context}: entry '{name}' fails its checksum (CRC-32): the file is corrupted.";

    /// <summary>
    /// Reads the format-version entry <paramref name="name"/>, which must hold 1 (no checksums), 2 (every entry,
    /// this one included, followed by its CRC-32), 3 (as 2; the group options add the moment storage) or, up to
    /// <paramref name="newest"/>, a later format of the file part being read (4: the group options add the weight
    /// rounding), and switches checksum verification on from format 2.
    /// </summary>
    /// <param name="name">The entry's name.</param>
    /// <param name="newest">The newest format this release writes for the part being read.</param>
    internal long FormatVersion(string name, long newest = 3)
    {
        Expect(name, EntryKind.Long);
        var version = Guard(name, () => _reader.ReadInt64());
        if (version < 1 || version > newest)
            throw new InvalidDataException(
                $"{Context}: entry '{name}' holds {version}; this release reads formats 1 to {newest} (a newer release wrote the file, or it is corrupted).");
        Checksums = version >= 2;
        EndEntry(name, enforce: true);
        return version;
    }

    /// <summary>
    /// Skips a long entry named <paramref name="name"/> when it is the next one (entries that older files hold
    /// and this version no longer reads); otherwise leaves the position unchanged. Needs a seekable stream.
    /// Files with checksums (format 2) never hold such entries.
    /// </summary>
    /// <param name="name">The entry's name, as written.</param>
    public void SkipLongIfNext(string name)
    {
        if (Checksums) return;
        var stream = _reader.BaseStream;
        if (!stream.CanSeek) throw new NotSupportedException($"{Context}: loading needs a seekable stream.");
        var start = stream.Position;
        try
        {
            if (BoundedString(name, MaxNameBytes) == name && (EntryKind)_reader.ReadByte() == EntryKind.Long)
            {
                _reader.ReadInt64();
                return;
            }
        }
        catch (Exception e) when (e is EndOfStreamException or InvalidDataException) { }
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

    /// <summary>Reads a long entry that counts something (steps, refreshes), which must be ≥ 0.</summary>
    /// <param name="name">The entry's name, as written.</param>
    public long Count(string name)
    {
        var value = Long(name);
        return value >= 0 ? value : throw new InvalidDataException($"{Context}: entry '{name}' holds {value}; a count must be >= 0.");
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
    public torch.Tensor? Tensor(string name, long[] shape, torch.ScalarType dtype, torch.Device device) =>
        Tensor(name, shape, dtype, device, TensorValues.Any);

    /// <summary>
    /// Reads a tensor entry as <see cref="Tensor(string, long[], torch.ScalarType, torch.Device)"/> does and checks its
    /// values against <paramref name="values"/>. The saved dtype and shape are compared with the expected ones before
    /// anything is allocated: a tensor is only ever allocated with the expected shape.
    /// </summary>
    /// <exception cref="InvalidDataException">The entry is not the expected tensor, is cut short, fails its checksum or
    /// holds values outside <paramref name="values"/>.</exception>
    /// <param name="name">The entry's name, as written.</param>
    /// <param name="shape">The shape it must have.</param>
    /// <param name="dtype">The dtype of the new tensor.</param>
    /// <param name="device">The device of the new tensor.</param>
    /// <param name="values">What its values must satisfy.</param>
    public torch.Tensor? Tensor(string name, long[] shape, torch.ScalarType dtype, torch.Device device, TensorValues values)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(device);
        Expect(name, EntryKind.Tensor);
        if (!Guard(name, () => Flag(name)))
        {
            EndEntry(name, enforce: true);
            return null;
        }
        ReadTensorHeader(name, shape, dtype);
        var loaded = torch.empty(shape, dtype, torch.CPU).DetachFromDisposeScope();
        try
        {
            Guard(name, () =>
            {
                loaded.ReadBytesFromStream(_stream, 1 << 16);
                return true;
            });
            EndEntry(name, enforce: true);
            CheckValues(name, loaded, values);
            if (device.type == DeviceType.CPU) return loaded;
            using (loaded) return loaded.to(device).DetachFromDisposeScope();
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
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
        if (!Guard(name, () => Flag(name)))
        {
            EndEntry(name, enforce: true);
            return;
        }
        throw new InvalidDataException($"{Context}: entry '{name}' holds a tensor in the saved state, but this configuration keeps none.");
    }

    /// <summary>Formats a shape as [a, b, c].</summary>
    /// <param name="shape">The shape.</param>
    public static string Format(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";

    /// <summary>
    /// TorchSharp's tensor header (LEB128 dtype, dimension count, sizes), each value bounded and compared with the
    /// expected shape and dtype before the next is read.
    /// </summary>
    private void ReadTensorHeader(string name, long[] shape, torch.ScalarType dtype)
    {
        var code = Leb128(name);
        var ndim = Leb128(name);
        if (ndim > MaxDimensions)
            throw Mismatch(name, "shape " + Format(shape), $"a tensor of {ndim} dimensions (at most {MaxDimensions} are allowed)");
        var saved = new long[ndim];
        for (var i = 0; i < ndim; i++) saved[i] = Leb128(name);
        if (!saved.SequenceEqual(shape)) throw Mismatch(name, "shape " + Format(shape), "shape " + Format(saved));
        if (code != (long)dtype)
            throw Mismatch(name, "dtype " + dtype, code <= 127 ? "dtype " + (torch.ScalarType)code : $"dtype code {code}");
    }

    /// <summary>An unsigned LEB128 value of at most 63 bits (TorchSharp's tensor header).</summary>
    private long Leb128(string name) => Guard(name, () =>
    {
        long value = 0;
        for (var shift = 0; shift < 63; shift += 7)
        {
            long b = _reader.ReadByte();
            value |= (b & 0x7f) << shift;
            if ((b & 0x80) == 0)
                return value >= 0 ? value : throw new InvalidDataException($"{Context}: entry '{name}' holds a tensor header value out of range.");
        }
        throw new InvalidDataException($"{Context}: entry '{name}' holds a tensor header value longer than 9 bytes.");
    });

    private static void CheckValues(string name, torch.Tensor t, TensorValues values, string context)
    {
        if (values == TensorValues.Any || !t.is_floating_point() || t.numel() == 0) return;
        using var scope = torch.NewDisposeScope();
        if (!t.isfinite().all().item<bool>())
            throw new InvalidDataException($"{context}: entry '{name}' holds non-finite values (NaN or infinity); the saved state is corrupted.");
        using var zero = 0.ToScalar();
        if (values == TensorValues.NonNegative && t.lt(zero).any().item<bool>())
            throw new InvalidDataException($"{context}: entry '{name}' holds negative values, but it must be >= 0 (a second moment or magnitude); the saved state is corrupted.");
    }

    private void CheckValues(string name, torch.Tensor t, TensorValues values) => CheckValues(name, t, values, Context);

    /// <summary>A boolean stored as one byte, which must be 0 or 1.</summary>
    private bool Flag(string name)
    {
        var b = _reader.ReadByte();
        return b switch
        {
            0 => false,
            1 => true,
            _ => throw new InvalidDataException($"{Context}: entry '{name}' holds the byte {b} where a boolean (0 or 1) was expected."),
        };
    }

    /// <summary>A length-prefixed UTF-8 string (BinaryWriter's format) of at most <paramref name="maxBytes"/> bytes.</summary>
    private string BoundedString(string name, int maxBytes)
    {
        int length;
        try
        {
            length = _reader.Read7BitEncodedInt();
        }
        catch (FormatException e)
        {
            throw new InvalidDataException($"{Context}: a malformed string length where entry '{name}' was expected.", e);
        }
        if (length < 0 || length > maxBytes)
            throw new InvalidDataException($"{Context}: a string of {length} bytes where entry '{name}' was expected (at most {maxBytes}).");
        var bytes = _reader.ReadBytes(length);
        if (bytes.Length != length) throw new EndOfStreamException();
        return Encoding.UTF8.GetString(bytes);
    }

    private T Entry<T>(string name, EntryKind kind, Func<T> read)
    {
        Expect(name, kind);
        var value = Guard(name, read);
        EndEntry(name, enforce: true);
        return value;
    }

    /// <summary>Runs a read of entry <paramref name="name"/>, turning the end of the stream into an <see cref="InvalidDataException"/> that names it.</summary>
    private T Guard<T>(string name, Func<T> read)
    {
        try
        {
            return read();
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{Context}: the stream ended inside entry '{name}'.", e);
        }
    }

    /// <summary>Format 2: reads the entry's CRC-32 and compares it; returns false (or throws when <paramref name="enforce"/>) on a mismatch.</summary>
    private bool EndEntry(string name, bool enforce)
    {
        if (!Checksums) return true;
        var computed = _stream.Value;
        var stored = Guard(name, () =>
        {
            Span<byte> bytes = stackalloc byte[4];
            _stream.Inner.ReadExactly(bytes);
            return System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(bytes);
        });
        if (stored == computed) return true;
        return enforce ? throw new InvalidDataException(ChecksumFailure(name)) : false;
    }

    private void Expect(string name, EntryKind kind)
    {
        string foundName;
        EntryKind foundKind;
        _stream.Reset();
        try
        {
            foundName = BoundedString(name, MaxNameBytes);
            foundKind = (EntryKind)_reader.ReadByte();
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{Context}: the stream ended where entry '{name}' was expected.", e);
        }
        if (foundName != name || foundKind != kind)
            throw new InvalidDataException(
                $"{Context}: expected entry '{name}' ({kind}) but found '{foundName}' ({foundKind}); " +
                "the state was saved by a different optimizer configuration or version, or the file is corrupted.");
    }

    private InvalidDataException Mismatch(string name, string expected, string found) =>
        new($"{Context}: entry '{name}' must have {expected} but the saved state has {found}.");
}
