using TorchSharp;

namespace LowRankOptim;

/// <summary>
/// How a state tensor is stored, separate from the dtype a rule computes in. Dense storage of a dtype is the
/// one format today; block-wise quantized formats are further subclasses with their own byte formula.
/// </summary>
public abstract record StateStorage
{
    /// <summary>Dense storage in <paramref name="dtype"/>.</summary>
    /// <param name="dtype">The element type.</param>
    public static DenseStorage Dense(torch.ScalarType dtype) => new(dtype);

    /// <summary>Exact bytes a tensor of <paramref name="shape"/> takes in this storage.</summary>
    /// <param name="shape">The tensor's shape.</param>
    public abstract long Bytes(long[] shape);
}

/// <summary>Dense storage: one element of <paramref name="DType"/> per entry.</summary>
/// <param name="DType">The stored dtype.</param>
public sealed record DenseStorage(torch.ScalarType DType) : StateStorage
{
    /// <inheritdoc />
    public override long Bytes(long[] shape) => DTypes.Elements(shape) * DTypes.ElementSize(DType);
}
