using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Support;

/// <summary>
/// One method of the catalog: a name and how to build it over a model whose Linear layers are named
/// <c>fc1</c> (20×12 weight) and <c>fc2</c> (a weight with 20 columns), as <see cref="TestProblems.Mlp"/> and
/// <see cref="ShapesModel"/> are. Everything else a conformance test needs is derived from the optimizer it builds.
/// </summary>
/// <param name="Name">The row's name in test names.</param>
/// <param name="Create">Builds the optimizer through the public factories (one line: switching to presets is a rename).</param>
/// <param name="Replays">The golden-fixture algorithms this row's factory reproduces (fixture replay goes through it), if any.</param>
/// <param name="Presets">Knob settings of the method's preset (one row per preset has them) that together give every knob a non-default value.</param>
public sealed record CatalogMethod(string Name, Func<nn.Module, LowRankOptimizer> Create, FixtureReplay? Replays = null, IReadOnlyList<PresetSetting>? Presets = null)
{
    public override string ToString() => Name;

    /// <summary>Where the groups have kernel choices (<see cref="KernelChoices.Of(LowRankOptions)"/>: "rule", "DCT projection", "basis rule"), derived from a built optimizer.</summary>
    public IReadOnlySet<string> KernelChoiceSites => Derived.Value.KernelChoiceSites;

    /// <summary>True when every group's rule has betas (OneCycleLR can cycle β1; betas can be mis-set).</summary>
    public bool HasBetas => Derived.Value.HasBetas;

    /// <summary>This method's optimizer over <paramref name="model"/> after <paramref name="steps"/> steps on <see cref="TestProblems.Data"/>(<paramref name="seed"/>).</summary>
    public LowRankOptimizer Trained(nn.Module<Tensor, Tensor> model, int steps, long seed = 3)
    {
        var (x, y) = TestProblems.Data(seed);
        var opt = Create(model);
        for (var k = 0; k < steps; k++)
        {
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
        }
        return opt;
    }

    /// <summary>True when the group learning rates drive the update (Adafactor's relative step ignores them, lr = 0).</summary>
    public bool UsesLearningRate => Derived.Value.UsesLearningRate;

    private Lazy<(IReadOnlySet<string> KernelChoiceSites, bool HasBetas, bool UsesLearningRate)> Derived { get; } = new(() =>
    {
        using var scope = NewDisposeScope();
        using var opt = Create(TestProblems.Mlp(0));
        var options = opt.ParamGroups.Cast<LowRankParamGroup>().Select(g => g.Options).ToList();
        return (options.SelectMany(o => KernelChoices.Of(o).Select(c => c.Where)).ToHashSet(),
                options.All(o => o.Rule is IBetasRuleConfig),
                options.All(o => o.LearningRate > 0));
    });
}

/// <summary>A preset's knob setting for the preset tests (tests/LowRankOptim.Tests/Presets).</summary>
/// <param name="Preset">The <see cref="LowRankPresets"/> method.</param>
/// <param name="Case">What the setting exercises.</param>
/// <param name="Knobs">Knob values by name.</param>
public sealed record PresetSetting(string Preset, string Case, Dictionary<string, object?> Knobs);

/// <summary>
/// THE list of methods the conformance tests (tests/LowRankOptim.Tests/Conformance) run over: resume,
/// native memory, planner = allocated, bad input, schedulers, dtypes, kernel choice across loads. A method
/// (or a notable variant) added here gets every one of them. Small ranks and gaps, so refreshes happen
/// within a few steps.
/// </summary>
public static class MethodCatalog
{
    /// <summary>fc1 (20×12) as a Q-like weight of 4 heads, fc2 (·×20) as an O-like weight of 4 heads.</summary>
    public static AttentionHeads? Heads(string module) => module switch
    {
        "fc1" => AttentionHeads.QueryKeyValue(4),
        "fc2" => AttentionHeads.Output(4),
        _ => null,
    };

