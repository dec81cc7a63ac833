using System.Text.Json;
using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Quantization;

/// <summary>
/// The reference quantizer: torchao's published maps, per-block error bounds of nearest and stochastic rounding, exact
/// round trips of representable values, unbiased stochastic rounding, and the random numbers' definition.
/// </summary>
public sealed class QuantizerTests
{
    private static readonly BlockFormat[] Formats = [BlockFormat.Signed8, BlockFormat.Unsigned8, BlockFormat.Signed4, BlockFormat.Unsigned4];

    public static TheoryData<string> FormatNames() => [.. Formats.Select(f => f.Map.ToString())];

    private static BlockFormat Format(string name) => Formats.Single(f => f.Map.ToString() == name);

    private static bool Signed(BlockFormat f) => f.Map is QuantizationMap.DynamicSigned8 or QuantizationMap.DynamicSigned4;

    /// <summary>
    /// The maps equal those torchao's own <c>create_dynamic_map</c> produced (tests/fixtures/quantization/maps.json, made by
    /// tests/fixtures/generate/quantization_maps.py) to two units in the last place. The file was made with Debian's torch
    /// 1.13, whose float32 <c>linspace</c> rounds some boundaries one ulp away from libtorch 2.10's, which ours use (and
    /// torchao, which needs torch 2, uses); the maps' structure (count, order, 0 and 1, the linear 4-bit map) is exact.
    /// </summary>
    [Fact]
    public void TheMapsAreTorchaosToTheLastPlace()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "fixtures", "quantization", "maps.json")));
        var golden = new Dictionary<QuantizationMap, string>
        {
            [QuantizationMap.DynamicSigned8] = "signed8", [QuantizationMap.DynamicUnsigned8] = "unsigned8",
            [QuantizationMap.DynamicSigned4] = "signed4", [QuantizationMap.LinearUnsigned4] = "unsigned4",
        };
        foreach (var (map, name) in golden)
        {
            var expected = json.RootElement.GetProperty(name).EnumerateArray().Select(e => BitConverter.UInt32BitsToSingle(e.GetUInt32())).ToArray();
            var ours = QuantizationMaps.Of(map);
            ours.Should().HaveCount(expected.Length).And.BeInAscendingOrder();
            for (var i = 0; i < ours.Length; i++)
                Math.Abs(BitConverter.SingleToInt32Bits(ours[i]) - BitConverter.SingleToInt32Bits(expected[i])).Should().BeLessThanOrEqualTo(2, $"{map}[{i}]: {ours[i]:R} vs torchao's {expected[i]:R}");
            ours.Should().Contain(1f);
            if (map != QuantizationMap.LinearUnsigned4) ours.Should().Contain(0f);
        }
        QuantizationMaps.Of(QuantizationMap.LinearUnsigned4).Should().Equal(Enumerable.Range(1, 16).Select(k => k / 16f), "k/16 is exact");
        QuantizationMaps.Of(QuantizationMap.DynamicSigned8).Min().Should().BeGreaterThan(-1f, "the signed map is asymmetric: −1 is not a value");
    }

    /// <summary>The maps are part of the checkpoint format: any change to their bits changes the meaning of stored codes.</summary>
    [Fact]
    public void TheMapsArePinned()
    {
        var bytes = Enum.GetValues<QuantizationMap>().SelectMany(m => QuantizationMaps.Of(m).SelectMany(BitConverter.GetBytes)).ToArray();
        Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(bytes)).Should().Be("5659823DF55B1B4B774BE4F3D94A3B301E2DC600A8E1BABED75EA7A92A4423AC");
    }

    private static Tensor Values(BlockFormat f, long blocks, long seed)
    {
        using var gen = new Generator((ulong)seed);
        // Magnitudes over several decades per block, as moments have.
        var x = randn([blocks * f.BlockSize], generator: gen).mul_(exp(randn([blocks * f.BlockSize], generator: gen).mul_(2)));
        return Signed(f) ? x : x.abs_();
    }

    private static (Tensor Codes, Tensor Absmax) Empty(BlockFormat f, long count) =>
        (zeros(f.CodeBytes(count), ScalarType.Byte), zeros(f.Blocks(count), ScalarType.Float32));

    [Theory]
    [MemberData(nameof(FormatNames))]
    public void NearestRoundingErrsAtMostHalfTheLargestGapTimesTheBlocksAbsmax(string name)
    {
        using var scope = NewDisposeScope();
        var f = Format(name);
        var x = Values(f, 40, 1);
        var (codes, absmax) = Empty(f, x.numel());
        BlockQuantizer.Quantize(x, codes, absmax, f, Rounding.Nearest);
        var back = BlockQuantizer.Dequantize(codes, absmax, f, x.shape, ScalarType.Float32);
        using var floor = BlockFormat.MinScale.ToScalar();
        TensorAssert.Identical(absmax, x.view(-1, f.BlockSize).abs().amax([1]).clamp_min(floor), "the scale is the block's absmax");
        var gaps = f.Values.Zip(f.Values.Skip(1), (a, b) => b - a).ToArray();
        // Below the smallest map value (4-bit unsigned has no zero) the error is up to that value.
        var bound = Math.Max(gaps.Max() / 2, f.Values.Where(v => v >= 0).Min()) * 1.0001;
        var error = back.sub(x).abs_().view(-1, f.BlockSize).div_(absmax.view(-1, 1)).max().item<float>();
        error.Should().BeLessThanOrEqualTo((float)bound);
        // Every value's code is the nearest one (no farther than its neighbours).
        var y = x.view(-1, f.BlockSize).div(absmax.view(-1, 1)).view(-1).data<float>().ToArray();
        var chosen = back.view(-1, f.BlockSize).div(absmax.view(-1, 1)).view(-1).data<float>().ToArray();
        for (var i = 0; i < y.Length; i += 7)
            Math.Abs(chosen[i] - y[i]).Should().BeLessThanOrEqualTo(f.Values.Min(v => Math.Abs(v - y[i])) * 1.0001f + 1e-7f, $"entry {i}");
    }

    [Theory]
    [MemberData(nameof(FormatNames))]
    public void StoredValuesSurviveAnotherRoundTripUnchanged(string name)
    {
        using var scope = NewDisposeScope();
        var f = Format(name);
        var x = Values(f, 12, 2);
        var (codes, absmax) = Empty(f, x.numel());
        BlockQuantizer.Quantize(x, codes, absmax, f, Rounding.Nearest);
        var back = BlockQuantizer.Dequantize(codes, absmax, f, x.shape, ScalarType.Float32);
        var (codes2, absmax2) = Empty(f, x.numel());
        BlockQuantizer.Quantize(back, codes2, absmax2, f, Rounding.Nearest);
        if (Signed(f))
        {
            // A block whose largest magnitude is negative stores it as the map's most negative value (> −1): its scale
            // shrinks on the next pass, so only blocks whose maximum is positive are fixed points.
            var positiveMax = x.view(-1, f.BlockSize).amax([1]).eq(x.view(-1, f.BlockSize).abs().amax([1]));
            var rows = positiveMax.nonzero().view(-1);
            rows.numel().Should().BePositive();
            TensorAssert.Identical(codes2.view(-1, f.CodeBytes(f.BlockSize)).index_select(0, rows), codes.view(-1, f.CodeBytes(f.BlockSize)).index_select(0, rows), "codes");
        }
        else
        {
            TensorAssert.Identical(codes2, codes, "codes");
            TensorAssert.Identical(absmax2, absmax, "absmax");
        }
    }

    [Fact]
    public void ZerosStoreAndLoadAsZeros()
    {
        using var scope = NewDisposeScope();
        foreach (var f in Formats)
        {
            var (codes, absmax) = Empty(f, 2 * f.BlockSize);
            BlockQuantizer.Dequantize(codes, absmax, f, [2 * f.BlockSize], ScalarType.Float32).abs().max().item<float>().Should().Be(0, "fresh state is zeros");
            if (f.Map == QuantizationMap.LinearUnsigned4) continue; // no zero in the map: 0 stores as 1/16 of the 1e-12 floor
            BlockQuantizer.Quantize(zeros(2 * f.BlockSize), codes, absmax, f, Rounding.Nearest);
            BlockQuantizer.Dequantize(codes, absmax, f, [2 * f.BlockSize], ScalarType.Float32).abs().max().item<float>().Should().Be(0, f.Map.ToString());
        }
    }

    [Theory]
    [MemberData(nameof(FormatNames))]
    public void StochasticRoundingPicksANeighbourAndIsUnbiased(string name)
    {
        using var scope = NewDisposeScope();
        var f = Format(name);
        var x = Values(f, 2, 3);
        var (codes, absmax) = Empty(f, x.numel());
        var gaps = f.Values.Zip(f.Values.Skip(1), (a, b) => b - a).Max();
        var sum = zeros_like(x);
        const int draws = 400;
        for (var k = 0; k < draws; k++)
        {
            BlockQuantizer.Quantize(x, codes, absmax, f, new Rounding(StateRounding.Stochastic, RoundingNoise.Key(7, 1, k)));
            var back = BlockQuantizer.Dequantize(codes, absmax, f, x.shape, ScalarType.Float32);
            back.sub(x).abs_().view(-1, f.BlockSize).div_(absmax.view(-1, 1)).max().item<float>().Should().BeLessThanOrEqualTo(gaps * 1.0001f + f.Values.Where(v => v >= 0).Min());
            sum.add_(back);
        }
        // The mean of the draws approaches x: within 5 standard errors of a draw between two neighbours (gap/2 each).
        // Within the map's range (below its smallest value, a signed block's −absmax or a 4-bit unsigned near-zero, the code clamps).
        var y = x.view(-1, f.BlockSize).div(absmax.view(-1, 1)).view(-1);
        var inRange = y.ge(f.Values[0]);
        var error = sum.div_(draws).sub_(x).abs_().view(-1, f.BlockSize).div_(absmax.view(-1, 1)).view(-1).masked_select(inRange);
        error.max().item<float>().Should().BeLessThan(5 * (gaps / 2) / MathF.Sqrt(draws));
        // Same key, same codes; another key, other codes.
        var (a, _) = Empty(f, x.numel());
        var (b, _) = Empty(f, x.numel());
        var scales = zeros(f.Blocks(x.numel()));
        BlockQuantizer.Quantize(x, a, scales, f, new Rounding(StateRounding.Stochastic, 11));
        BlockQuantizer.Quantize(x, b, scales, f, new Rounding(StateRounding.Stochastic, 11));
        TensorAssert.Identical(a, b, "same key");
        BlockQuantizer.Quantize(x, b, scales, f, new Rounding(StateRounding.Stochastic, 12));
        a.eq(b).all().item<bool>().Should().BeFalse("another key");
    }

    [Fact]
    public void TheNoiseTensorIsTheScalarDefinition()
    {
        using var scope = NewDisposeScope();
        foreach (var key in new uint[] { 0, 1, 0xDEADBEEF, RoundingNoise.Key(-5, 123456789012, 1L << 40) })
        {
            var bits = RoundingNoise.BitsTensor(key, 5000, CPU).data<long>().ToArray();
            for (var i = 0; i < bits.Length; i++) bits[i].Should().Be(RoundingNoise.Bits(key, i), $"key {key}, element {i}");
        }
        RoundingNoise.Key(1, 2, 3).Should().NotBe(RoundingNoise.Key(1, 2, 4)).And.NotBe(RoundingNoise.Key(1, 3, 3)).And.NotBe(RoundingNoise.Key(2, 2, 3));
    }

    [Fact]
    public void BFloat16StochasticRoundingIsTorchaosBitRule()
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(4);
        var x = randn([4096], generator: gen).mul_(exp(randn([4096], generator: gen).mul_(20)));
        x[0] = tensor(0f); x[1] = tensor(1e-40f); x[2] = tensor(-3e-39f); x[3] = tensor(float.MaxValue); x[4] = tensor(-0f); x[5] = tensor(float.PositiveInfinity);
        const uint key = 99;
        var ours = BlockQuantizer.ToBFloat16(x, new Rounding(StateRounding.Stochastic, key)).to(ScalarType.Float32).data<float>().ToArray();
        var values = x.data<float>().ToArray();
        for (var i = 0; i < values.Length; i++)
        {
            var b = BitConverter.SingleToUInt32Bits(values[i]);
            var truncated = b & 0xFFFF0000u;
            var expected = float.IsFinite(values[i]) && (RoundingNoise.Bits(key, i) >> 16) < (b & 0xFFFF) ? truncated + 0x10000u : truncated;
            BitConverter.SingleToUInt32Bits(ours[i]).Should().Be(expected, $"element {i} ({values[i]:R})");
        }
        TensorAssert.Identical(BlockQuantizer.ToBFloat16(x, Rounding.Nearest), x.to(ScalarType.BFloat16), "nearest");
    }

    [Fact]
    public void RaggedBlocksAreRefusedWithTheCount()
    {
        using var scope = NewDisposeScope();
        var (codes, absmax) = Empty(BlockFormat.Signed8, 256);
        var act = () => BlockQuantizer.Quantize(zeros(300), codes, absmax, BlockFormat.Signed8, Rounding.Nearest);
        act.Should().Throw<ArgumentException>().WithMessage("*300 elements*multiple of 256*").Which.ParamName.Should().Be("values");
    }
}
