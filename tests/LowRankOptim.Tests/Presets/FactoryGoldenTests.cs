using FluentAssertions;
using LowRankOptim.Kernels;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Presets;

/// <summary>
/// Pins the options each factory builds, written out by hand from the methods' references, for calls in the
/// shapes and argument names the factories have always accepted: the presets refactor must not change them.
/// </summary>
public sealed class FactoryGoldenTests
{
    /// <summary>The six values a <see cref="LowRankOptions"/> carries (the configs and the storage are records: value equality).</summary>
    public static (double? Lr, double? WeightDecay, WeightDecayOrder? Order, IProjectionConfig? Projection, IUpdateRuleConfig? Rule, MomentStorage? Storage, WeightRounding? Rounding) Of(LowRankOptions o) =>
        (o.LearningRate, o.WeightDecay, o.DecayOrder, o.Projection, o.Rule, o.MomentStorage, o.WeightRounding);

    private static Parameter[] Params() => [new Parameter(randn(6, 4)), new Parameter(randn(4))];

    private static LowRankParamGroup[] Groups() => [new LowRankParamGroup(Params())];

    /// <summary>galore_torch's AdamW: ε on the uncorrected √v, decay after the update.</summary>
    internal static AdamConfig GaLoreAdam(double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, bool correctBias = true) =>
        new(beta1, beta2, eps, correctBias, AdamEpsilonMode.BeforeBiasCorrection);

    /// <summary>torch.optim.AdamW: ε after the bias correction, decay before the update.</summary>
    internal static AdamConfig TorchAdam(double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, bool correctBias = true) =>
        new(beta1, beta2, eps, correctBias, AdamEpsilonMode.AfterBiasCorrection);

