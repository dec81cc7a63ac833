using FluentAssertions;
using LowRankOptim.Kernels;
using Xunit;

namespace LowRankOptim.Tests.Kernels;

/// <summary>
/// <see cref="CodeLines"/>, the 8-bit nearest codes as lines: wherever a lane is sure its code is the search's
/// (<see cref="CodeSearch.FindNearest"/>), at and around every threshold and map value, at the edges, and on random floats
/// of every magnitude; and the lines exist for both 8-bit maps and are sure almost everywhere, so that the AVX-512 kernel
/// really takes them (the kernel tests hold its codes, sure and unsure lanes alike, to the reference).
/// </summary>
public sealed class CodeLinesTests
{
    public static TheoryData<QuantizationMap> EightBitMaps() => [QuantizationMap.DynamicSigned8, QuantizationMap.DynamicUnsigned8];

    [Theory]
    [MemberData(nameof(EightBitMaps))]
    public void SureCodesAreTheSearchsAtEveryThresholdAndMapValue(QuantizationMap map)
    {
        var search = CodeSearch.Of(map);
        var lines = search.Lines!;
        var points = new List<float> { 0f, -0f, float.Epsilon, -float.Epsilon, 1e-40f, -1e-40f, 1f, -1f, MathF.BitDecrement(1f), -MathF.BitDecrement(1f) };
        foreach (var x in search.Thresholds.Skip(1).Concat(QuantizationMaps.Of(map)))
            for (float up = x, down = x, k = 0; k < 64; k++, up = MathF.BitIncrement(up), down = MathF.BitDecrement(down))
                points.AddRange([up, down, -up, -down]);
        var sure = 0;
        foreach (var y in points.Where(y => MathF.Abs(y) <= 1f))
            if (lines.TryFind(y, out var code))
            {
                code.Should().Be(search.FindNearest(y), $"y = {y:R} ({map})");
                sure++;
            }
        sure.Should().BeGreaterThan(points.Count / 2, "most floats near a threshold are still sure: only those within the margin are not");
    }

    [Theory]
    [MemberData(nameof(EightBitMaps))]
    public void SureCodesAreTheSearchsOnRandomFloatsOfEveryMagnitude(QuantizationMap map)
    {
        var search = CodeSearch.Of(map);
        var lines = search.Lines!;
        var random = new Random(5);
        const int count = 2_000_000;
        var unsure = 0;
        for (var i = 0; i < count; i++)
        {
            // Uniform in the exponent from 2^−40 to 1, both signs: every bucket and piece.
            var y = (float)(Math.Pow(2, -40 * random.NextDouble()) * (random.Next(2) == 0 ? 1 : -1));
            if (lines.TryFind(y, out var code)) code.Should().Be(search.FindNearest(y), $"y = {y:R} ({map})");
            else unsure++;
        }
        unsure.Should().BeLessThan(count / 10_000, "a lane is unsure only within about 2^−16 of a code's half");
    }

    [Fact]
    public void ANanIsNeverSure()
    {
        foreach (var map in new[] { QuantizationMap.DynamicSigned8, QuantizationMap.DynamicUnsigned8 })
        {
            CodeSearch.Of(map).Lines!.TryFind(float.NaN, out _).Should().BeFalse();
            CodeSearch.Of(map).Lines!.TryFind(-float.NaN, out _).Should().BeFalse();
        }
    }

    [Fact]
    public void BothEightBitMapsHaveLinesWithANarrowMarginAndFourBitMapsNone()
    {
        foreach (var map in new[] { QuantizationMap.DynamicSigned8, QuantizationMap.DynamicUnsigned8 })
            CodeSearch.Of(map).Lines!.Half.Should().BeGreaterThan(0.5f - 1f / 4096, $"{map}'s lines are fitted with at least that margin");
        CodeSearch.Of(QuantizationMap.DynamicSigned4).Lines.Should().BeNull();
        CodeSearch.Of(QuantizationMap.LinearUnsigned4).Lines.Should().BeNull();
    }
}
