using TorchSharp;

namespace LowRankOptim;

/// <summary>Sizes of tensors computed from shapes and dtypes, without allocating.</summary>
internal static class DTypes
{
    /// <summary>Bytes per element of a floating-point or integer dtype.</summary>
    public static long ElementSize(torch.ScalarType dtype) => dtype switch
    {
        torch.ScalarType.Float64 or torch.ScalarType.Int64 or torch.ScalarType.ComplexFloat32 => 8,
        torch.ScalarType.Float32 or torch.ScalarType.Int32 => 4,
        torch.ScalarType.BFloat16 or torch.ScalarType.Float16 or torch.ScalarType.Int16 => 2,
        torch.ScalarType.Byte or torch.ScalarType.Int8 or torch.ScalarType.Bool => 1,
        _ => throw new NotSupportedException($"no element size known for {dtype}"),
    };

    /// <summary>The number of elements of a shape (1 for a scalar).</summary>
    public static long Elements(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);
}
