using LowRankOptim.Tests.Reference;
using LowRankOptim.Tests.Support;
using Xunit;

namespace LowRankOptim.Tests.Smmf;

/// <summary>
/// The `smmf` golden fixtures through each SMMF path. <see cref="GoldenFixtureTests"/> replays them with
/// the default (Auto: the fused kernel with the weight update fused); here the TorchSharp-ops reference
/// path and the fused kernel are each forced.
/// </summary>
public sealed class SmmfFixtureTests
{
    public static IEnumerable<object[]> Cases() =>
        GoldenFixtureTests.Cases().Where(c => (string)c[1] == "smmf");

    [Theory]
    [MemberData(nameof(Cases))]
    public void ReferencePathReproducesTheFixture(string name, string algorithm, string path) =>
        GoldenFixtureTests.Replay(name, algorithm, path, KernelPreference.Reference);

    [Theory]
    [MemberData(nameof(Cases))]
    public void FusedKernelReproducesTheFixture(string name, string algorithm, string path) =>
        GoldenFixtureTests.Replay(name, algorithm, path, KernelPreference.Cpu);

    /// <summary>Float64 parameters run the reference path in float64 (float32 factors, as the reference keeps them).</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void Float64ParametersReproduceTheFixture(string name, string algorithm, string path) =>
        GoldenFixtureTests.Replay(name, algorithm, path, KernelPreference.Auto, TorchSharp.torch.ScalarType.Float64);
}
