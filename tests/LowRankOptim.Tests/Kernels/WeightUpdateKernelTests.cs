using FluentAssertions;
using LowRankOptim.Kernels;
using Xunit;
using Xunit.Sdk;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Kernels;

/// <summary>
/// The fused CPU weight update of bfloat16 parameters writes the reference's bits (a float32 copy, TorchSharp ops and
/// <see cref="BlockQuantizer.ToBFloat16(Tensor, Rounding, long)"/>): bf16 and float32 updates, nearest and stochastic
/// rounding, decay before and after, odd lengths and several parallel chunks, both vector paths, non-finite values; a part
/// of a parameter given its flat offset rounds as within the whole.
/// </summary>
public sealed class WeightUpdateKernelTests
{
    /// <summary>Lengths: a scalar tail only, odd remainders of both vector widths, and several parallel chunks (2^15 each).</summary>
    private static readonly long[] Lengths = [1, 7, 15, 17, 33, 1001, 100_003];

    public static TheoryData<string, string, long> Cases()
    {
        var data = new TheoryData<string, string, long>();
        foreach (var update in new[] { "bfloat16", "float32" })
            foreach (var rounding in new[] { "nearest", "stochastic" })
                foreach (var n in Lengths)
                    data.Add(update, rounding, n);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TheKernelWritesTheReferencesBits(string updateDtype, string rounding, long n)
    {
        foreach (var kernel in new[] { WeightUpdateCpuKernel.Instance, WeightUpdateCpuKernel.Vector256Path })
            Check(kernel, Parse(updateDtype), rounding == "stochastic", n, n % 3 == 0 ? 0.999 : 1, n % 2 == 0 ? 1 : 0.998, firstIndex: n % 5 == 0 ? 0 : 12345);
    }

    [Fact]
    public void NonFiniteValuesPassThroughAndOverflowReachesInfinity()
    {
        using var scope = NewDisposeScope();
        const long n = 64;
        var (w, u) = Inputs(n, ScalarType.Float32, seed: 5);
        var largest = BitConverter.UInt32BitsToSingle(0x7F7F0000u); // the largest finite bfloat16
        w[0] = tensor(float.NaN); w[1] = tensor(float.PositiveInfinity); w[2] = tensor(float.NegativeInfinity);
        u[3] = tensor(float.NaN); u[4] = tensor(float.PositiveInfinity);
        w[5] = tensor(largest); u[5] = tensor(-0.102f * largest); // 0.9·W − U is half an ulp above the largest bf16: ∞ or the largest
        w[6] = tensor(-0f); u[6] = tensor(0f);
        w[7] = tensor(1e-39f); u[7] = tensor(1e-38f); // subnormal bf16 weights
        foreach (var stochastic in new[] { false, true })
        {
            var scalars = Scalars(stochastic, 0.9, 1, 1, 0);
            var (ours, expected) = (w.clone(), w.clone());
            WeightUpdateCpuKernel.Instance.UpdateWeights(ours, u, scalars);
            KernelSelection.Reference<IWeightUpdateKernel>(KernelStorage.Dense(ScalarType.BFloat16)).UpdateWeights(expected, u, scalars);
            AssertSameBits(ours, expected, $"stochastic = {stochastic}");
            var result = ours.to(ScalarType.Float32);
            foreach (var i in new[] { 0, 3 }) float.IsNaN(result[i].item<float>()).Should().BeTrue($"element {i} is NaN");
            result[1].item<float>().Should().Be(float.PositiveInfinity);
            result[2].item<float>().Should().Be(float.NegativeInfinity);
            result[4].item<float>().Should().Be(float.NegativeInfinity, "W − c·∞");
            result[5].item<float>().Should().BeOneOf(largest, float.PositiveInfinity);
        }
    }

    [Fact]
    public void APartGivenItsOffsetRoundsAsWithinTheWhole()
    {
        using var scope = NewDisposeScope();
        const long n = 70_001, offset = 33_333;
        var (w, u) = Inputs(n, ScalarType.Float32, seed: 8);
        var scalars = Scalars(true, 1, 0.01, 1, 0);
        var whole = w.clone();
        WeightUpdateCpuKernel.Instance.UpdateWeights(whole, u, scalars);
        var part = w.narrow(0, offset, n - offset).clone();
        WeightUpdateCpuKernel.Instance.UpdateWeights(part, u.narrow(0, offset, n - offset), scalars with { FirstIndex = offset });
        AssertSameBits(part, whole.narrow(0, offset, n - offset), "the part");
    }

    [Fact]
    public void BadInputsAreRefusedNamingTheTensor()
    {
        using var scope = NewDisposeScope();
        var reference = KernelSelection.Reference<IWeightUpdateKernel>(KernelStorage.Dense(ScalarType.BFloat16));
        var scalars = Scalars(true, 1, 0.1, 1, 0);
        var floatWeights = () => reference.UpdateWeights(zeros(8), zeros(8), scalars);
        floatWeights.Should().Throw<ArgumentException>().Where(e => e.ParamName == "weights" && e.Message.Contains("Float32"));
        var shortUpdate = () => reference.UpdateWeights(zeros(8, ScalarType.BFloat16), zeros(7), scalars);
        shortUpdate.Should().Throw<ArgumentException>().Where(e => e.ParamName == "update" && e.Message.Contains('7'));
        var halfUpdate = () => WeightUpdateCpuKernel.Instance.UpdateWeights(zeros(8, ScalarType.BFloat16), zeros(8, ScalarType.Float16), scalars);
        halfUpdate.Should().Throw<ArgumentException>().Where(e => e.ParamName == "update" && e.Message.Contains("Float16"));
        var strided = () => WeightUpdateCpuKernel.Instance.UpdateWeights(zeros(4, 4, ScalarType.BFloat16).t(), zeros(16), scalars);
        strided.Should().Throw<ArgumentException>().Where(e => e.ParamName == "weights" && e.Message.Contains("contiguous"));
    }

    [Fact]
    public void TheCpuKernelIsChosenForBFloat16WeightsOnTheCpu()
    {
        KernelSelection.Select<IWeightUpdateKernel>(null, CPU, KernelStorage.Dense(ScalarType.BFloat16), 1000)
            .Should().BeSameAs(WeightUpdateCpuKernel.Instance);
        KernelSelection.Select<IWeightUpdateKernel>(KernelBackend.Reference, CPU, KernelStorage.Dense(ScalarType.BFloat16), 1000).Backend
            .Should().Be(KernelBackend.Reference);
    }

    private static void Check(IWeightUpdateKernel kernel, ScalarType updateDtype, bool stochastic, long n, double before, double after, long firstIndex)
    {
        using var scope = NewDisposeScope();
        var (w, u) = Inputs(n, updateDtype, seed: n);
        var scalars = Scalars(stochastic, before, 3e-3, after, firstIndex);
        var (ours, expected) = (w.clone(), w.clone());
        kernel.UpdateWeights(ours, u, scalars);
        KernelSelection.Reference<IWeightUpdateKernel>(KernelStorage.Dense(ScalarType.BFloat16)).UpdateWeights(expected, u, scalars);
        AssertSameBits(ours, expected, $"{kernel} {updateDtype} update, stochastic = {stochastic}, n = {n}");
        if (stochastic && n > 1000)
            ours.to(ScalarType.Float32).ne(w.to(ScalarType.Float32)).sum().item<long>().Should().BePositive("some weights moved");
    }

    private static WeightUpdateScalars Scalars(bool stochastic, double before, double coefficient, double after, long firstIndex) =>
        new(coefficient, before, after, stochastic ? new Rounding(StateRounding.Stochastic, 0xC0FFEEu) : Rounding.Nearest, firstIndex);

    /// <summary>bf16 weights over many binades, and updates of a few bf16 ulps of them down to far below one.</summary>
    private static (Tensor W, Tensor U) Inputs(long n, ScalarType updateDtype, long seed)
    {
        using var gen = new Generator((ulong)(seed + 1));
        var w = randn([n], generator: gen).mul_(exp(randn([n], generator: gen).mul_(4)));
        var u = w.mul(randn([n], generator: gen)).mul_(exp(randn([n], generator: gen).mul_(3)));
        return (w.to(ScalarType.BFloat16), u.to(updateDtype));
    }

    /// <summary>The bf16 bits are equal, except that two NaNs match whatever their payload.</summary>
    private static void AssertSameBits(Tensor actual, Tensor expected, string what)
    {
        var a = Bits(actual);
        var e = Bits(expected);
        a.Length.Should().Be(e.Length);
        for (var i = 0; i < a.Length; i++)
            if (a[i] != e[i] && !(IsNaN(a[i]) && IsNaN(e[i])))
                throw new XunitException($"{what}: element {i} is 0x{a[i]:X4}, the reference wrote 0x{e[i]:X4}");
    }

    private static ushort[] Bits(Tensor t) => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(t.contiguous().bytes).ToArray();

    private static bool IsNaN(ushort bits) => (bits & 0x7F80) == 0x7F80 && (bits & 0x7F) != 0;

    private static ScalarType Parse(string name) => name == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
}
