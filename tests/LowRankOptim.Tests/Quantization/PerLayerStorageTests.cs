using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.PerLayer;
using LowRankOptim.Tests.Support;
using Xunit;

namespace LowRankOptim.Tests.Quantization;

/// <summary>
/// The per-layer mode (gradients released during backward) with compressed moments: the moments are stored back per
/// layer during backward or at step(), and the run equals the standard path's with the same storage. (bfloat16: the
/// per-layer model's layers are too small for whole 128- or 256-entry blocks; the block-wise formats store through the
/// same slot code, <see cref="MomentStorageConformanceTests"/>.)
/// </summary>
public sealed class PerLayerStorageTests
{
    public static TheoryData<string, string> Cases() => new()
    {
        { "adamw", "bf16" }, { "galore-std", "bf16" }, { "osd-adamw", "bf16-stochastic" }, { "galore-plus-heads-residual", "bf16" },
    };

    private static readonly Dictionary<string, MomentStorage> Storages = new()
    {
        ["bf16"] = new(MomentFormat.BFloat16),
        ["bf16-stochastic"] = new(MomentFormat.BFloat16, StateRounding.Stochastic, Seed: 2),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void PerLayerModeEqualsTheStandardPathWithCompressedMoments(string method, string storage)
    {
        var row = MethodCatalog.Get(method);
        var compressed = new CatalogMethod($"{method}-{storage}", m => MomentStorageConformanceTests.Build(row, m, Storages[storage]));
        foreach (var (k, clip) in new (int, double?)[] { (1, null), (4, 0.5) })
        {
            var outcome = PerLayerRuns.Compare(compressed, k, clip, steps: 12);
            outcome.PerLayerSteps.Should().Equal(outcome.Steps);
            outcome.WorstRelativeDifference.Should().BeLessThan(1e-6, $"{method} / {storage}, k = {k}, clip = {clip}: {outcome.WorstParameter}");
        }
    }
}
