using LowRankOptim.Kernels;
using TorchSharp;

namespace LowRankOptim;

/// <summary>
/// How a state tensor is stored, separate from the dtype its component computes in (<see cref="WorkingType"/>). Dense
/// storage keeps the tensor as it is; compressed storage (<see cref="CompressedStorage"/>: <see cref="BlockwiseStorage"/>, <see cref="BFloat16Storage"/>)
/// keeps a smaller form and gives the component a dense workspace in the working dtype during a step, stored back after
/// it (see <see cref="TensorSlot"/>).
/// </summary>
public abstract record StateStorage
{
    /// <summary>Dense storage in <paramref name="dtype"/>.</summary>
    /// <param name="dtype">The element type.</param>
    public static DenseStorage Dense(torch.ScalarType dtype) => new(dtype);

    /// <summary>The dtype the component reads and writes (the workspace's, for compressed storage).</summary>
    public abstract torch.ScalarType WorkingType { get; }

    /// <summary>Exact bytes a tensor of <paramref name="shape"/> takes in this storage.</summary>
    /// <param name="shape">The tensor's shape.</param>
    public abstract long Bytes(long[] shape);
}

/// <summary>Dense storage: one element of <paramref name="DType"/> per entry.</summary>
/// <param name="DType">The stored dtype.</param>
public sealed record DenseStorage(torch.ScalarType DType) : StateStorage
{
    /// <inheritdoc />
    public override torch.ScalarType WorkingType => DType;

    /// <inheritdoc />
    public override long Bytes(long[] shape) => DTypes.Elements(shape) * DTypes.ElementSize(DType);
}

/// <summary>
/// Storage that keeps a smaller form of a tensor the component works on in <paramref name="Working"/>: rounded to it
/// (nearest, or stochastically with <paramref name="Seed"/>) when the slot stores the step's workspace.
/// </summary>
/// <param name="Working">The dtype of the workspace the component sees.</param>
/// <param name="Rounding">Nearest or stochastic rounding to the stored form.</param>
/// <param name="Seed">The seed of stochastic rounding (0 with nearest rounding).</param>
public abstract record CompressedStorage(torch.ScalarType Working, StateRounding Rounding, long Seed) : StateStorage
{
    /// <inheritdoc />
    public override torch.ScalarType WorkingType => Working;
}

/// <summary>
/// Block-wise quantized storage (<see cref="BlockFormat"/>: codes plus one float32 absmax per block) of a tensor the
/// component works on in <paramref name="Working"/>.
/// </summary>
/// <param name="Format">The codes' width, block size and map.</param>
/// <param name="Working">The dtype of the workspace the component sees.</param>
/// <param name="Rounding">Nearest or stochastic rounding to the codes.</param>
/// <param name="Seed">The seed of stochastic rounding (0 with nearest rounding).</param>
public sealed record BlockwiseStorage(BlockFormat Format, torch.ScalarType Working, StateRounding Rounding = StateRounding.Nearest, long Seed = 0)
    : CompressedStorage(Working, Rounding, Seed)
{
    /// <inheritdoc />
    public override long Bytes(long[] shape) => Format.Bytes(DTypes.Elements(shape));

    /// <inheritdoc />
    public override string ToString() => $"block-wise {Format.Bits}-bit ({Format.Map}, blocks of {Format.BlockSize}, {Rounding} rounding)";
}

/// <summary>bfloat16 storage of a tensor the component works on in <paramref name="Working"/> (float32 or float64).</summary>
/// <param name="Working">The dtype of the workspace the component sees.</param>
/// <param name="Rounding">Nearest-even or stochastic rounding to bfloat16.</param>
/// <param name="Seed">The seed of stochastic rounding (0 with nearest rounding).</param>
public sealed record BFloat16Storage(torch.ScalarType Working, StateRounding Rounding = StateRounding.Nearest, long Seed = 0)
    : CompressedStorage(Working, Rounding, Seed)
{
    /// <inheritdoc />
    public override long Bytes(long[] shape) => DTypes.Elements(shape) * 2;

    /// <inheritdoc />
    public override string ToString() => $"bfloat16 ({Rounding} rounding)";
}
