using System.Text.Json;

namespace LowRankOptim.Kernels.GpuHarness;

/// <summary>
/// quantized_adam.cu against a plain C# reference of its arithmetic: decode (map[code]·absmax in float32, rounded to
/// bfloat16 for bfloat16), adam.cu's Adam step, then torchao's block-wise quantizer (BlockQuantizer: max |x| clipped
/// at 1e-12, y = x / scale, the largest code with map[code] ≤ y, up one code for nearest or stochastic rounding with
/// RoundingNoise's hash). Codes and absmax must match bit for bit (0 allowed: differing code bytes and absmax ulps are
/// counted in the ulp column), the direction or weights as the dense Adam checks (1 ulp allowed, 0 expected).
/// </summary>
internal static class QuantizedChecks
{
    /// <summary>BlockFormat.MinScale (torchao's clip), which the harness cannot link: BlockFormat builds its maps with TorchSharp.</summary>
    internal const float MinScale = 1e-12f;

    /// <summary>(bits, block size, m's map, v's map): torchao's 8-bit and 4-bit formats.</summary>
    internal static readonly (int Bits, int BlockSize, string M, string V)[] Formats = [(8, 256, "signed8", "unsigned8"), (4, 128, "signed4", "unsigned4")];

    /// <summary>Other block sizes the kernel takes: one partial warp (16 entries) and two warps (64 entries of 4 bits).</summary>
    private static readonly (int Bits, int BlockSize, string M, string V)[] OtherBlockSizes = [(8, 16, "signed8", "unsigned8"), (4, 64, "signed4", "unsigned4")];

    internal static readonly Dictionary<string, float[]> Maps = LoadMaps();

    /// <summary>torchao's maps from the embedded fixture (float32 bit patterns produced by torchao's own function).</summary>
    private static Dictionary<string, float[]> LoadMaps()
    {
        using var stream = typeof(QuantizedChecks).Assembly.GetManifestResourceStream("quantization-maps.json")
            ?? throw new InvalidOperationException("the harness lacks its embedded quantization-maps.json.");
        using var json = JsonDocument.Parse(stream);
        return Formats.SelectMany(f => new[] { f.M, f.V }).ToDictionary(name => name,
            name => json.RootElement.GetProperty(name).EnumerateArray().Select(e => BitConverter.UInt32BitsToSingle(e.GetUInt32())).ToArray());
    }

    /// <summary>
    /// Every variant (8/4-bit, float32/bfloat16, direction/update, nearest/stochastic), in torchao's block sizes and in
    /// <see cref="OtherBlockSizes"/>, over 1, 5 and 1000 blocks (a zero
    /// block among them: zero gradient and absmax, so the scale is clipped), two steps in place; and 65537 blocks
    /// (more than the 65535-block grid cap, so the grid-stride loop runs twice) for the float32 update.
    /// </summary>
    public static IEnumerable<Check> All(int device)
    {
        foreach (var format in Formats.Concat(OtherBlockSizes))
            foreach (var update in new[] { false, true })
                foreach (var bf16 in new[] { false, true })
                    foreach (var stochastic in new[] { false, true })
                        foreach (var blocks in !bf16 && update ? new long[] { 1, 5, 1000, 65537 } : [1, 5, 1000])
                        {
                            var name = QuantizedAdamLaunches.Name(update, bf16, format.Bits);
                            var what = $"{blocks} blocks of {format.BlockSize}, {(stochastic ? "stochastic" : "nearest")}, 2 steps";
                            var (state, target) = Case(device, format, blocks, bf16, update, stochastic);
                            yield return new Check(name, $"{what}: codes, absmax", blocks * format.BlockSize, state.Abs, state.Ulp, 0);
                            yield return new Check(name, $"{what}: {(update ? "weights" : "direction")}", blocks * format.BlockSize, target.Abs, target.Ulp, 1);
                        }
    }

