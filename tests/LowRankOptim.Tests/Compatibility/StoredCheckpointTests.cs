using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text.Json;
using System.Text.Json.Serialization;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using Xunit.Sdk;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Compatibility;

/// <summary>
/// Checkpoint files are user data: every release must load the files of earlier releases and continue the
/// run exactly. tests/fixtures/checkpoints/&lt;release&gt;/ holds, per method, the optimizer file
/// (<c>&lt;method&gt;.ckpt</c>, written by <c>save_state_dict</c> after <see cref="StepsBeforeSave"/> steps) and
/// <c>&lt;method&gt;.json</c> (the parameters at the save and after <see cref="StepsAfterSave"/> more
/// uninterrupted steps, as raw little-endian float32 in base64, plus each group's lr and each parameter's
/// step count at the save). This test rebuilds the optimizer with today's factory call, puts the saved
/// parameters back, loads the file, feeds the same closed-form gradients and expects the stored result bit
/// for bit (CPU, float32, one torch thread).
/// <para>
/// Bit-exactness holds only where libtorch's CPU arithmetic is the generating machine's: MKL picks its code
/// path by CPU (and by thread count, hence the pinned single thread). Each file records the generating
/// machine (<see cref="Machine"/>); on another machine the comparison is |a − e| ≤ <see cref="OtherMachineAtol"/> +
/// <see cref="OtherMachineRtol"/>·|e| (a few ulps of drift pass, a lost or misread state does not), and the
/// message says so. <c>LOWRANKOPTIM_CHECKPOINTS_EXACT=1</c> demands bit-exactness everywhere.
/// </para>
/// <para>
/// Writing a release folder: build Release, then
/// <c>LOWRANKOPTIM_WRITE_CHECKPOINTS=$PWD/tests/fixtures/checkpoints/&lt;release&gt; dotnet test tests/LowRankOptim.Tests -c Release --filter FullyQualifiedName~StoredCheckpointTests</c>
/// (existing files are never overwritten). Never edit <see cref="Create"/>'s existing cases, the model, or the
/// formulas below: the stored files of every release depend on them. Add cases with new names instead.
/// </para>
/// Only stable public API is used: the <c>LowRank</c> factories with named arguments, <c>step</c>,
/// <c>save_state_dict</c>/<c>load_state_dict</c> and TorchSharp's param groups; <see cref="StepCounters"/>
/// and the SGD case are the exceptions, each in one place.
/// </summary>
[Collection(SerialCollection.Name)] // pins libtorch's process-wide thread count while it runs
public sealed class StoredCheckpointTests
{
    public const string WriteVariable = "LOWRANKOPTIM_WRITE_CHECKPOINTS";
    public const string ExactVariable = "LOWRANKOPTIM_CHECKPOINTS_EXACT";
    /// <summary>Tolerance off the generating machine: about 10× the drift measured between MKL code paths (≤ 1.5e-7).</summary>
    public const double OtherMachineAtol = 1e-6, OtherMachineRtol = 1e-5;
    public const int StepsBeforeSave = 5;
    public const int StepsAfterSave = 5;
    private const int Schema = 1;

    /// <summary>Every stored method; each name is also its file name. Only ever append.</summary>
    public static readonly string[] Methods =
    [
        "galore-svd", "galore-svd-full", "galore-svd-right-split-groups", "galore-randomized",
        "galore-adafactor", "galore-adafactor-fixed-lr-randomized",
        "dct-adamw", "dct-adamw-fast",
        "online-subspace-descent",
        "galore-plus", "galore-plus-heads-residual-reestimated", "galore-plus-per-head-residual-in-warmup",
        "smmf", "smmf-reference-kernel-l2-no-beta",
        "adamw", "adamw-galore-conventions",
        "sgd-momentum",
        "adamw-4bit", "adamw-bf16-stochastic",
        "dct-adamw-fast-projection",
        "adamw-8bit-blocks-384",
    ];

    /// <summary>
    /// The model: q (Linear 16→24, no bias: weight 24×16) and o (Linear 24→16: weight 16×24, bias 16). Only a
    /// parameter container (never called); Linear layers so GaLore+ can read attention heads by module name.
    /// </summary>
    private static Sequential Model() => nn.Sequential(("q", nn.Linear(16, 24, hasBias: false)), ("o", nn.Linear(24, 16)));

