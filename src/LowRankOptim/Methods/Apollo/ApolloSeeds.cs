using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The reference's random matrices and seed chain, drawn with libtorch's CPU generator exactly as
/// <c>apollo_torch/random_projector.py</c> does (bit-identical to PyTorch 1.13 on x86-64; docs/algorithms/apollo.md).
/// </summary>
internal static class ApolloSeeds
{
    /// <summary>Gaussian/√r of <paramref name="shape"/> from <paramref name="seed"/>, drawn in float32 on the CPU, then cast and moved.</summary>
    public static Tensor Gaussian(long seed, long[] shape, long rank, ScalarType dtype, Device device)
    {
        using var generator = new Generator(unchecked((ulong)seed), CPU);
        using var z = randn(shape, ScalarType.Float32, CPU, generator: generator);
        using var root = Math.Sqrt(rank).ToScalar();
        var p = z.div(root);
        return dtype == ScalarType.Float32 && device.type == DeviceType.CPU ? p : p.to(dtype, device);
    }

    /// <summary>next_seed: the 15th of 15 random integers in [0, 2⁶³ − 1) drawn from <paramref name="seed"/>.</summary>
    public static long Next(long seed)
    {
        using var generator = new Generator(unchecked((ulong)seed), CPU);
        using var draws = randint(0, long.MaxValue, [15], ScalarType.Int64, CPU, generator: generator);
        return draws[14].item<long>();
    }
}