    public static TheoryData<string, Func<LowRankOptimizer>, LowRankOptions> Cases() => new()
    {
        // Published / reference defaults.
        { "GaLore defaults", () => LowRank.GaLore(Params()), Options(1e-3, 0, WeightDecayOrder.AfterUpdate, new SvdProjection(128, 200, 0.25, ProjectionType.Std), GaLoreAdam()) },
        { "GaLore randomized defaults", () => LowRank.GaLore(Params(), projector: GaLoreProjector.RandomizedSvd),
            Options(1e-3, 0, WeightDecayOrder.AfterUpdate, new RandomizedSvdProjection(128, 200, 0.25, ProjectionType.Std, Oversampling: 8, PowerIterations: 2, Seed: 0), GaLoreAdam()) },
        { "GaLore-Adafactor defaults", () => LowRank.GaLoreAdafactor(Groups()),
            Options(0, 0, WeightDecayOrder.BeforeUpdate, new SvdProjection(), new AdafactorConfig(null, 1e-30, 1e-3, 1.0, -0.8, RelativeStep: true, ScaleParameter: true, WarmupInit: false)) },
        { "DCT-AdamW defaults", () => LowRank.DctAdamW(Params()),
            Options(1e-3, 0, WeightDecayOrder.BeforeUpdate, new DctProjection(128, 1, 1.0, DctTransformMethod.MatrixProduct, 1.0, 32000, ProjectionType.Std), TorchAdam()) },
        { "OSD defaults", () => LowRank.OnlineSubspaceDescent(Params()),
            Options(1e-3, 0, WeightDecayOrder.AfterUpdate, new OnlinePcaProjection(128, 200, 0.25, ProjectionType.Std, BasisRule: TorchAdam(), BasisWeightDecay: 0.01), GaLoreAdam()) },
        { "GaLore+ defaults", () => LowRank.GaLorePlus(Groups()),
            Options(1e-3, 0, WeightDecayOrder.AfterUpdate, new GaLorePlusProjection(128, 200, 0.25, 8, 2, 0, null, CrossHeadReading.SharedLongSide, 0, 200, false, 1.0), GaLoreAdam()) },
        { "SMMF defaults", () => LowRank.Smmf(Params()),
            Options(1e-3, 0, WeightDecayOrder.BeforeUpdate, FullSpace.Instance, new SmmfConfig(0.9, 1e-8, -0.5, 0.999, true, KernelPreference.Auto)) },
        { "AdamW defaults", () => LowRank.AdamW(Params()), Options(1e-3, 0, WeightDecayOrder.BeforeUpdate, FullSpace.Instance, TorchAdam()) },

        // Every knob set (by name) to a value other than its default.
        { "GaLore every knob", () => LowRank.GaLore(Params(), lr: 0.02, beta1: 0.8, beta2: 0.95, eps: 1e-7, weight_decay: 0.1, rank: 7, update_proj_gap: 11,
                scale: 0.5, proj_type: ProjectionType.Left, correct_bias: false, conventions: AdamConventions.TorchOptim),
            Options(0.02, 0.1, WeightDecayOrder.BeforeUpdate, new SvdProjection(7, 11, 0.5, ProjectionType.Left), TorchAdam(0.8, 0.95, 1e-7, correctBias: false)) },
        { "GaLore randomized every knob", () => LowRank.GaLore(Groups(), lr: 0.02, beta1: 0.8, beta2: 0.95, eps: 1e-7, weight_decay: 0.1, rank: 7, update_proj_gap: 11,
                scale: 0.5, proj_type: ProjectionType.Left, correct_bias: false, conventions: AdamConventions.GaLoreReference,
                projector: GaLoreProjector.RandomizedSvd, oversampling: 3, power_iterations: 1, seed: 5),
            Options(0.02, 0.1, WeightDecayOrder.AfterUpdate, new RandomizedSvdProjection(7, 11, 0.5, ProjectionType.Left, Oversampling: 3, PowerIterations: 1, Seed: 5),
                GaLoreAdam(0.8, 0.95, 1e-7, correctBias: false)) },
        { "GaLore-Adafactor every knob", () => LowRank.GaLoreAdafactor(Groups(), lr: 0.03, eps1: 1e-20, eps2: 2e-3, clip_threshold: 2.0, decay_rate: -0.7,
                beta1: 0.85, weight_decay: 0.2, scale_parameter: false, relative_step: false, warmup_init: false, rank: 6, update_proj_gap: 13, scale: 0.75,
                proj_type: ProjectionType.Right, projector: GaLoreProjector.RandomizedSvd, oversampling: 4, power_iterations: 3, seed: 9),
            Options(0.03, 0.2, WeightDecayOrder.BeforeUpdate, new RandomizedSvdProjection(6, 13, 0.75, ProjectionType.Right, Oversampling: 4, PowerIterations: 3, Seed: 9),
                new AdafactorConfig(0.85, 1e-20, 2e-3, 2.0, -0.7, RelativeStep: false, ScaleParameter: false, WarmupInit: false)) },
        { "GaLore-Adafactor warmup_init", () => LowRank.GaLoreAdafactor(Groups(), warmup_init: true, scale_parameter: false),
            Options(0, 0, WeightDecayOrder.BeforeUpdate, new SvdProjection(), new AdafactorConfig(RelativeStep: true, ScaleParameter: false, WarmupInit: true)) },
        { "DCT-AdamW every knob", () => LowRank.DctAdamW(Params(), lr: 0.04, weight_decay: 0.3, rank: 5, update_proj_gap: 3, sim_type: DctTransformMethod.FastTransform,
                ell_norm: 2.0, max_shape: 1000, beta1: 0.7, beta2: 0.9, eps: 1e-6, proj_type: ProjectionType.ReverseStd),
            Options(0.04, 0.3, WeightDecayOrder.BeforeUpdate, new DctProjection(5, 3, 1.0, DctTransformMethod.FastTransform, 2.0, 1000, ProjectionType.ReverseStd), TorchAdam(0.7, 0.9, 1e-6)) },
        { "OSD every knob", () => LowRank.OnlineSubspaceDescent(Params(), lr: 0.05, beta1: 0.6, beta2: 0.97, eps: 1e-5, weight_decay: 0.4, rank: 4, update_proj_gap: 17,
                scale: 2.0, proj_type: ProjectionType.Right, correct_bias: false, conventions: AdamConventions.TorchOptim, p_optimizer: new SgdConfig(0.5), p_weight_decay: 0.02),
            Options(0.05, 0.4, WeightDecayOrder.BeforeUpdate, new OnlinePcaProjection(4, 17, 2.0, ProjectionType.Right, BasisRule: new SgdConfig(0.5), BasisWeightDecay: 0.02),
                TorchAdam(0.6, 0.97, 1e-5, correctBias: false)) },
        { "GaLore+ every knob", () => LowRank.GaLorePlus(Groups(), lr: 0.06, beta1: 0.5, beta2: 0.98, eps: 1e-4, weight_decay: 0.5, rank: 3, update_proj_gap: 19, scale: 1.5,
                oversampling: 5, power_iterations: 4, seed: 12, cross_head: CrossHeadReading.PerHeadShortSide, residual_density: 0.05, residual_warmup: 7,
                residual_reestimate: true, residual_scale: 0.3, correct_bias: false, conventions: AdamConventions.TorchOptim),
            Options(0.06, 0.5, WeightDecayOrder.BeforeUpdate, new GaLorePlusProjection(3, 19, 1.5, 5, 4, 12, null, CrossHeadReading.PerHeadShortSide, 0.05, 7, true, 0.3),
                TorchAdam(0.5, 0.98, 1e-4, correctBias: false)) },
        { "SMMF every knob", () => LowRank.Smmf(Params(), lr: 0.07, beta: null, eps: 1e-6, weight_decay: 0.6, decay_rate: -0.8, growth_rate: 0.9, vector_reshape: false,
                weight_decay_mode: SmmfWeightDecayMode.Adam, kernel: KernelPreference.Reference),
            Options(0.07, 0.6, WeightDecayOrder.CoupledToGradient, FullSpace.Instance, new SmmfConfig(null, 1e-6, -0.8, 0.9, false, KernelPreference.Reference)) },
        { "AdamW every knob", () => LowRank.AdamW(Params(), lr: 0.08, beta1: 0.55, beta2: 0.96, eps: 1e-3, weight_decay: 0.7, conventions: AdamConventions.GaLoreReference,
                optim_bits: 8),
            Options(0.08, 0.7, WeightDecayOrder.AfterUpdate, FullSpace.Instance, GaLoreAdam(0.55, 0.96, 1e-3), new MomentStorage(MomentFormat.Blockwise8Bit)) },

        // bitsandbytes' optim_bits: the moments' storage, with nearest rounding and the default size threshold.
        { "GaLore 8-bit moments", () => LowRank.GaLore(Params(), optim_bits: 8),
            Options(1e-3, 0, WeightDecayOrder.AfterUpdate, new SvdProjection(128, 200, 0.25, ProjectionType.Std), GaLoreAdam(), new MomentStorage(MomentFormat.Blockwise8Bit)) },
        { "DCT-AdamW 4-bit moments", () => LowRank.DctAdamW(Groups(), rank: 64, optim_bits: 4),
            Options(1e-3, 0, WeightDecayOrder.BeforeUpdate, new DctProjection(64, 1, 1.0, DctTransformMethod.MatrixProduct, 1.0, 32000, ProjectionType.Std), TorchAdam(),
                new MomentStorage(MomentFormat.Blockwise4Bit)) },
        { "GaLore-Adafactor bfloat16 momentum", () => LowRank.GaLoreAdafactor(Groups(), beta1: 0.9, optim_bits: 16),
            Options(0, 0, WeightDecayOrder.BeforeUpdate, new SvdProjection(), new AdafactorConfig(0.9, RelativeStep: true, ScaleParameter: true, WarmupInit: false),
                new MomentStorage(MomentFormat.BFloat16)) },
        // torchao's bf16_stochastic_round: bfloat16 weights rounded stochastically, seed 0.
        { "DCT-AdamW stochastic rounding of bf16 weights", () => LowRank.DctAdamW([new LowRankParamGroup([new Parameter(randn(6, 4).to(ScalarType.BFloat16))])], rank: 64, bf16_stochastic_round: true),
            Options(1e-3, 0, WeightDecayOrder.BeforeUpdate, new DctProjection(64, 1, 1.0, DctTransformMethod.MatrixProduct, 1.0, 32000, ProjectionType.Std), TorchAdam(),
                rounding: WeightRounding.Stochastic(0)) },
    };

