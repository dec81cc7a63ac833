using LowRankOptim.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The stored form of a tensor with compressed storage (<see cref="BlockwiseStorage"/>: codes and absmax;
/// <see cref="BFloat16Storage"/>: a bfloat16 tensor). <see cref="TensorSlot"/> decodes it into a dense workspace for the
/// component and encodes the workspace back after the step, through the reference path here (TorchSharp ops); a fused
/// kernel may read and write the stored form directly instead.
/// </summary>
internal abstract class CompressedState : IDisposable
{
    /// <summary>The stored form of zeros (decodes to exactly 0).</summary>
    public static CompressedState Zeros(StateStorage storage, long[] shape, Device device) => storage switch
    {
        BlockwiseStorage b => new BlockwiseState(
            zeros(b.Format.CodeBytes(DTypes.Elements(shape)), ScalarType.Byte, device).DetachFromDisposeScope(),
            zeros(b.Format.Blocks(DTypes.Elements(shape)), ScalarType.Float32, device).DetachFromDisposeScope(), b.Format),
        BFloat16Storage => new BFloat16State(zeros(shape, ScalarType.BFloat16, device).DetachFromDisposeScope()),
        _ => throw new ArgumentException($"{storage} is not a compressed storage.", nameof(storage)),
    };

    /// <summary>Exact bytes of the stored form.</summary>
    public abstract long Bytes { get; }

    /// <summary>The values as a new dense tensor of <paramref name="shape"/> and <paramref name="dtype"/>.</summary>
    public abstract Tensor Decode(long[] shape, ScalarType dtype);

    /// <summary>Stores <paramref name="values"/> (overwriting the stored form).</summary>
    public abstract void Encode(Tensor values, Rounding rounding);

    /// <summary>Writes the stored form as the entries of <paramref name="name"/>.</summary>
    public abstract void Save(StateWriter writer, string name);

    /// <summary>Moves the stored tensors to <paramref name="device"/>.</summary>
    public abstract void MoveTo(Device device);

    /// <inheritdoc />
    public abstract void Dispose();

    /// <summary>Writes the entries of an absent tensor of <paramref name="storage"/>.</summary>
    public static void SaveAbsent(StateWriter writer, string name, StateStorage storage)
    {
        writer.Tensor(name, null);
        if (storage is BlockwiseStorage) writer.Tensor(AbsmaxName(name), null);
    }

    /// <summary>Checks that the entries of an unused tensor of <paramref name="storage"/> are absent.</summary>
    public static void LoadAbsent(StateReader reader, string name, StateStorage storage)
    {
        reader.AbsentTensor(name);
        if (storage is BlockwiseStorage) reader.AbsentTensor(AbsmaxName(name));
    }

    /// <summary>Reads what <see cref="Save"/> wrote for <paramref name="entry"/> (null when absent), checking sizes, dtypes and values.</summary>
    public static CompressedState? Load(StateReader reader, TensorEntry entry, Device device)
    {
        var count = DTypes.Elements(entry.Shape);
        switch (entry.Storage)
        {
            case BlockwiseStorage b:
                var codes = reader.Tensor(entry.Name, [b.Format.CodeBytes(count)], ScalarType.Byte, device, TensorValues.Any);
                var absmax = reader.Tensor(AbsmaxName(entry.Name), [b.Format.Blocks(count)], ScalarType.Float32, device, TensorValues.NonNegative);
                if ((codes is null) != (absmax is null))
                {
                    codes?.Dispose();
                    absmax?.Dispose();
                    throw new InvalidDataException($"{reader.Context}: entry '{entry.Name}' and its '{AbsmaxName(entry.Name)}' must both hold a tensor or both be absent.");
                }
                return codes is null ? null : new BlockwiseState(codes.DetachFromDisposeScope(), absmax!.DetachFromDisposeScope(), b.Format);
            case BFloat16Storage:
                var values = reader.Tensor(entry.Name, entry.Shape, ScalarType.BFloat16, device, entry.Values);
                return values is null ? null : new BFloat16State(values.DetachFromDisposeScope());
            default:
                throw new ArgumentException($"{entry.Storage} is not a compressed storage.", nameof(entry));
        }
    }

    /// <summary>The checkpoint entry of a block-wise tensor's scales.</summary>
    public static string AbsmaxName(string name) => name + ".absmax";
}

/// <summary>Block-wise codes and absmax (<see cref="BlockQuantizer"/>).</summary>
internal sealed class BlockwiseState(Tensor codes, Tensor absmax, BlockFormat format) : CompressedState
{
    /// <summary>The codes (uint8; 4-bit codes packed two to a byte).</summary>
    public Tensor Codes { get; private set; } = codes;

    /// <summary>One float32 absmax (scale) per block.</summary>
    public Tensor Absmax { get; private set; } = absmax;

    /// <summary>The format.</summary>
    public BlockFormat Format { get; } = format;

    public override long Bytes => Codes.numel() + 4 * Absmax.numel();

    public override Tensor Decode(long[] shape, ScalarType dtype) => BlockQuantizer.Dequantize(Codes, Absmax, Format, shape, dtype);

    public override void Encode(Tensor values, Rounding rounding) => BlockQuantizer.Quantize(values, Codes, Absmax, Format, rounding);

    public override void Save(StateWriter writer, string name)
    {
        writer.Tensor(name, Codes);
        writer.Tensor(AbsmaxName(name), Absmax);
    }

    public override void MoveTo(Device device)
    {
        if (Codes.device == device) return;
        var (codes, absmax) = (Codes.to(device).DetachFromDisposeScope(), Absmax.to(device).DetachFromDisposeScope());
        Dispose();
        (Codes, Absmax) = (codes, absmax);
    }

    public override void Dispose()
    {
        Codes.Dispose();
        Absmax.Dispose();
    }
}

/// <summary>A bfloat16 copy of a float32 (or float64) tensor.</summary>
internal sealed class BFloat16State(Tensor values) : CompressedState
{
    /// <summary>The bfloat16 values.</summary>
    public Tensor Values { get; private set; } = values;

    public override long Bytes => Values.numel() * 2;

    public override Tensor Decode(long[] shape, ScalarType dtype) => Values.to(dtype, copy: true);

    public override void Encode(Tensor values, Rounding rounding)
    {
        using var rounded = BlockQuantizer.ToBFloat16(values, rounding);
        Values.copy_(rounded);
    }

    public override void Save(StateWriter writer, string name) => writer.Tensor(name, Values);

    public override void MoveTo(Device device)
    {
        if (Values.device == device) return;
        var moved = Values.to(device).DetachFromDisposeScope();
        Values.Dispose();
        Values = moved;
    }

    public override void Dispose() => Values.Dispose();
}