    private static AttentionHeads? Heads(string module) => module switch
    {
        "q" => AttentionHeads.QueryKeyValue(4), // heads along the 24 rows, head size 6
        "o" => AttentionHeads.Output(4), // heads along the 24 columns
        _ => null,
    };

    /// <summary>
    /// The optimizer of each method. Subspace refreshes fall on both sides of the save at step 5: with period 3 at
    /// steps 1, 4, 7, 10 (DCT re-selects at step 1 and at multiples of its period).
    /// </summary>
    internal static LowRankOptimizer Create(string method, Sequential model)
    {
        var ps = model.parameters().ToList();
        return method switch
        {
            "galore-svd" => LowRank.GaLore(ps, lr: 0.01, rank: 4, update_proj_gap: 3, scale: 0.5, weight_decay: 0.1),
            "galore-svd-full" => LowRank.GaLore(ps, lr: 0.01, rank: 4, update_proj_gap: 3, scale: 0.25, proj_type: ProjectionType.Full,
                conventions: AdamConventions.TorchOptim, weight_decay: 0.05),
            "galore-svd-right-split-groups" => LowRank.GaLore(LowRank.SplitParameters(model), lr: 0.01, rank: 4, update_proj_gap: 3,
                proj_type: ProjectionType.Right),
            "galore-randomized" => LowRank.GaLore(ps, lr: 0.01, rank: 4, update_proj_gap: 3, scale: 0.5, weight_decay: 0.1,
                projector: GaLoreProjector.RandomizedSvd, oversampling: 3, power_iterations: 1, seed: 12),
            "galore-adafactor" => LowRank.GaLoreAdafactor([new LowRankParamGroup(ps)], beta1: 0.9, rank: 4, update_proj_gap: 3,
                weight_decay: 0.05),
            "galore-adafactor-fixed-lr-randomized" => LowRank.GaLoreAdafactor([new LowRankParamGroup(ps)], lr: 0.01, relative_step: false,
                scale_parameter: false, rank: 4, update_proj_gap: 3, projector: GaLoreProjector.RandomizedSvd, seed: 3),
            "dct-adamw" => LowRank.DctAdamW(ps, lr: 0.01, weight_decay: 0.05, rank: 4, update_proj_gap: 3),
            "dct-adamw-fast" => LowRank.DctAdamW(ps, lr: 0.01, rank: 4, update_proj_gap: 2, sim_type: DctTransformMethod.FastTransform),
            "online-subspace-descent" => LowRank.OnlineSubspaceDescent(ps, lr: 0.01, rank: 4, update_proj_gap: 3, weight_decay: 0.1),
            "galore-plus" => LowRank.GaLorePlus([new LowRankParamGroup(ps)], lr: 0.01, rank: 4, update_proj_gap: 3, power_iterations: 1, seed: 5),
            // Residual warm-up ends at step 2; the entries are re-chosen at the refreshes of steps 4, 7, 10.
            "galore-plus-heads-residual-reestimated" => LowRank.GaLorePlus(model, Heads, lr: 0.01, weight_decay: 0.05, rank: 4,
                update_proj_gap: 3, power_iterations: 1, seed: 4, residual_density: 0.25, residual_warmup: 2, residual_reestimate: true,
                residual_scale: 0.5),
            // The save at step 5 falls inside the 7-step residual warm-up: the accumulator must resume.
            "galore-plus-per-head-residual-in-warmup" => LowRank.GaLorePlus(model, Heads, lr: 0.01, rank: 3, update_proj_gap: 3, seed: 9,
                cross_head: CrossHeadReading.PerHeadShortSide, residual_density: 0.1, residual_warmup: 7),
            "smmf" => LowRank.Smmf(ps, lr: 0.01, weight_decay: 0.01),
            "smmf-reference-kernel-l2-no-beta" => LowRank.Smmf(ps, lr: 0.01, beta: null, decay_rate: -0.8, vector_reshape: false,
                weight_decay: 0.01, weight_decay_mode: SmmfWeightDecayMode.Adam, kernel: KernelPreference.Reference),
            "adamw" => LowRank.AdamW(ps, lr: 0.01, weight_decay: 0.01),
            "adamw-galore-conventions" => LowRank.AdamW(ps, lr: 0.01, eps: 1e-6, weight_decay: 0.02, conventions: AdamConventions.GaLoreReference),
            // No factory: the constructor with an SGD rule (the one case outside the factories).
            "sgd-momentum" => new LowRankOptimizer([new LowRankParamGroup(ps)], new LowRankOptions
            {
                LearningRate = 0.05, WeightDecay = 0.01, DecayOrder = WeightDecayOrder.BeforeUpdate,
                Projection = FullSpace.Instance, Rule = new SgdConfig(Momentum: 0.9, Nesterov: true),
            }),
            // Compressed moments (options format 3): the 24×16 and 16×24 weights are 3 blocks of 128 each; the bias stays dense.
            "adamw-4bit" => new LowRankOptimizer([new LowRankParamGroup(ps)], WithStorage(LowRankPresets.AdamW(lr: 0.01, weight_decay: 0.01),
                new MomentStorage(MomentFormat.Blockwise4Bit, MinElements: 128))),
            "adamw-bf16-stochastic" => new LowRankOptimizer([new LowRankParamGroup(ps)], WithStorage(LowRankPresets.AdamW(lr: 0.01),
                new MomentStorage(MomentFormat.BFloat16, global::LowRankOptim.Kernels.StateRounding.Stochastic, Seed: 3))),
            "dct-adamw-fast-projection" => LowRank.DctAdamW(ps, lr: 0.01, weight_decay: 0.05, rank: 4, update_proj_gap: 3,
                sim_type: DctTransformMethod.FastTransformProjection),
            // Options format 5: the block size (torchao's block_size). This model's weights (384 entries) hold no 2048-entry
            // block, so one 384-entry block each (a multiple of 32, not a power of two); 2048-entry blocks resume bit-exactly in
            // BlockSizeTests. The bias stays dense.
            "adamw-8bit-blocks-384" => new LowRankOptimizer([new LowRankParamGroup(ps)], WithStorage(LowRankPresets.AdamW(lr: 0.01, weight_decay: 0.01),
                new MomentStorage(MomentFormat.Blockwise8Bit, MinElements: 384, BlockSize: 384))),
            _ => throw new ArgumentException($"unknown stored-checkpoint method '{method}'", nameof(method)),
        };
    }

