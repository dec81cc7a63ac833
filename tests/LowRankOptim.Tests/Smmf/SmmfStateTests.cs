using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Smmf;

/// <summary>Square-matricization, sign packing and the exact state size of SMMF.</summary>
public sealed class SmmfStateTests
{
    [Theory]
    [InlineData(1L, 1L, 1L)]
    [InlineData(2L, 2L, 1L)]
    [InlineData(7L, 7L, 1L)]
    [InlineData(24L, 6L, 4L)]
    [InlineData(54L, 9L, 6L)]            // a 3×2×3×3 conv kernel
    [InlineData(1009L, 1009L, 1L)]       // prime
    [InlineData(2048L, 64L, 32L)]
    [InlineData(16777216L, 4096L, 4096L)]
    [InlineData(5461L * 2048, 4064L, 2752L)]
    [InlineData(4096L * 11008, 8192L, 5504L)]
    [InlineData(32000L * 512, 4096L, 4000L)]
    [InlineData(0L, 0L, 1L)]
    public void SquareMatricizationTakesTheLargestDivisorNotAboveTheSquareRoot(long count, long rows, long cols) =>
        SquareMatricization.Of(count).Should().Be((rows, cols));

    [Fact]
    public void SquareMatricizationAgreesWithABruteForceSearch()
    {
        for (long n = 1; n <= 3000; n++)
        {
            long best = 1;
            for (long d = 1; d * d <= n; d++)
                if (n % d == 0) best = d;
            SquareMatricization.Of(n).Should().Be((n / best, best), $"N = {n}");
        }
    }

    [Fact]
    public void IntegerSquareRootIsExactOverTheWholeRange()
    {
        foreach (var r in new long[] { 0, 1, 2, 3, 94906265, 94906266, 3037000499 })
        {
            var square = r * r;
            SquareMatricization.IntegerSqrt(square).Should().Be(r);
            if (r > 0) SquareMatricization.IntegerSqrt(square - 1).Should().Be(r - 1);
            if (r < 3037000499) SquareMatricization.IntegerSqrt(square + 2 * r).Should().Be(r); // (r+1)² − 1
        }
        SquareMatricization.IntegerSqrt(long.MaxValue).Should().Be(3037000499);
        var negative = () => SquareMatricization.IntegerSqrt(-1);
        negative.Should().Throw<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void SignsPackLeastSignificantBitFirstIntoCeilingOfNOver8Bytes()
    {
        using var scope = NewDisposeScope();
        // Elements 0, 3, 8 and 10 set: byte 0 = 0b0000_1001, byte 1 = 0b0000_0101 (bits 0 and 2).
        var flags = zeros([11], ScalarType.Bool);
        foreach (var i in new long[] { 0, 3, 8, 10 }) flags[i] = tensor(true);
        var packed = zeros([2], ScalarType.Byte);
        SignBits.PackInto(flags, packed);
        packed.data<byte>().ToArray().Should().Equal(0b0000_1001, 0b0000_0101);
        SignBits.ByteCount(11).Should().Be(2);
        SignBits.ByteCount(16).Should().Be(2);
        SignBits.ByteCount(17).Should().Be(3);
    }

    [Theory]
    [InlineData(1L)]
    [InlineData(7L)]
    [InlineData(8L)]
    [InlineData(9L)]
    [InlineData(64L)]
    [InlineData(1001L)]
    public void SignsRoundTrip(long count)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator((ulong)count);
        var flags = randn([count], generator: gen).gt(0);
        var packed = zeros([SignBits.ByteCount(count)], ScalarType.Byte);
        SignBits.PackInto(flags, packed);
        SignBits.Unpack(packed, count, [count]).eq(flags).all().item<bool>().Should().BeTrue();
    }

    /// <summary>
    /// A real model: an MLP (two Linear layers with biases) and a conv net's kernel and bias. Every
    /// tensor's state is exactly 2·(n̂ + m̂)·4 + ⌈N/8⌉ bytes, with (n̂, m̂) from a brute-force divisor search.
    /// </summary>
    [Theory]
    [InlineData(true, true)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void StateBytesFollowTheFormulaOnARealModel(bool momentum, bool vectorReshape)
    {
        using var scope = NewDisposeScope();
        var mlp = TestProblems.Mlp(3);
        var conv = nn.Conv2d(3, 8, 3);
        var parameters = mlp.parameters().Concat(conv.parameters()).ToList();
        parameters.Select(p => p.shape.Length).Should().Contain([1, 2, 4]);
        using var opt = LowRank.Smmf(parameters, beta: momentum ? 0.9 : null, vector_reshape: vectorReshape);

        long expectedTotal = 0;
        foreach (var (p, state) in parameters.Zip(opt.States))
        {
            var n = p.numel();
            long expected;
            if (!vectorReshape && p.shape.Count(d => d != 1) == 1)
            {
                expected = (momentum ? 2 : 1) * n * sizeof(float); // full M and V
            }
            else
            {
                long cols = 1;
                for (long d = 1; d * d <= n; d++)
                    if (n % d == 0) cols = d;
                var rows = n / cols;
                expected = (momentum ? 2 : 1) * (rows + cols) * sizeof(float) + (momentum ? (n + 7) / 8 : 0);
                var rule = (SmmfRule)state.Rule;
                (rule.Rows, rule.Cols).Should().Be((rows, cols));
            }
            state.StateBytes.Should().Be(expected, $"shape [{string.Join(", ", p.shape)}]");
            expectedTotal += expected;
        }
        opt.StateBytes.Should().Be(expectedTotal);

        // Stepping changes values, never sizes.
        var (x, y) = TestProblems.Data(3);
        TestProblems.LossAndBackward(mlp, x, y);
        using (var _ = no_grad())
            foreach (var p in conv.parameters()) p.grad = ones_like(p);
        opt.step();
        opt.StateBytes.Should().Be(expectedTotal);
    }

    [Fact]
    public void TheConvKernelNeedsFarLessStateThanAdamW()
    {
        using var scope = NewDisposeScope();
        var conv = nn.Conv2d(64, 128, 3); // 73,728 weights: 288×256 plus 128 biases: 16×8
        using var smmf = LowRank.Smmf(conv.parameters());
        using var adamw = LowRank.AdamW(conv.parameters());
        var expected = 2 * (288 + 256) * 4 + 73728 / 8 + 2 * (16 + 8) * 4 + 128 / 8;
        smmf.StateBytes.Should().Be(expected);
        adamw.StateBytes.Should().Be(2 * (73728 + 128) * 4);
        ((double)smmf.StateBytes / adamw.StateBytes).Should().BeLessThan(0.04);
    }

    [Fact]
    public void AnEmptyParameterIsAcceptedAndNeverChanges()
    {
        using var scope = NewDisposeScope();
        var empty = new Parameter(zeros([0, 3]));
        var other = new Parameter(ones([5]));
        using var opt = LowRank.Smmf([empty, other], lr: 0.1);
        empty.grad = zeros([0, 3]);
        other.grad = ones([5]);
        opt.step();
        empty.numel().Should().Be(0);
        other.data<float>().ToArray().Should().OnlyContain(v => v < 1);
    }
}
