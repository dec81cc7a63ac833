using TorchSharp;

namespace LowRankOptim.Kernels;

/// <summary>How the state a kernel reads and writes is laid out in memory.</summary>
public enum StorageKind
{
    /// <summary>One element of the storage's dtype per state entry (float32, bfloat16, ...).</summary>
    Dense,
    /// <summary>Block-wise 8-bit codes and a float32 absmax per block (<see cref="BlockFormat"/>); the dtype is the working dtype.</summary>
    Blockwise8Bit,
    /// <summary>Block-wise 4-bit codes, two to a byte, and a float32 absmax per block; the dtype is the working dtype.</summary>
    Blockwise4Bit,
}

/// <summary>
/// The storage axis of a kernel registration: the layout (<see cref="Kind"/>) and the dtype the kernel works in
/// (<see cref="DType"/>). A kernel for another storage (say, block-wise 8-bit Adam moments) is registered under
/// its own value without changing the rules that select it.
/// </summary>
/// <param name="Kind">The layout.</param>
/// <param name="DType">
/// The dtype of the state and of the gradient the kernel works on (for dense storage, the state's dtype; for
/// SMMF, whose factors are always float32, the rule's working dtype).
/// </param>
public readonly record struct KernelStorage(StorageKind Kind, torch.ScalarType DType)
{
    /// <summary>Dense storage in <paramref name="dtype"/>.</summary>
    /// <param name="dtype">The state's dtype.</param>
    public static KernelStorage Dense(torch.ScalarType dtype) => new(StorageKind.Dense, dtype);

    /// <summary>Block-wise storage of <paramref name="bits"/> (8 or 4) bits for a rule working in <paramref name="dtype"/>.</summary>
    /// <param name="bits">8 or 4.</param>
    /// <param name="dtype">The working dtype (the gradient's).</param>
    public static KernelStorage Blockwise(int bits, torch.ScalarType dtype) =>
        new(bits == 8 ? StorageKind.Blockwise8Bit : bits == 4 ? StorageKind.Blockwise4Bit : throw new ArgumentOutOfRangeException(nameof(bits), bits, "must be 8 or 4."), dtype);

    /// <summary>The dtype's name (Float32, BFloat16, ...), preceded by the kind when it is not dense.</summary>
    public override string ToString() => Kind == StorageKind.Dense ? $"{DType}" : $"{Kind} {DType}";

    /// <summary>The lower-case form used in requirements: "float32", "bfloat16", "float64", or "kind dtype".</summary>
    internal string Describe()
    {
        var dtype = DType.ToString().ToLowerInvariant();
        return Kind == StorageKind.Dense ? dtype : $"{Kind} {dtype}";
    }

    /// <summary>Bytes of one element of <see cref="DType"/> (8 for dtypes the kernels never see).</summary>
    internal long ElementSize => DType switch
    {
        torch.ScalarType.Byte or torch.ScalarType.Int8 or torch.ScalarType.Bool => 1,
        torch.ScalarType.BFloat16 or torch.ScalarType.Float16 or torch.ScalarType.Int16 => 2,
        torch.ScalarType.Float32 or torch.ScalarType.Int32 => 4,
        torch.ScalarType.ComplexFloat64 => 16,
        _ => 8,
    };
}