    private static LowRankOptions WithStorage(LowRankOptions options, MomentStorage storage)
    {
        options.MomentStorage = storage;
        return options;
    }

    /// <summary>
    /// What decides libtorch's CPU rounding here: architecture, CPU vendor and signature (family/model/stepping),
    /// the vector extensions, and the TorchSharp version (its libtorch).
    /// </summary>
    public static string Machine()
    {
        var parts = new List<string> { RuntimeInformation.ProcessArchitecture.ToString() };
        if (X86Base.IsSupported)
        {
            var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
            var vendor = string.Concat(new[] { ebx, edx, ecx }.Select(r => System.Text.Encoding.ASCII.GetString(BitConverter.GetBytes(r))));
            var signature = X86Base.CpuId(1, 0).Eax;
            parts.Add($"{vendor} signature 0x{signature:x}");
        }
        (string Name, bool Supported)[] isa =
        [
            ("avx", Avx.IsSupported), ("avx2", Avx2.IsSupported), ("fma", Fma.IsSupported), ("avx512f", Avx512F.IsSupported),
            ("avx512bw", Avx512BW.IsSupported), ("avx512dq", Avx512DQ.IsSupported), ("avx512vl", Avx512F.VL.IsSupported),
            ("avx512vbmi", Avx512Vbmi.IsSupported), ("avx10v1", Avx10v1.IsSupported),
        ];
        parts.AddRange(isa.Where(x => x.Supported).Select(x => x.Name));
        parts.Add("TorchSharp " + typeof(torch).Assembly.GetName().Version);
        return string.Join(" ", parts);
    }

    /// <summary>The step count of every parameter state (the one use of LowRankOptimizer's state API).</summary>
    private static long[] StepCounters(LowRankOptimizer opt) => opt.States.Select(s => s.Step).ToArray();