    /// <summary>
    /// Options as a preset builds them: every value set, the moments dense and the weights rounded to nearest unless
    /// <paramref name="storage"/> and <paramref name="rounding"/> say otherwise.
    /// </summary>
    internal static LowRankOptions Options(double lr, double weightDecay, WeightDecayOrder order, IProjectionConfig projection, IUpdateRuleConfig rule,
        MomentStorage? storage = null, WeightRounding? rounding = null) =>
        new()
        {
            LearningRate = lr, WeightDecay = weightDecay, DecayOrder = order, Projection = projection, Rule = rule, MomentStorage = storage ?? MomentStorage.Dense,
            WeightRounding = rounding ?? WeightRounding.Nearest,
        };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FactoryBuildsTheReferenceOptions(string what, Func<LowRankOptimizer> create, LowRankOptions expected)
    {
        using var scope = NewDisposeScope();
        using var opt = create();
        Of(opt.Defaults).Should().Be(Of(expected), what);
        foreach (LowRankParamGroup g in opt.ParamGroups)
        {
            Of(g.Options).Should().Be(Of(expected), $"{what}: a group without options takes the defaults");
            g.Options.InitialLearningRate.Should().Be(expected.LearningRate!.Value, what);
        }
    }

    [Fact]
    public void GaLorePlusOverAModelGivesAttentionWeightsTheirHeads()
    {
        using var scope = NewDisposeScope();
        var model = Support.TestProblems.Mlp(1);
        var heads = AttentionHeads.QueryKeyValue(4);
        using var opt = LowRank.GaLorePlus(model, name => name == "fc1" ? heads : null, lr: 0.01, weight_decay: 0.05, rank: 3, update_proj_gap: 5, scale: 0.5,
            oversampling: 2, power_iterations: 1, seed: 4, cross_head: CrossHeadReading.PerHeadShortSide, residual_density: 0.1, residual_warmup: 2,
            residual_reestimate: true, residual_scale: 0.5);
        var projection = new GaLorePlusProjection(3, 5, 0.5, 2, 1, 4, null, CrossHeadReading.PerHeadShortSide, 0.1, 2, true, 0.5);
        Of(opt.Defaults).Should().Be((0.01, 0.05, WeightDecayOrder.AfterUpdate, (IProjectionConfig)projection, (IUpdateRuleConfig)GaLoreAdam(), (MomentStorage?)MomentStorage.Dense,
            (WeightRounding?)WeightRounding.Nearest));
        var groups = opt.ParamGroups.Cast<LowRankParamGroup>().ToArray();
        groups.Select(g => g.Options.Projection).Should().Equal(projection with { Heads = heads }, projection, FullSpace.Instance);
        groups.Select(g => g.Parameters.Count()).Should().Equal(1, 1, 2);
    }
}