    private static ((long Ulp, double Abs) State, (long Ulp, double Abs) Target) Case(int device, (int Bits, int BlockSize, string M, string V) format,
        long blocks, bool bf16, bool update, bool stochastic)
    {
        var n = blocks * format.BlockSize;
        var codeBytes = n * format.Bits / 8;
        var random = new Random((int)(blocks * 31 + format.Bits * 7 + (bf16 ? 1 : 0) + (update ? 2 : 0) + (stochastic ? 4 : 0)));
        var round = bf16 ? (Func<float, float>)Bf16.Round : x => x;
        var g = Normal(random, n, 1.0f).Select(round).ToArray();
        var w = Normal(random, n, 1.0f).Select(round).ToArray();
        var (mCodes, vCodes) = (new byte[codeBytes], new byte[codeBytes]);
        random.NextBytes(mCodes);
        random.NextBytes(vCodes);
        var mAbsmax = Normal(random, blocks, 0.1f).Select(x => MathF.Abs(x) + 1e-3f).ToArray();
        var vAbsmax = Normal(random, blocks, 0.01f).Select(x => MathF.Abs(x) + 1e-4f).ToArray();
        if (blocks > 2)
        {
            // Block 2 decodes to zeros and gets a zero gradient: its new moments are 0, so the scale is clipped.
            Array.Clear(g, 2 * format.BlockSize, format.BlockSize);
            mAbsmax[2] = vAbsmax[2] = 0;
        }
        var (mMap, vMap) = (Maps[format.M], Maps[format.V]);
        var reference = new State(mCodes.ToArray(), mAbsmax.ToArray(), vCodes.ToArray(), vAbsmax.ToArray());
        var expected = update ? w.ToArray() : new float[n];

        using var dg = Upload(g, bf16);
        using var dt = update ? Upload(w, bf16) : Upload(new float[n], bf16);
        using var dmc = DeviceBuffer.Of(mCodes);
        using var dma = DeviceBuffer.Of(mAbsmax);
        using var dvc = DeviceBuffer.Of(vCodes);
        using var dva = DeviceBuffer.Of(vAbsmax);
        using var dmm = DeviceBuffer.Of(mMap);
        using var dvm = DeviceBuffer.Of(vMap);
        for (var step = 1; step <= 2; step++)
        {
            var scalars = new AdamScalars(0.9, 0.999, 1e-8, step == 1 ? Math.Sqrt(1 - 0.999) : 1.0, StepSize: 1e-3, DecayFactor: step == 1 ? 1 - 1e-5 : 1.0);
            var (mKey, vKey) = ((uint)random.Next(), (uint)random.Next());
            Launch(device, bf16, format, blocks, dg, dt, dmc, dma, dmm, dvc, dva, dvm, scalars, stochastic, mKey, vKey, update);
            Reference(g, expected, reference, format, mMap, vMap, scalars, bf16, update, stochastic, mKey, vKey);
        }
        CudaDriver.Synchronize();

        long differing = 0;
        var actualM = dmc.Read<byte>(codeBytes);
        var actualV = dvc.Read<byte>(codeBytes);
        for (long k = 0; k < codeBytes; k++) differing += (actualM[k] != reference.MCodes[k] ? 1 : 0) + (actualV[k] != reference.VCodes[k] ? 1 : 0);
        var absmax = Worst(Compare.F32(dma.Read<float>(blocks), reference.MAbsmax), Compare.F32(dva.Read<float>(blocks), reference.VAbsmax));
        var target = bf16
            ? Compare.Bf16(dt.Read<ushort>(n), expected.Select(Bf16.FromSingle).ToArray())
            : Compare.F32(dt.Read<float>(n), expected);
        return ((absmax.Ulp + differing, absmax.Abs), target);
    }

    private static void Launch(int device, bool bf16, (int Bits, int BlockSize, string M, string V) format, long blocks,
        DeviceBuffer g, DeviceBuffer target, DeviceBuffer mc, DeviceBuffer ma, DeviceBuffer mm, DeviceBuffer vc, DeviceBuffer va, DeviceBuffer vm,
        AdamScalars scalars, bool stochastic, uint mKey, uint vKey, bool update) =>
        QuantizedAdamLaunches.Launch(device, bf16, format.Bits, format.BlockSize, blocks, g.Address, target.Address,
            new QuantizedBuffers(mc.Address, ma.Address, mm.Address, stochastic, mKey), new QuantizedBuffers(vc.Address, va.Address, vm.Address, stochastic, vKey),
            scalars, MinScale, update);

    /// <summary>The reference's quantized moments, updated in place step by step.</summary>
    private sealed record State(byte[] MCodes, float[] MAbsmax, byte[] VCodes, float[] VAbsmax);