    /// <summary>Pseudo-random in [−0.5, 0.5) from integer arithmetic only (no libm, no RNG): the same on every machine.</summary>
    private static double Hash(long a, long b, long c) => (((a * a * 31 + a * (b * 97 + 13) + b * b * 7 + c * 1009 + 11) % 65521) / 65521.0) - 0.5;

    /// <summary>Initial value of element i of parameter p.</summary>
    private static float Initial(int p, int i) => (float)(0.6 * Hash(i, 17 + p, 3 * p));

    /// <summary>The gradient fed at step k (1-based) to element i of parameter p, whose value is w.</summary>
    private static float Gradient(int p, int i, int k, float w) => (float)(0.2 * Hash(i, k, p)) + 0.01f * w;

    /// <summary>After step 3 every group's lr is halved (a scheduler's work): a loaded file must bring the halved lr back.</summary>
    private static void Train(LowRankOptimizer opt, IReadOnlyList<Parameter> ps, int fromStep, int toStep)
    {
        for (var k = fromStep; k <= toStep; k++)
        {
            using var scope = NewDisposeScope();
            for (var p = 0; p < ps.Count; p++)
            {
                var w = Values(ps[p]);
                var g = new float[w.Length];
                for (var i = 0; i < w.Length; i++) g[i] = Gradient(p, i, k, w[i]);
                // Cloned into libtorch's 64-byte-aligned memory: tensor(float[]) wraps the managed array, and libtorch's
                // CPU matmul rounds differently for some alignments (8 mod 16), which would make the run irreproducible.
                using var wrapped = tensor(g, ps[p].shape);
                ps[p].grad = wrapped.clone();
            }
            opt.step();
            opt.zero_grad();
            if (k == 3)
                foreach (var group in opt.ParamGroups) group.LearningRate *= 0.5;
        }
    }

    private static float[] Values(Tensor t) => t.detach().cpu().contiguous().data<float>().ToArray();

    private static void SetValues(Parameter p, float[] values)
    {
        using var _ = no_grad();
        using var v = tensor(values, p.shape);
        p.copy_(v);
    }

    private static string ToBase64(float[] values) => Convert.ToBase64String(MemoryMarshal.AsBytes(values.AsSpan()));

    private static float[] FromBase64(string text) => MemoryMarshal.Cast<byte, float>(Convert.FromBase64String(text)).ToArray();

    // ---- stored files --------------------------------------------------------------------------------

    public sealed record StoredParameter(
        [property: JsonPropertyName("name")] string Name,
        [property: JsonPropertyName("shape")] long[] Shape,
        [property: JsonPropertyName("at_save")] string AtSave,
        [property: JsonPropertyName("after_continuation")] string AfterContinuation);

    public sealed record StoredCase(
        [property: JsonPropertyName("schema")] int Schema,
        [property: JsonPropertyName("method")] string Method,
        [property: JsonPropertyName("release")] string Release,
        [property: JsonPropertyName("machine")] string Machine,
        [property: JsonPropertyName("torch_threads")] int TorchThreads,
        [property: JsonPropertyName("values")] string Values,
        [property: JsonPropertyName("steps_before_save")] int StepsBeforeSave,
        [property: JsonPropertyName("steps_after_save")] int StepsAfterSave,
        [property: JsonPropertyName("learning_rates_at_save")] double[] LearningRatesAtSave,
        [property: JsonPropertyName("step_counters_at_save")] long[] StepCountersAtSave,
        [property: JsonPropertyName("parameters")] StoredParameter[] Parameters);

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    internal static string StoredRoot => Path.Combine(AppContext.BaseDirectory, "fixtures", "checkpoints");

    /// <summary>(release, method) of every stored file, copied next to the test assembly from tests/fixtures/checkpoints.</summary>
    public static TheoryData<string, string> StoredFiles()
    {
        var data = new TheoryData<string, string>();
        if (!Directory.Exists(StoredRoot)) return data;
        foreach (var dir in Directory.EnumerateDirectories(StoredRoot).Order(StringComparer.Ordinal))
            foreach (var file in Directory.EnumerateFiles(dir, "*.json").Order(StringComparer.Ordinal))
                data.Add(Path.GetFileName(dir), Path.GetFileNameWithoutExtension(file));
        return data;
    }

