using System.IO.Hashing;

namespace LowRankOptim;

/// <summary>
/// A pass-through view of a stream that feeds every byte read or written through it into a CRC-32 (IEEE 802.3,
/// as zlib): how <see cref="StateWriter"/> and <see cref="StateReader"/> checksum each entry of a checkpoint
/// (format 2). Seeking passes through and never touches the checksum; the owner resets it at each entry.
/// </summary>
internal sealed class ChecksumStream(Stream inner) : Stream
{
    private readonly Crc32 _crc = new();

    /// <summary>The wrapped stream.</summary>
    public Stream Inner { get; } = inner;

    /// <summary>Starts a new checksum.</summary>
    public void Reset() => _crc.Reset();

    /// <summary>The CRC-32 of the bytes since the last <see cref="Reset"/>.</summary>
    public uint Value => _crc.GetCurrentHashAsUInt32();

    public override bool CanRead => Inner.CanRead;
    public override bool CanSeek => Inner.CanSeek;
    public override bool CanWrite => Inner.CanWrite;
    public override long Length => Inner.Length;

    public override long Position
    {
        get => Inner.Position;
        set => Inner.Position = value;
    }

    public override void Flush() => Inner.Flush();

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var read = Inner.Read(buffer);
        _crc.Append(buffer[..read]);
        return read;
    }

    public override int ReadByte()
    {
        var b = Inner.ReadByte();
        if (b >= 0) _crc.Append([(byte)b]);
        return b;
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        _crc.Append(buffer);
        Inner.Write(buffer);
    }

    public override void WriteByte(byte value)
    {
        _crc.Append([value]);
        Inner.WriteByte(value);
    }

    public override long Seek(long offset, SeekOrigin origin) => Inner.Seek(offset, origin);

    public override void SetLength(long value) => Inner.SetLength(value);

    /// <summary>Never closes the wrapped stream (its owner does).</summary>
    protected override void Dispose(bool disposing) { }
}