    public static readonly IReadOnlyList<CatalogMethod> All =
    [
        new("galore-std", m => LowRank.GaLore(LowRank.SplitParameters(m), lr: 0.01, rank: 3, update_proj_gap: 3, scale: 0.5, weight_decay: 0.1),
            new(["adamw_hf", "galore_adamw"], FixtureCatalog.GaLore),
            Presets: [
                new("GaLore", "exact SVD", new()
                    {
                        ["lr"] = 0.02, ["beta1"] = 0.8, ["beta2"] = 0.95, ["eps"] = 1e-7, ["weight_decay"] = 0.1, ["rank"] = 7, ["update_proj_gap"] = 11,
                        ["scale"] = 0.5, ["proj_type"] = ProjectionType.Left, ["correct_bias"] = false, ["conventions"] = AdamConventions.TorchOptim,
                    }),
                new("GaLore", "randomized", new()
                    {
                        ["rank"] = 5, ["projector"] = GaLoreProjector.RandomizedSvd, ["oversampling"] = 3, ["power_iterations"] = 1, ["seed"] = 5L, ["optim_bits"] = 8, ["bf16_stochastic_round"] = true,
                        ["block_size"] = 2048,
                    })]),
        new("galore-full", m => LowRank.GaLore(LowRank.SplitParameters(m), lr: 0.01, rank: 4, update_proj_gap: 4, proj_type: ProjectionType.Full)),
        // Refreshes at steps 1, 4, 7, 10: the sketch of a refresh after a load must be the same draw.
        new("galore-randomized", m => LowRank.GaLore(LowRank.SplitParameters(m), lr: 0.01, rank: 3, update_proj_gap: 3, scale: 0.5, weight_decay: 0.1,
            projector: GaLoreProjector.RandomizedSvd, power_iterations: 1, seed: 12)),
        new("galore-randomized-full", m => LowRank.GaLore(LowRank.SplitParameters(m), lr: 0.01, rank: 4, update_proj_gap: 4, proj_type: ProjectionType.Full,
            projector: GaLoreProjector.RandomizedSvd, oversampling: 2)),
        // A fixed rate, as GaLore's training script runs it.
        new("galore-adafactor-momentum", m => LowRank.GaLoreAdafactor(LowRank.SplitParameters(m), lr: 0.01, relative_step: false, beta1: 0.9,
            rank: 3, update_proj_gap: 3, weight_decay: 0.05), new(["galore_adafactor"], FixtureCatalog.GaLoreAdafactor),
            Presets: [
                new("GaLoreAdafactor", "fixed lr", new()
                    {
                        ["lr"] = 0.03, ["eps1"] = 1e-20, ["eps2"] = 2e-3, ["clip_threshold"] = 2.0, ["decay_rate"] = -0.7, ["beta1"] = 0.85, ["weight_decay"] = 0.2,
                        ["scale_parameter"] = false, ["relative_step"] = false, ["rank"] = 6, ["update_proj_gap"] = 13, ["scale"] = 0.75,
                        ["proj_type"] = ProjectionType.Right, ["projector"] = GaLoreProjector.RandomizedSvd, ["oversampling"] = 4, ["power_iterations"] = 3, ["seed"] = 9L,
                        ["optim_bits"] = 16, ["bf16_stochastic_round"] = true,
                    }),
                new("GaLoreAdafactor", "warm-up", new() { ["warmup_init"] = true, ["rank"] = 3 }),
                new("GaLoreAdafactor", "8-bit momentum in blocks of 1024", new() { ["beta1"] = 0.9, ["optim_bits"] = 8, ["block_size"] = 1024 })]),
        // Hugging Face's defaults: relative step size and parameter scaling (lr unset).
        new("galore-adafactor-relative-step", m => LowRank.GaLoreAdafactor(LowRank.SplitParameters(m), beta1: 0.9, rank: 3, update_proj_gap: 3, weight_decay: 0.05)),
        // Re-selections at steps 1, 2, 4, 6, …: the indices are the whole projector state.
        new("dct-adamw", m => LowRank.DctAdamW(m.parameters(), lr: 0.01, weight_decay: 0.05, rank: 3, update_proj_gap: 2),
            new(["dct_adamw"], FixtureCatalog.DctAdamW),
            Presets: [
                new("DctAdamW", "every knob", new()
                    {
                        ["lr"] = 0.04, ["beta1"] = 0.7, ["beta2"] = 0.9, ["eps"] = 1e-6, ["weight_decay"] = 0.3, ["rank"] = 5, ["update_proj_gap"] = 3, ["scale"] = 0.5,
                        ["proj_type"] = ProjectionType.ReverseStd, ["sim_type"] = DctTransformMethod.FastTransform, ["ell_norm"] = 2.0, ["max_shape"] = 1000L, ["optim_bits"] = 8, ["bf16_stochastic_round"] = true,
                        ["block_size"] = 512,
                    })]),
        new("dct-adamw-fast", m => LowRank.DctAdamW(m.parameters(), lr: 0.01, rank: 4, update_proj_gap: 3, sim_type: DctTransformMethod.FastTransform)),
        // Every projection and back-projection by FFT (both sides: fc1 right, fc2 left), with a scale folded into the transform.
        new("dct-adamw-fast-projection", m => LowRank.DctAdamW(m.parameters(), lr: 0.01, weight_decay: 0.05, rank: 4, update_proj_gap: 3, scale: 0.5,
            sim_type: DctTransformMethod.FastTransformProjection)),
        // P takes a step of its own optimizer every step: its moments and step count are state too.
        new("osd-adamw", m => LowRank.OnlineSubspaceDescent(LowRank.SplitParameters(m), lr: 0.01, rank: 3, update_proj_gap: 5, weight_decay: 0.1),
            new(["osd_adamw"], FixtureCatalog.OnlineSubspaceDescent),
            Presets: [
                new("OnlineSubspaceDescent", "every knob", new()
                    {
                        ["lr"] = 0.05, ["beta1"] = 0.6, ["beta2"] = 0.97, ["eps"] = 1e-5, ["weight_decay"] = 0.4, ["rank"] = 4, ["update_proj_gap"] = 17, ["scale"] = 2.0,
                        ["proj_type"] = ProjectionType.Right, ["p_optimizer"] = new SgdConfig(0.5), ["p_weight_decay"] = 0.02, ["correct_bias"] = false,
                        ["conventions"] = AdamConventions.TorchOptim, ["optim_bits"] = 4, ["bf16_stochastic_round"] = true, ["block_size"] = 64,
                    })]),
        new("osd-adafactor-basis", m => LowRank.OnlineSubspaceDescent(LowRank.SplitParameters(m), lr: 0.01, rank: 3, update_proj_gap: 5,
            p_optimizer: new AdafactorConfig(Beta1: 0.9, RelativeStep: false), p_weight_decay: 0)),
        // Heads on fc1 and fc2, a sparse residual whose 7-step warm-up spans a save at step 5.
        new("galore-plus-heads-residual", m => LowRank.GaLorePlus(m, Heads, lr: 0.01, weight_decay: 0.05, rank: 3, update_proj_gap: 3,
            power_iterations: 1, seed: 4, residual_density: 0.2, residual_warmup: 7),
            Presets: [
                new("GaLorePlus", "every knob", new()
                    {
                        ["lr"] = 0.06, ["beta1"] = 0.5, ["beta2"] = 0.98, ["eps"] = 1e-4, ["weight_decay"] = 0.5, ["rank"] = 3, ["update_proj_gap"] = 19, ["scale"] = 1.5,
                        ["oversampling"] = 5, ["power_iterations"] = 4, ["seed"] = 12L, ["cross_head"] = CrossHeadReading.PerHeadShortSide, ["residual_density"] = 0.05,
                        ["residual_warmup"] = 7, ["residual_reestimate"] = true, ["residual_scale"] = 0.3, ["correct_bias"] = false, ["conventions"] = AdamConventions.TorchOptim,
                        ["optim_bits"] = 16, ["bf16_stochastic_round"] = true,
                    }),
                new("GaLorePlus", "8-bit moments in blocks of 128", new() { ["optim_bits"] = 8, ["block_size"] = 128 })]),
        // Per-head bases; after a 2-step warm-up the residual indices are re-chosen at every refresh (steps 4, 7, 10).
        new("galore-plus-per-head-residual-reestimated", m => LowRank.GaLorePlus(m, Heads, lr: 0.01, rank: 2, update_proj_gap: 3, seed: 9,
            cross_head: CrossHeadReading.PerHeadShortSide, residual_density: 0.3, residual_warmup: 2, residual_reestimate: true, residual_scale: 0.5)),
        new("smmf", m => LowRank.Smmf(m.parameters(), lr: 0.01, weight_decay: 0.01), new(["smmf"], FixtureCatalog.Smmf),
            Presets: [
                new("Smmf", "every knob", new()
                    {
                        ["lr"] = 0.07, ["beta"] = null, ["eps"] = 1e-6, ["weight_decay"] = 0.6, ["decay_rate"] = -0.8, ["growth_rate"] = 0.9, ["vector_reshape"] = false,
                        ["weight_decay_mode"] = SmmfWeightDecayMode.Adam, ["kernel"] = KernelPreference.Reference,
                    })]),
        new("smmf-reference-beta-none-no-vector-reshape", m => LowRank.Smmf(m.parameters(), lr: 0.01, beta: null, vector_reshape: false,
            decay_rate: -0.8, kernel: KernelPreference.Reference)),
        // One optimizer, one state file: GaLore-Adam (galore_torch conventions) on the Linear weights, SMMF with L2 decay on the rest.
        new("smmf-l2-with-galore-linear-weights", m => LowRank.Smmf(
            [new LowRankParamGroup(LowRank.SplitParameters(m)[0].Parameters, new LowRankOptions
                {
                    Projection = new SvdProjection(3, 3, 0.5),
                    Rule = new AdamConfig(EpsMode: AdamEpsilonMode.BeforeBiasCorrection),
                    DecayOrder = WeightDecayOrder.AfterUpdate,
                }),
             new LowRankParamGroup(LowRank.SplitParameters(m)[1].Parameters)],
            lr: 0.01, weight_decay: 0.05, weight_decay_mode: SmmfWeightDecayMode.Adam)),
        // A new random matrix at steps 1, 4, 7, 10 (drawn from the seed chain, so a resumed run draws the same ones).
        new("apollo", m => LowRank.Apollo(LowRank.SplitParameters(m), lr: 0.01, weight_decay: 0.05, rank: 3, update_proj_gap: 3),
            new(["apollo"], (f, parameters, _) =>
            {
                var (o, g) = (f.Optimizer, f.Groups.Single(g => g.ContainsKey("rank")));
                return LowRank.Apollo(FixtureCatalog.Groups(f, parameters), lr: (double)o["lr"]!, beta1: (double)o["betas"]![0]!, beta2: (double)o["betas"]![1]!,
                    eps: (double)o["eps"]!, weight_decay: (double)o["weight_decay"]!, rank: (int)g["rank"]!, update_proj_gap: (int)g["update_proj_gap"]!,
                    scale: (double)g["scale"]!, proj_type: FixtureCatalog.ProjectionTypeOf((string)g["proj_type"]!),
                    scale_type: (string)g["scale_type"]! == "channel" ? ApolloScaling.Channel : ApolloScaling.Tensor,
                    proj: (string)g["proj"]! == "svd" ? ApolloProjector.Svd : ApolloProjector.Random,
                    scale_front: (bool)o["scale_front"]!, disable_nl: (bool)o["disable_nl"]!, correct_bias: (bool)o["correct_bias"]!);
            }),
            Presets: [
                new("Apollo", "every knob", new()
                    {
                        ["lr"] = 0.09, ["beta1"] = 0.8, ["beta2"] = 0.9, ["eps"] = 1e-7, ["weight_decay"] = 0.1, ["rank"] = 5, ["update_proj_gap"] = 7,
                        ["scale"] = 2.0, ["proj_type"] = ProjectionType.Left, ["scale_type"] = ApolloScaling.Tensor, ["proj"] = ApolloProjector.Svd,
                        ["scale_front"] = true, ["disable_nl"] = true, ["correct_bias"] = false, ["optim_bits"] = 8, ["bf16_stochastic_round"] = true,
                        ["block_size"] = 1024,
                    }),
                new("ApolloMini", "every knob", new()
                    {
                        ["lr"] = 0.02, ["beta1"] = 0.7, ["beta2"] = 0.95, ["eps"] = 1e-5, ["weight_decay"] = 0.2, ["update_proj_gap"] = 9, ["scale"] = 64.0,
                        ["scale_front"] = true, ["disable_nl"] = true, ["correct_bias"] = false, ["optim_bits"] = 4, ["bf16_stochastic_round"] = true,
                        ["block_size"] = 96,
                    })]),
        new("adamw", m => LowRank.AdamW(m.parameters(), lr: 0.01, weight_decay: 0.01),
            Presets: [
                new("AdamW", "every knob", new()
                    {
                        ["lr"] = 0.08, ["beta1"] = 0.55, ["beta2"] = 0.96, ["eps"] = 1e-3, ["weight_decay"] = 0.7, ["conventions"] = AdamConventions.GaLoreReference, ["optim_bits"] = 8, ["bf16_stochastic_round"] = true,
                        ["block_size"] = 2048,
                    })]),
        // No factory: the rule through LowRankOptions.
        new("sgd-momentum", m => new LowRankOptimizer([new LowRankParamGroup(m.parameters())], new LowRankOptions
        {
            LearningRate = 0.05, WeightDecay = 0.01, DecayOrder = WeightDecayOrder.BeforeUpdate, Projection = FullSpace.Instance, Rule = new SgdConfig(0.9),
        })),
    ];

