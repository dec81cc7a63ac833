using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Kernels;

/// <summary>
/// The fused CPU Adam on block-wise moments equals the reference (dequantize → Adam → quantize in TorchSharp ops): codes
/// and absmax bit for bit, for 8- and 4-bit moments, float32 and bfloat16 gradients, nearest and stochastic rounding,
/// one block and many blocks over several parallel parts, from a random quantized state over several steps; the direction
/// and the weights as the dense CPU Adam kernel's parity tests require (<see cref="KernelParityTests"/>).
/// </summary>
public sealed class QuantizedAdamKernelTests
{
    /// <summary>Blocks per tensor: one, several within one parallel part, and several parts (a part is 2^15 entries).</summary>
    private static readonly long[] BlockCounts = [1, 37, 300];

    public static TheoryData<int, string, string, long> Cases()
    {
        var data = new TheoryData<int, string, string, long>();
        foreach (var bits in new[] { 8, 4 })
            foreach (var dtype in new[] { "float32", "bfloat16" })
                foreach (var rounding in new[] { "nearest", "stochastic" })
                    foreach (var blocks in BlockCounts)
                        data.Add(bits, dtype, rounding, blocks);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DirectionMatchesTheReference(int bits, string dtypeName, string roundingName, long blocks) =>
        Check(QuantizedAdamCpuKernel.Instance, bits, Parse(dtypeName), roundingName == "stochastic", blocks, updateWeights: false);

    [Theory]
    [MemberData(nameof(Cases))]
    public void UpdateMatchesTheReference(int bits, string dtypeName, string roundingName, long blocks) =>
        Check(QuantizedAdamCpuKernel.Instance, bits, Parse(dtypeName), roundingName == "stochastic", blocks, updateWeights: true);

    /// <summary>The AVX2 path (what runs without AVX-512; the shared instance takes AVX-512 where it can) is held to the same standard.</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void TheAvx2PathMatchesTheReference(int bits, string dtypeName, string roundingName, long blocks)
    {
        if (QuantizedAdamCpuKernel.Avx2Path is not { } kernel) return; // no AVX2: nothing to run
        Check(kernel, bits, Parse(dtypeName), roundingName == "stochastic", blocks, updateWeights: (bits + blocks) % 2 == 0);
    }

    /// <summary>
    /// The AVX-512 path with every code by the search (what runs without AVX-512 VBMI or DQ; the shared instance finds 8-bit
    /// nearest codes by <see cref="CodeLines"/> where it can) is held to the same standard.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void TheAvx512SearchPathMatchesTheReference(int bits, string dtypeName, string roundingName, long blocks)
    {
        if (QuantizedAdamCpuKernel.Avx512SearchPath is not { } kernel) return; // no AVX-512: nothing to run
        Check(kernel, bits, Parse(dtypeName), roundingName == "stochastic", blocks, updateWeights: (bits + blocks) % 2 == 1);
    }

    /// <summary>The scalar path (what runs without AVX2) is held to the same standard.</summary>
    [Theory]
    [InlineData(8, "float32", "nearest", false)]
    [InlineData(8, "bfloat16", "stochastic", true)]
    [InlineData(4, "float32", "stochastic", false)]
    [InlineData(4, "bfloat16", "nearest", true)]
    public void TheScalarPathMatchesTheReference(int bits, string dtypeName, string roundingName, bool updateWeights) =>
        Check(QuantizedAdamCpuKernel.Scalar, bits, Parse(dtypeName), roundingName == "stochastic", 37, updateWeights);

    /// <summary>
    /// Block sizes other than torchao's (multiples of 32, the kernel's constraint): 96 entries leave 32 past the 8-bit
    /// decode's 64-entry steps (its 16-lane permute tree), 32 entries are one step of the 4-bit loops; 2048 entries are
    /// bitsandbytes' former block (<see cref="MomentStorage.BlockSize"/>), 4096 the kernel's largest.
    /// </summary>
    [Theory]
    [InlineData(8, 2048, "float32", "nearest", true)]
    [InlineData(8, 2048, "bfloat16", "stochastic", false)]
    [InlineData(4, 2048, "float32", "stochastic", false)]
    [InlineData(8, 4096, "float32", "stochastic", true)]
    [InlineData(8, 96, "float32", "nearest", true)]
    [InlineData(8, 32, "bfloat16", "stochastic", false)]
    [InlineData(4, 32, "float32", "stochastic", true)]
    [InlineData(4, 96, "float32", "nearest", false)]
    public void OtherBlockSizesMatchTheReference(int bits, int blockSize, string dtypeName, string roundingName, bool updateWeights)
    {
        foreach (var kernel in new[] { QuantizedAdamCpuKernel.Instance, QuantizedAdamCpuKernel.Avx512SearchPath, QuantizedAdamCpuKernel.Avx2Path, QuantizedAdamCpuKernel.Scalar })
            if (kernel is not null)
                Check(kernel, bits, Parse(dtypeName), roundingName == "stochastic", 37, updateWeights, blockSize);
    }

    /// <summary>
    /// Nearest rounding exactly at the edges: with β1 = 0 the new m is the gradient, and with a 1 in every block y = m
    /// exactly, so the gradient places y on every rounding threshold of the map (the smallest float whose rounded code
    /// is one higher), a float or two either side of it, every map value and its neighbours, ±0, subnormals and ±1; one
    /// block holds a NaN. m is stored with each map in turn. Every kernel path must give the reference's codes.
    /// </summary>
    [Theory]
    [InlineData(QuantizationMap.DynamicSigned8)]
    [InlineData(QuantizationMap.DynamicUnsigned8)]
    [InlineData(QuantizationMap.DynamicSigned4)]
    [InlineData(QuantizationMap.LinearUnsigned4)]
    public void NearestRoundingAtEveryThresholdMatchesTheReference(QuantizationMap map)
    {
        using var scope = NewDisposeScope();
        var values = QuantizationMaps.Of(map);
        var bits = int.Log2(values.Length);
        var blockSize = bits == 8 ? 256 : 128;
        var edges = new List<float> { 0f, -0f, 1e-40f, -1e-40f, float.Epsilon, -float.Epsilon, 1f, -1f };
        foreach (var x in values.Concat(ThresholdsOf(values, bits)))
            for (float y = x, z = x, k = 0; k < 3; k++, y = MathF.BitIncrement(y), z = MathF.BitDecrement(z))
                edges.AddRange([y, z]);
        var perBlock = blockSize - 1;
        var blocks = (edges.Count + perBlock - 1) / perBlock + 1;
        var g = new float[blocks * blockSize];
        for (var i = 0; i < edges.Count; i++) g[i / perBlock * blockSize + 1 + i % perBlock] = Math.Clamp(edges[i], -1f, 1f);
        for (var b = 0; b < blocks; b++) g[b * blockSize] = 1f; // the block's scale: y = x exactly
        g[(blocks - 1) * blockSize + 5] = float.NaN; // a NaN block: every code 0 in the reference
        var gradient = torch.tensor(g);
        var scalars = new AdamScalars(0.0, 0.999, 1e-8, 1.0, StepSize: 1e-3);
        var mFormat = new BlockFormat(bits, blockSize, map);
        var vFormat = bits == 8 ? BlockFormat.Unsigned8 : BlockFormat.Unsigned4;
        QuantizedMoments Fresh() => new(Zeros(mFormat, g.Length), Zeros(vFormat, g.Length));
        var reference = Fresh();
        TorchKernels.Instance.QuantizedAdamUpdate(gradient, reference, scalars, torch.zeros(g.Length));
        foreach (var kernel in new[] { QuantizedAdamCpuKernel.Instance, QuantizedAdamCpuKernel.Avx512SearchPath, QuantizedAdamCpuKernel.Avx2Path, QuantizedAdamCpuKernel.Scalar })
        {
            if (kernel is null) continue;
            var fused = Fresh();
            kernel.QuantizedAdamUpdate(gradient, fused, scalars, torch.zeros(g.Length));
            TensorAssert.Identical(fused.ExpAvg.Codes, reference.ExpAvg.Codes, $"{map} codes at the thresholds");
        }
    }

    /// <summary>The smallest float whose nearest code is q, for each q ≥ 1, found here independently: by scanning the reference's rounding.</summary>
    private static IEnumerable<float> ThresholdsOf(float[] map, int bits)
    {
        int Code(float y)
        {
            var c = 0;
            for (var step = 1 << (bits - 1); step >= 1; step >>= 1)
                if (y >= map[c + step]) c += step;
            var up = Math.Min(c + 1, map.Length - 1);
            return y - map[c] >= (map[up] - map[c]) * 0.5f ? up : c;
        }
        // Between map[q − 1] and map[q] the code steps from q − 1 to q once: bisect on the floats (same sign here, or ±0).
        for (var q = 1; q < map.Length; q++)
        {
            var (low, high) = (map[q - 1], map[q]);
            while (MathF.BitIncrement(low) < high)
            {
                var middle = low < 0 && high > 0 ? 0f : BitConverter.Int32BitsToSingle((BitConverter.SingleToInt32Bits(low) + BitConverter.SingleToInt32Bits(high)) / 2);
                if (middle <= low || middle >= high) middle = MathF.BitIncrement(low);
                if (Code(middle) >= q) high = middle; else low = middle;
            }
            yield return high;
        }
    }

    private static QuantizedTensor Zeros(BlockFormat format, long n) =>
        new(torch.zeros(format.CodeBytes(n), ScalarType.Byte), torch.ones(format.Blocks(n)), format, Rounding.Nearest);

    /// <summary>The reference's random bits (TorchSharp ops) are <see cref="RoundingNoise.Bits"/>, which the kernel draws per element.</summary>
    [Fact]
    public void TheReferenceNoiseIsTheCounterFunction()
    {
        using var scope = NewDisposeScope();
        foreach (var key in new[] { 0u, 12345u, uint.MaxValue })
        {
            var bits = RoundingNoise.BitsTensor(key, 5000, CPU).data<long>().ToArray();
            bits.Select((b, i) => (uint)b == RoundingNoise.Bits(key, i) && b >= 0 && b <= uint.MaxValue).Should().AllBeEquivalentTo(true, $"key {key}");
        }
    }

    /// <summary>
    /// Through the optimizer: full-space Adam with 8-bit moments takes the fused update; an explicit Cpu choice and the
    /// reference give the same parameters (within the dense kernel's sqrt difference) over several steps.
    /// </summary>
    [Theory]
    [InlineData(8, StateRounding.Nearest)]
    [InlineData(4, StateRounding.Stochastic)]
    public void AnOptimizerWithBlockwiseMomentsRunsTheKernel(int bits, StateRounding rounding)
    {
        using var scope = NewDisposeScope();
        var (fused, plain) = (new TorchSharp.Modules.Parameter(randn(64, 256)), new TorchSharp.Modules.Parameter(randn(64, 256)));
        plain.detach().copy_(fused);
        LowRankOptimizer Build(TorchSharp.Modules.Parameter p, KernelPreference kernel) => new([new LowRankParamGroup([p])], new LowRankOptions
        {
            LearningRate = 0.01, WeightDecay = 0.1, DecayOrder = WeightDecayOrder.BeforeUpdate, Projection = FullSpace.Instance,
            Rule = new AdamConfig(Kernel: kernel), MomentStorage = MomentStorage.FromOptimBits(bits, rounding, seed: rounding == StateRounding.Stochastic ? 3 : 0),
        });
        using var withKernel = Build(fused, KernelPreference.Cpu);
        using var withReference = Build(plain, KernelPreference.Reference);
        var gen = new Generator(17);
        for (var step = 0; step < 5; step++)
        {
            var grad = randn([64, 256], generator: gen);
            (fused.grad, plain.grad) = (grad.clone(), grad.clone());
            withKernel.step(); withReference.step();
            TensorAssert.Close(fused, plain, 1e-6, 1e-5, $"parameters after step {step + 1}");
        }
    }

    /// <summary>What the kernels say they take (selection asks them): the CPU kernel multiples of 32 up to 4096, the CUDA kernel powers of two up to 256.</summary>
    [Theory]
    [InlineData(256, true, true)]
    [InlineData(128, true, true)]
    [InlineData(2048, true, false)]
    [InlineData(4096, true, false)]
    [InlineData(96, true, false)]
    [InlineData(4128, false, false)]
    [InlineData(16, false, true)]
    public void KernelsSayWhichBlockSizesTheyTake(int blockSize, bool cpu, bool cuda)
    {
        var format = BlockFormat.Signed8 with { BlockSize = blockSize };
        IQuantizedAdamKernel cpuKernel = QuantizedAdamCpuKernel.Instance, reference = TorchKernels.Instance;
        (cpuKernel.FormatProblem(format) is null).Should().Be(cpu);
        (QuantizedAdamLaunches.FormatProblem(8, blockSize) is null).Should().Be(cuda);
        reference.FormatProblem(format).Should().BeNull("the reference takes every block size");
        // MomentStorage's public limits are the CPU kernel's.
        MomentStorage.BlockMultiple.Should().Be(QuantizedAdamCpuKernel.BlockMultiple);
        MomentStorage.MaxBlockSize.Should().Be(QuantizedAdamCpuKernel.MaxBlockSize);
    }

    [Fact]
    public void AWrongRoundingIsDetected()
    {
        using var scope = NewDisposeScope();
        var state = new State(8, ScalarType.Float32, blocks: 37, seed: 5);
        var g = state.Gradient();
        var scalars = new AdamScalars(0.9, 0.999, 1e-8, Math.Sqrt(1 - 0.999));
        var stochastic = new Rounding(StateRounding.Stochastic, RoundingNoise.Key(5, 1, 1));
        // The kernel rounds to nearest where the reference rounds stochastically: the comparison must see it.
        TorchKernels.Instance.QuantizedAdamDirection(g, state.Reference(stochastic, stochastic), scalars);
        QuantizedAdamCpuKernel.Instance.QuantizedAdamDirection(g, state.Fused(Rounding.Nearest, Rounding.Nearest), scalars);
        Same(state.FusedM.Codes, state.ReferenceM.Codes).Should().BeFalse("nearest and stochastic codes differ");
        Same(state.FusedV.Codes, state.ReferenceV.Codes).Should().BeFalse("nearest and stochastic codes differ");
        // Another key is another draw.
        var other = new Rounding(StateRounding.Stochastic, stochastic.Key + 1);
        TorchKernels.Instance.QuantizedAdamDirection(g, state.Reference(stochastic, stochastic), scalars);
        QuantizedAdamCpuKernel.Instance.QuantizedAdamDirection(g, state.Fused(other, other), scalars);
        Same(state.FusedM.Codes, state.ReferenceM.Codes).Should().BeFalse("another key draws other numbers");
    }

    [Fact]
    public void InputsTheKernelCannotTakeAreRefusedNamingTheTensor()
    {
        using var scope = NewDisposeScope();
        var kernel = QuantizedAdamCpuKernel.Instance;
        var state = new State(8, ScalarType.Float32, blocks: 4, seed: 9);
        var scalars = new AdamScalars(0.9, 0.999, 1e-8, 1.0, StepSize: 1e-3);
        var moments = state.Fused(Rounding.Nearest, Rounding.Nearest);
        var g = state.Gradient();
        var strided = g.t();
        kernel.Accepts(strided).Should().BeFalse();
        kernel.Accepts(g, moments.ExpAvg.Codes, moments.ExpAvg.Absmax).Should().BeTrue();
        Refused(() => kernel.QuantizedAdamDirection(strided, moments, scalars), "gradient");
        Refused(() => kernel.QuantizedAdamUpdate(g, moments, scalars, zeros(g.shape).t()), "weights");
        Refused(() => kernel.QuantizedAdamDirection(g.to(ScalarType.Float64), moments, scalars), "gradient");
        Refused(() => kernel.QuantizedAdamDirection(g.flatten().narrow(0, 0, 4 * 256 - 256), moments, scalars), "moments.ExpAvg.Codes");
        Refused(() => kernel.QuantizedAdamDirection(g.flatten()[..100], moments, scalars), "gradient");
        Refused(() => kernel.QuantizedAdamDirection(g, moments with { ExpAvgSq = moments.ExpAvgSq with { Absmax = zeros(5) } }, scalars), "moments.ExpAvgSq.Absmax");
        Refused(() => kernel.QuantizedAdamDirection(g, moments with { ExpAvg = moments.ExpAvg with { Codes = zeros(2 * 256 * 4, ScalarType.Byte)[TensorIndex.Slice(step: 2)] } }, scalars), "moments.ExpAvg.Codes");
        Refused(() => kernel.QuantizedAdamDirection(g, moments with { ExpAvgSq = moments.ExpAvgSq with { Format = BlockFormat.Unsigned4 } }, scalars), "moments");
    }

    private static bool Same(Tensor a, Tensor b) => a.eq(b).all().item<bool>();

    private static void Refused(Action call, string name) =>
        call.Should().Throw<ArgumentException>().Which.ParamName.Should().Be(name);

    private static ScalarType Parse(string dtype) => dtype == "float32" ? ScalarType.Float32 : ScalarType.BFloat16;

    /// <summary>Three steps of the kernel and of the reference from the same random quantized state; codes and absmax identical after each.</summary>
    private static void Check(IQuantizedAdamKernel kernel, int bits, ScalarType dtype, bool stochastic, long blocks, bool updateWeights, int? blockSize = null)
    {
        using var scope = NewDisposeScope();
        var seed = bits * 1000 + blocks + (stochastic ? 7 : 0) + (dtype == ScalarType.Float32 ? 0 : 3);
        var state = new State(bits, dtype, blocks, seed, blockSize);
        var (atol, rtol) = dtype == ScalarType.Float32 ? (1e-7, 2e-6) : (5e-4, 1.0 / 64);
        var w0 = state.Gradient();
        var (wr, wf) = (w0.clone(), w0.clone());
        for (var step = 1; step <= 3; step++)
        {
            var g = state.Gradient();
            // Both ε conventions (after bias correction on odd steps); decay on some steps only, as the dense tests.
            var scalars = new AdamScalars(0.9, 0.999, 1e-8 * step, step % 2 == 1 ? Math.Sqrt(1 - Math.Pow(0.999, step)) : 1.0,
                StepSize: 1e-3 * step, DecayFactor: step == 2 ? 1.0 : 1 - 1e-4);
            Rounding RoundingOf(ulong stream) => stochastic ? new(StateRounding.Stochastic, RoundingNoise.Key(seed, stream, step)) : Rounding.Nearest;
            var (rm, rv) = (RoundingOf(1), RoundingOf(2));
            var what = $"{bits}-bit {dtype} {(stochastic ? "stochastic" : "nearest")} × {blocks} blocks, step {step}";
            if (updateWeights)
            {
                TorchKernels.Instance.QuantizedAdamUpdate(g, state.Reference(rm, rv), scalars, wr);
                kernel.QuantizedAdamUpdate(g, state.Fused(rm, rv), scalars, wf);
                TensorAssert.Close(wf, wr, atol, rtol, $"weights, {what}");
            }
            else
            {
                var expected = TorchKernels.Instance.QuantizedAdamDirection(g, state.Reference(rm, rv), scalars);
                var actual = kernel.QuantizedAdamDirection(g, state.Fused(rm, rv), scalars);
                actual.dtype.Should().Be(dtype);
                actual.shape.Should().Equal(g.shape);
                // bf16: as the dense kernel against libtorch's vectorized loop (every length here is a multiple of its 32 lanes).
                if (dtype == ScalarType.Float32) TensorAssert.Close(actual, expected, atol, rtol, $"direction, {what}");
                else TensorAssert.Close(actual, expected, 2e-3, 2 * rtol, $"direction, {what}");
            }
            TensorAssert.Identical(state.FusedM.Codes, state.ReferenceM.Codes, $"m codes, {what}");
            TensorAssert.Identical(state.FusedM.Absmax, state.ReferenceM.Absmax, $"m absmax, {what}");
            TensorAssert.Identical(state.FusedV.Codes, state.ReferenceV.Codes, $"v codes, {what}");
            TensorAssert.Identical(state.FusedV.Absmax, state.ReferenceV.Absmax, $"v absmax, {what}");
        }
    }

    /// <summary>Two copies (reference, fused) of m and v quantized from random values, and random gradients of the same shape.</summary>
    private sealed class State
    {
        private readonly Generator _gen;
        private readonly ScalarType _dtype;
        private readonly long[] _shape;

        public State(int bits, ScalarType dtype, long blocks, long seed, int? blockSize = null)
        {
            _gen = new Generator((ulong)seed);
            _dtype = dtype;
            var (signed, unsigned) = bits == 8 ? (BlockFormat.Signed8, BlockFormat.Unsigned8) : (BlockFormat.Signed4, BlockFormat.Unsigned4);
            if (blockSize is { } size) (signed, unsigned) = (signed with { BlockSize = size }, unsigned with { BlockSize = size });
            _shape = [blocks, signed.BlockSize];
            var n = blocks * signed.BlockSize;
            // Blocks of very different magnitudes, so the scales and the dynamic map's small codes are exercised.
            var magnitudes = torch.pow(10.0, rand([blocks, 1], generator: _gen).mul_(-6));
            var m = randn(_shape, generator: _gen).mul_(magnitudes);
            var v = randn(_shape, generator: _gen).square().mul_(magnitudes.square());
            (ReferenceM, FusedM) = (Quantized(m, signed, n), Quantized(m, signed, n));
            (ReferenceV, FusedV) = (Quantized(v, unsigned, n), Quantized(v, unsigned, n));
        }

        public QuantizedTensor ReferenceM { get; }
        public QuantizedTensor ReferenceV { get; }
        public QuantizedTensor FusedM { get; }
        public QuantizedTensor FusedV { get; }

        public Tensor Gradient() => randn(_shape, generator: _gen).mul_(1e-2).to(_dtype);

        public QuantizedMoments Reference(Rounding m, Rounding v) => new(ReferenceM with { Rounding = m }, ReferenceV with { Rounding = v });

        public QuantizedMoments Fused(Rounding m, Rounding v) => new(FusedM with { Rounding = m }, FusedV with { Rounding = v });

        private static QuantizedTensor Quantized(Tensor values, BlockFormat format, long n)
        {
            var codes = zeros(format.CodeBytes(n), ScalarType.Byte);
            var absmax = zeros(format.Blocks(n));
            BlockQuantizer.Quantize(values, codes, absmax, format, Rounding.Nearest);
            return new QuantizedTensor(codes, absmax, format, Rounding.Nearest);
        }
    }
}