    /// <summary>One step of quantized_adam.cu's arithmetic in plain C# (float32 IEEE ops; FMA where the kernel fuses).</summary>
    private static void Reference(float[] g, float[] target, State state, (int Bits, int BlockSize, string M, string V) format, float[] mMap, float[] vMap,
        AdamScalars s, bool bf16, bool update, bool stochastic, uint mKey, uint vKey)
    {
        float R(float x) => bf16 ? Bf16.Round(x) : x;
        float b1 = (float)s.Beta1, c1 = (float)(1 - s.Beta1), b2 = (float)s.Beta2, c2 = (float)(1 - s.Beta2), eps = (float)s.Eps, sbc2 = (float)s.SqrtBiasCorrection2;
        float decay = (float)s.DecayFactor, negativeStep = (float)-s.StepSize;
        var (size, bits) = (format.BlockSize, format.Bits);
        var (m, v) = (new float[size], new float[size]);
        for (long b = 0; b < state.MAbsmax.LongLength; b++)
        {
            float mMax = 0, vMax = 0;
            for (var t = 0; t < size; t++)
            {
                var i = b * size + t;
                var mOld = R(mMap[Code(state.MCodes, i, bits)] * state.MAbsmax[b]);
                var vOld = R(vMap[Code(state.VCodes, i, bits)] * state.VAbsmax[b]);
                var gi = g[i];
                m[t] = R(MathF.FusedMultiplyAdd(c1, gi, R(mOld * b1)));
                v[t] = R(MathF.FusedMultiplyAdd(c2 * gi, gi, R(vOld * b2)));
                var root = R(MathF.Sqrt(v[t]));
                var denom = R((s.SqrtBiasCorrection2 != 1.0 ? R(root / sbc2) : root) + eps);
                if (update)
                {
                    var wi = s.DecayFactor != 1 ? R(target[i] * decay) : target[i];
                    target[i] = R(wi + negativeStep * m[t] / denom);
                }
                else target[i] = R(m[t] / denom);
                mMax = MaxNaN(mMax, MathF.Abs(m[t]));
                vMax = MaxNaN(vMax, MathF.Abs(v[t]));
            }
            var mScale = mMax < MinScale ? MinScale : mMax;
            var vScale = vMax < MinScale ? MinScale : vMax;
            for (var t = 0; t < size; t++)
            {
                var i = b * size + t;
                SetCode(state.MCodes, i, bits, Quantize(m[t] / mScale, mMap, stochastic, mKey, i));
                SetCode(state.VCodes, i, bits, Quantize(v[t] / vScale, vMap, stochastic, vKey, i));
            }
            state.MAbsmax[b] = mScale;
            state.VAbsmax[b] = vScale;
        }
    }

    private static float MaxNaN(float a, float b) => float.IsNaN(a) || a > b ? a : b;

    /// <summary>BlockQuantizer's code of y = x / scale: binary search, then nearest or stochastic rounding up (the top code clamps).</summary>
    private static int Quantize(float y, float[] map, bool stochastic, uint key, long index)
    {
        var code = 0;
        for (var step = map.Length / 2; step >= 1; step >>= 1)
            if (y >= map[code + step]) code += step;
        var upCode = Math.Min(code + 1, map.Length - 1);
        var gap = map[upCode] - map[code];
        var residual = y - map[code];
        var up = stochastic ? residual > Uniform(key, index) * gap : residual >= gap * 0.5f;
        return up ? upCode : code;
    }

    /// <summary>RoundingNoise.Uniform(RoundingNoise.Bits(key, index)), written out (the harness links no TorchSharp code).</summary>
    private static float Uniform(uint key, long index)
    {
        var x = unchecked(key + (uint)index * 0x9E3779B9u);
        x ^= x >> 16;
        x = unchecked(x * 0x21F0AAADu);
        x ^= x >> 15;
        x = unchecked(x * 0xD35A2D97u);
        x ^= x >> 15;
        return (x >> 8) * (1.0f / 16777216.0f);
    }

    private static int Code(byte[] codes, long i, int bits) => bits == 8 ? codes[i] : (i & 1) == 0 ? codes[i >> 1] >> 4 : codes[i >> 1] & 15;

    private static void SetCode(byte[] codes, long i, int bits, int code)
    {
        if (bits == 8) codes[i] = (byte)code;
        else codes[i >> 1] = (byte)((i & 1) == 0 ? (codes[i >> 1] & 0x0F) | (code << 4) : (codes[i >> 1] & 0xF0) | code);
    }

    internal static DeviceBuffer Upload(float[] values, bool bf16) => bf16 ? DeviceBuffer.Of(values.Select(Bf16.FromSingle).ToArray()) : DeviceBuffer.Of(values);

    private static (long Ulp, double Abs) Worst((long Ulp, double Abs) a, (long Ulp, double Abs) b) => (Math.Max(a.Ulp, b.Ulp), Math.Max(a.Abs, b.Abs));

    /// <summary><paramref name="count"/> normal deviates (Box–Muller) times <paramref name="scale"/>.</summary>
    internal static float[] Normal(Random random, long count, float scale)
    {
        var values = new float[count];
        for (long i = 0; i < count; i++)
            values[i] = (float)(Math.Sqrt(-2 * Math.Log(1.0 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble())) * scale;
        return values;
    }
}
