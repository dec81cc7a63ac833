using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Kernels;

/// <summary>
/// A boolean tensor of N elements packed into ⌈N/8⌉ uint8 bytes, in TorchSharp ops (any device).
/// Layout, shared with the fused CPU kernel: flat (row-major) element e is bit e mod 8 (least significant
/// bit first) of byte ⌊e/8⌋; the padding bits of the last byte are 0.
/// </summary>
internal static class SignBits
{
    /// <summary>⌈<paramref name="count"/>/8⌉.</summary>
    public static long ByteCount(long count) => (count + 7) / 8;

    /// <summary>A zeroed (all false) packed buffer for <paramref name="count"/> elements, detached from dispose scopes.</summary>
    public static Tensor Zeros(long count, Device device) => zeros([ByteCount(count)], ScalarType.Byte, device).DetachFromDisposeScope();

    /// <summary>Packs <paramref name="flags"/> (bool, any shape, read in row-major order) into <paramref name="packed"/>.</summary>
    public static void PackInto(Tensor flags, Tensor packed)
    {
        using var scope = NewDisposeScope();
        var count = flags.numel();
        var bytes = ByteCount(count);
        var flat = flags.reshape(-1).to(ScalarType.Byte);
        var pad = bytes * 8 - count;
        if (pad > 0) flat = cat([flat, zeros([pad], ScalarType.Byte, flat.device)]);
        var weights = Shifts(flat.device);
        // Each row of 8 flags becomes Σ flag_b · 2^b; distinct powers of two never carry, so uint8 is exact.
        var value = flat.reshape(bytes, 8).bitwise_left_shift(weights).sum(1L, type: ScalarType.Byte);
        packed.copy_(value);
    }

    /// <summary>Unpacks the first <paramref name="count"/> flags of <paramref name="packed"/> into a new bool tensor of <paramref name="shape"/>.</summary>
    public static Tensor Unpack(Tensor packed, long count, long[] shape)
    {
        using var scope = NewDisposeScope();
        var bits = packed.unsqueeze(1).bitwise_right_shift(Shifts(packed.device)).bitwise_and(1);
        return bits.reshape(-1).narrow(0, 0, count).to(ScalarType.Bool).reshape(shape).MoveToOuterDisposeScope();
    }

    private static Tensor Shifts(Device device)
    {
        using var eight = 8.ToScalar();
        return arange(eight, ScalarType.Byte, device);
    }
}