    [Theory]
    [MemberData(nameof(StoredFiles))]
    public void StoredCheckpointLoadsAndContinuesTheRunExactly(string release, string method) =>
        TorchThreads.OnOne(() => VerifyStored(Path.Combine(StoredRoot, release), method));

    [Fact]
    public void EveryMethodHasAStoredCheckpoint()
    {
        Assert.True(BitConverter.IsLittleEndian, "the stored values are little-endian float32");
        Assert.True(Directory.Exists(StoredRoot), $"{StoredRoot} is missing: the csproj must copy tests/fixtures/checkpoints to the output");
        var stored = Directory.EnumerateDirectories(StoredRoot)
            .SelectMany(d => Directory.EnumerateFiles(d, "*.json")).Select(Path.GetFileNameWithoutExtension).ToHashSet();
        var missing = Methods.Where(m => !stored.Contains(m)).ToList();
        Assert.True(missing.Count == 0, $"methods without a stored checkpoint in any release folder: {string.Join(", ", missing)} " +
            $"(write a new release folder with {WriteVariable}=<dir>)");
        var unknown = stored.Where(m => !Methods.Contains(m)).ToList();
        Assert.True(unknown.Count == 0, $"stored checkpoints of unknown methods: {string.Join(", ", unknown)}");
    }

    /// <summary>Writes one release folder when <see cref="WriteVariable"/> names it; skipped otherwise.</summary>
    [WriteCheckpointsFact]
    public void WriteCheckpoints() => TorchThreads.OnOne(() =>
    {
        var dir = Path.GetFullPath(Environment.GetEnvironmentVariable(WriteVariable)!);
        Directory.CreateDirectory(dir);
        var release = Path.GetFileName(dir.TrimEnd(Path.DirectorySeparatorChar));
        foreach (var method in Methods)
        {
            var ckpt = Path.Combine(dir, method + ".ckpt");
            var json = Path.Combine(dir, method + ".json");
            if (File.Exists(ckpt) || File.Exists(json))
                throw new InvalidOperationException($"{ckpt} or {json} exists; stored checkpoints are never overwritten (delete them first if you mean it)");
            WriteCase(method, release, ckpt, json);
        }
        foreach (var method in Methods) VerifyStored(dir, method);
    });

    private static void WriteCase(string method, string release, string ckptPath, string jsonPath)
    {
        using var scope = NewDisposeScope();
        var model = Model();
        var named = model.named_parameters().ToList();
        var ps = named.Select(n => n.parameter).ToList();
        for (var p = 0; p < ps.Count; p++)
            SetValues(ps[p], Enumerable.Range(0, (int)ps[p].numel()).Select(i => Initial(p, i)).ToArray());
        using var opt = Create(method, model);
        Train(opt, ps, 1, StepsBeforeSave);
        opt.save_state_dict(ckptPath);
        var atSave = ps.Select(Values).ToList();
        var lrs = opt.ParamGroups.Select(g => g.LearningRate).ToArray();
        var steps = StepCounters(opt);
        Train(opt, ps, StepsBeforeSave + 1, StepsBeforeSave + StepsAfterSave);
        var stored = new StoredCase(Schema, method, release, Machine(), torch.get_num_threads(),
            "parameters: raw little-endian float32, base64; gradients and initial values: StoredCheckpointTests.Gradient/Initial",
            StepsBeforeSave, StepsAfterSave, lrs, steps,
            [.. named.Select((n, p) => new StoredParameter(n.name, n.parameter.shape, ToBase64(atSave[p]), ToBase64(Values(ps[p]))))]);
        File.WriteAllText(jsonPath, JsonSerializer.Serialize(stored, Json) + "\n");
    }