    /// <summary>The row called <paramref name="name"/>.</summary>
    public static CatalogMethod Get(string name) =>
        All.SingleOrDefault(m => m.Name == name) ?? throw new ArgumentException($"no catalog method '{name}'", nameof(name));

    /// <summary>Every row's name (or those <paramref name="where"/> accepts), as theory data.</summary>
    public static TheoryData<string> Names(Func<CatalogMethod, bool>? where = null)
    {
        var data = new TheoryData<string>();
        foreach (var m in All.Where(where ?? (_ => true))) data.Add(m.Name);
        return data;
    }

    /// <summary>
    /// The parameter dtypes every method trains in (float16 in float32, as bfloat16 where a rule needs it). All rows
    /// support all four today, so there is no per-row flag; a method that could not would need one (and the dtype and
    /// planner conformance tests would follow it).
    /// </summary>
    public static readonly IReadOnlyList<ScalarType> DTypes = [ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float64];

    /// <summary>Every row with every dtype, as theory data (dtype by name: "float32", "bfloat16", "float16", "float64").</summary>
    public static TheoryData<string, string> NamesAndDTypes()
    {
        var data = new TheoryData<string, string>();
        foreach (var m in All)
            foreach (var dtype in DTypes) data.Add(m.Name, DTypeName(dtype));
        return data;
    }