    private static void VerifyStored(string dir, string method)
    {
        using var scope = NewDisposeScope();
        var stored = JsonSerializer.Deserialize<StoredCase>(File.ReadAllText(Path.Combine(dir, method + ".json")))!;
        var what = $"{Path.GetFileName(dir)}/{method}";
        Assert.True(stored.Schema == Schema, $"{what}: schema {stored.Schema}, this test reads {Schema}");
        Assert.True(stored.Method == method, $"{what}: the file says method '{stored.Method}'");

        var model = Model();
        var named = model.named_parameters().ToList();
        var ps = named.Select(n => n.parameter).ToList();
        Assert.True(stored.Parameters.Select(p => p.Name).SequenceEqual(named.Select(n => n.name)),
            $"{what}: stored parameters {string.Join(", ", stored.Parameters.Select(p => p.Name))}, model {string.Join(", ", named.Select(n => n.name))}");
        for (var p = 0; p < ps.Count; p++)
        {
            Assert.True(stored.Parameters[p].Shape.SequenceEqual(ps[p].shape), $"{what}: shape of {stored.Parameters[p].Name}");
            SetValues(ps[p], FromBase64(stored.Parameters[p].AtSave));
        }

        using var opt = Create(method, model);
        opt.load_state_dict(Path.Combine(dir, method + ".ckpt"));

        var lrs = opt.ParamGroups.Select(g => g.LearningRate).ToArray();
        Assert.True(lrs.SequenceEqual(stored.LearningRatesAtSave),
            $"{what}: group learning rates after the load are [{string.Join(", ", lrs.Select(x => x.ToString("R")))}], " +
            $"the saved run's were [{string.Join(", ", stored.LearningRatesAtSave.Select(x => x.ToString("R")))}]");
        var steps = StepCounters(opt);
        Assert.True(steps.SequenceEqual(stored.StepCountersAtSave),
            $"{what}: step counters after the load are [{string.Join(", ", steps)}], the saved run's were [{string.Join(", ", stored.StepCountersAtSave)}]");

        Train(opt, ps, stored.StepsBeforeSave + 1, stored.StepsBeforeSave + stored.StepsAfterSave);

        var exact = stored.Machine == Machine() || Environment.GetEnvironmentVariable(ExactVariable) == "1";
        var comparison = exact ? "bit-exact" : $"|a − e| ≤ {OtherMachineAtol:R} + {OtherMachineRtol:R}·|e|, since this machine ({Machine()}) " +
            $"is not the generating one ({stored.Machine}); {ExactVariable}=1 demands bit-exactness";
        var failures = new List<string>();
        for (var p = 0; p < ps.Count; p++)
        {
            var actual = Values(ps[p]);
            var expected = FromBase64(stored.Parameters[p].AfterContinuation);
            if (actual.Length != expected.Length)
            {
                failures.Add($"{stored.Parameters[p].Name}: {actual.Length} values, stored {expected.Length}");
                continue;
            }
            int differ = 0, outside = 0, worst = -1;
            double maxAbs = 0;
            for (var i = 0; i < actual.Length; i++)
            {
                if (BitConverter.SingleToInt32Bits(actual[i]) == BitConverter.SingleToInt32Bits(expected[i])) continue;
                differ++;
                var d = Math.Abs((double)actual[i] - expected[i]);
                if (double.IsNaN(d)) d = double.PositiveInfinity;
                if (!(d <= OtherMachineAtol + OtherMachineRtol * Math.Abs(expected[i]))) outside++;
                if (worst < 0 || d > maxAbs) (maxAbs, worst) = (d, i);
            }
            if (exact ? differ > 0 : outside > 0)
                failures.Add($"{stored.Parameters[p].Name}: {differ} of {actual.Length} values not bit-identical ({outside} outside the other-machine " +
                    $"tolerance), max |Δ| = {maxAbs:R} at flat index {worst} ({actual[worst]:R} vs stored {expected[worst]:R})");
        }
        if (failures.Count > 0)
            throw new XunitException($"{what}: after loading the checkpoint and {stored.StepsAfterSave} more steps the parameters differ from " +
                $"the stored uninterrupted run ({comparison}):\n  {string.Join("\n  ", failures)}");
    }
}

/// <summary>A fact that runs only when <see cref="StoredCheckpointTests.WriteVariable"/> is set (xunit 2 has no run-time skip).</summary>
public sealed class WriteCheckpointsFactAttribute : FactAttribute
{
    public WriteCheckpointsFactAttribute()
    {
        if (string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(StoredCheckpointTests.WriteVariable)))
            Skip = $"writes stored checkpoints only when {StoredCheckpointTests.WriteVariable}=<release folder> is set";
    }
}