    public static string DTypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        ScalarType.Float64 => "float64",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    public static ScalarType DType(string name) => name switch
    {
        "float32" => ScalarType.Float32,
        "bfloat16" => ScalarType.BFloat16,
        "float16" => ScalarType.Float16,
        "float64" => ScalarType.Float64,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };

    /// <summary>
    /// A parameter's subspace progress: refreshes, plus the basis steps of Online Subspace Descent (whose basis
    /// moves every step instead of being recomputed). Null in the full space.
    /// </summary>
    public static long? SubspaceProgress(LowRankParameterState state) =>
        state.Subspace is null ? null : state.Refreshes + ((state.Subspace as OnlinePcaSubspace)?.BasisSteps ?? 0);
}

/// <summary>
/// A model with every tensor shape the planner distinguishes: Linear weights tall (fc1, 20×12), wide (fc2, 12×20)
/// and square (sq, 7×7), vectors (biases), a scalar and a 4-D kernel. No forward: tests set gradients directly.
/// </summary>
public sealed class ShapesModel : nn.Module
{
    // TorchSharp registers the fields under their names (fc1, fc2, …).
    public readonly Linear fc1 = nn.Linear(12, 20);
    public readonly Linear fc2 = nn.Linear(20, 12);
    public readonly Linear sq = nn.Linear(7, 7, hasBias: false);
    public readonly Parameter scalar = new(randn([]));
    public readonly Parameter conv = new(randn(6, 3, 3, 3));

    public ShapesModel() : base(nameof(ShapesModel)) => RegisterComponents();
}
