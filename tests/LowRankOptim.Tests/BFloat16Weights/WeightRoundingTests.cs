using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Compatibility;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.BFloat16Weights;

/// <summary>
/// The weight rounding option (<see cref="WeightRounding"/>): updates far below half a bfloat16 ulp are lost to nearest
/// rounding and kept, unbiased, by stochastic rounding (full space and projected, the update and the decoupled decay);
/// float32 parameters of a stochastic group are stepped as before; the option is saved (format 4), a format-3 file loads
/// as nearest, a mismatch on load and a change after construction are refused; bad values and groups are refused naming
/// the option.
/// </summary>
public sealed class WeightRoundingTests
{
    private const int Size = 128, Steps = 100;
    private const double LearningRate = 1e-4;

    private static LowRankOptions Sgd(WeightRounding rounding, IProjectionConfig projection, double lr = LearningRate, double weightDecay = 0) => new()
    {
        LearningRate = lr, WeightDecay = weightDecay, DecayOrder = WeightDecayOrder.BeforeUpdate,
        Projection = projection, Rule = new SgdConfig(0), WeightRounding = rounding,
    };

    /// <summary>A 128×128 parameter of 1.5 everywhere (bf16 ulp 2⁻⁷ there) after <see cref="Steps"/> SGD steps with a fixed gradient.</summary>
    private static Tensor Trained(ScalarType dtype, LowRankOptions options, Tensor gradient)
    {
        var p = new Parameter(full(Size, Size, 1.5, dtype));
        using var opt = new LowRankOptimizer([new LowRankParamGroup([p])], options);
        using var g = gradient.to(dtype);
        for (var k = 0; k < Steps; k++) opt.StepParameter(p, g);
        return p.detach().to(ScalarType.Float64);
    }

    public static TheoryData<string> Spaces() => ["full space", "DCT projection"];

    private static IProjectionConfig Projection(string space) =>
        space == "full space" ? FullSpace.Instance : new DctProjection(16, 1000); // one selection: a fixed subspace

    /// <summary>
    /// Every update is |η·g| ≤ 2.5·10⁻⁴, under a sixteenth of half a bf16 ulp at 1.5 (2⁻⁸): nearest rounding never moves
    /// the weights; stochastic rounding follows the float32 run in expectation. The regression slope of the bf16 movement
    /// on the float32 movement, Σab/Σb², is 1 within 0.05 (its standard deviation here is about 0.007).
    /// </summary>
    [Theory]
    [MemberData(nameof(Spaces))]
    public void UpdatesBelowHalfAnUlpAreLostToNearestAndKeptByStochasticRounding(string space)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(17);
        var gradient = randn([Size, Size], generator: gen).mul_(0.5).clamp_(-2.5, 2.5);
        var exact = Trained(ScalarType.Float32, Sgd(WeightRounding.Nearest, Projection(space)), gradient).sub(1.5);
        var nearest = Trained(ScalarType.BFloat16, Sgd(WeightRounding.Nearest, Projection(space)), gradient).sub(1.5);
        var stochastic = Trained(ScalarType.BFloat16, Sgd(WeightRounding.Stochastic(3), Projection(space)), gradient).sub(1.5);

        exact.abs().max().item<double>().Should().BeInRange(1e-3, 0.03, "the float32 run moves by about η·k·|g|");
        nearest.abs().max().item<double>().Should().Be(0, $"{space}: every bf16 update rounds back to the weight");
        var slope = stochastic.mul(exact).sum().item<double>() / exact.square().sum().item<double>();
        slope.Should().BeApproximately(1, 0.05, $"{space}: stochastic rounding is unbiased");
    }

    /// <summary>
    /// Decoupled decay with η·λ = 10⁻⁵: 1 − η·λ is 1 in bf16 and W·(1 − η·λ) rounds back to W, so nearest rounding never
    /// decays; stochastic rounding shrinks the mean as the float32 run does (σ of the mean about 1.3·10⁻⁵).
    /// </summary>
    [Fact]
    public void DecoupledDecayBelowHalfAnUlpIsKeptByStochasticRounding()
    {
        using var scope = NewDisposeScope();
        var gradient = zeros(Size, Size);
        var exact = Trained(ScalarType.Float32, Sgd(WeightRounding.Nearest, FullSpace.Instance, lr: 1e-3, weightDecay: 0.01), gradient).mean().item<double>();
        var nearest = Trained(ScalarType.BFloat16, Sgd(WeightRounding.Nearest, FullSpace.Instance, lr: 1e-3, weightDecay: 0.01), gradient).mean().item<double>();
        var stochastic = Trained(ScalarType.BFloat16, Sgd(WeightRounding.Stochastic(), FullSpace.Instance, lr: 1e-3, weightDecay: 0.01), gradient).mean().item<double>();
        exact.Should().BeApproximately(1.5 * Math.Pow(1 - 1e-5, Steps), 1e-5, "float32 rounds 1 − η·λ and every product");
        nearest.Should().Be(1.5, "bf16's 1 − η·λ is 1");
        stochastic.Should().BeApproximately(exact, 1e-4, "the decay is kept in expectation");
    }

    [Fact]
    public void Float32ParametersOfAStochasticGroupAreSteppedAsWithNearestRounding()
    {
        using var scope = NewDisposeScope();
        (Tensor Bf16, Tensor F32) Run(WeightRounding rounding)
        {
            var a = new Parameter(full(64, 64, 1.5, ScalarType.BFloat16));
            var b = new Parameter(full(64, 64, 1.5, ScalarType.Float32));
            var options = LowRankPresets.AdamW(lr: 1e-4, weight_decay: 0.1);
            options.WeightRounding = rounding;
            using var opt = new LowRankOptimizer([new LowRankParamGroup([a, b])], options);
            using var gen = new Generator(5);
            for (var k = 0; k < 5; k++)
            {
                var g = randn([64, 64], generator: gen);
                opt.StepParameter(a, g.to(ScalarType.BFloat16));
                opt.StepParameter(b, g);
            }
            return (a.detach().clone(), b.detach().clone());
        }
        var (nearestBf16, nearestF32) = Run(WeightRounding.Nearest);
        var (stochasticBf16, stochasticF32) = Run(WeightRounding.Stochastic(9));
        Support.TensorAssert.Identical(stochasticF32, nearestF32, "the float32 parameter");
        stochasticBf16.eq(nearestBf16).all().item<bool>().Should().BeFalse("the bf16 parameter rounds stochastically");
    }

    /// <summary>
    /// AdamW's full-space step on stochastically rounded bf16 weights forms its direction a part at a time (a workspace of
    /// one part instead of the parameter): any part size gives the same weights and moments as one part, and as the whole
    /// direction followed by the rounded update (the path of a strided parameter), for both decay orders.
    /// </summary>
    [Theory]
    [InlineData(AdamConventions.TorchOptim)]
    [InlineData(AdamConventions.GaLoreReference)]
    public void AdamsRoundedStepInPartsEqualsTheWholeDirection(AdamConventions conventions)
    {
        using var scope = NewDisposeScope();
        (Tensor W, Tensor M) Run(long part, bool strided)
        {
            var old = AdamRule.RoundedPartElements;
            AdamRule.RoundedPartElements = part;
            try
            {
                using var gen = new Generator(23);
                var init = randn([101, 37], generator: gen).mul_(0.02).to(ScalarType.BFloat16);
                var p = new Parameter(strided ? init.t().contiguous().t() : init);
                p.is_contiguous().Should().Be(!strided);
                using var opt = LowRank.AdamW([p], lr: 3e-4, weight_decay: 0.1, conventions: conventions, bf16_stochastic_round: true);
                for (var k = 0; k < 4; k++) opt.StepParameter(p, randn([101, 37], generator: gen).to(ScalarType.BFloat16));
                return (p.detach().contiguous().clone(), ((AdamRule)opt.States[0].Rule).ExpAvg.clone());
            }
            finally
            {
                AdamRule.RoundedPartElements = old;
            }
        }
        var whole = Run(1 << 20, strided: false);
        foreach (var (part, strided) in new[] { (1000L, false), (64L, false), (1000L, true) })
        {
            var other = Run(part, strided);
            Support.TensorAssert.Identical(other.W, whole.W, $"weights, parts of {part}{(strided ? ", strided parameter" : "")}");
            Support.TensorAssert.Identical(other.M, whole.M, $"first moment, parts of {part}{(strided ? ", strided parameter" : "")}");
        }
    }

    // ---- bad values and groups: refused naming the option ----

    [Fact]
    public void AStochasticGroupWithoutABFloat16ParameterIsRefused()
    {
        using var scope = NewDisposeScope();
        var act = () => LowRank.AdamW([new Parameter(zeros(4, 4)), new Parameter(zeros(4, ScalarType.Float64))], bf16_stochastic_round: true);
        act.Should().Throw<ArgumentException>().Where(e => e.ParamName == "weight_rounding" &&
            e.Message.Contains("parameter group 0") && e.Message.Contains("Stochastic (seed 0)") && e.Message.Contains("none of the group's 2 parameters is bfloat16") &&
            e.Message.Contains("Float32") && e.Message.Contains("Float64"));
    }

    [Fact]
    public void AFloat16ParameterInAStochasticGroupIsRefused()
    {
        using var scope = NewDisposeScope();
        var options = LowRankPresets.AdamW();
        options.WeightRounding = WeightRounding.Stochastic(2);
        var act = () => new LowRankOptimizer([new LowRankParamGroup([new Parameter(zeros(4, ScalarType.BFloat16)), new Parameter(zeros(4, ScalarType.Float16))])], options);
        act.Should().Throw<ArgumentException>().Where(e => e.ParamName == "weight_rounding" &&
            e.Message.Contains("parameter 1 is float16") && e.Message.Contains("no stochastic rounding to float16"));
    }

    [Fact]
    public void AnEmptyGroupAndAMixedGroupAreAccepted()
    {
        using var scope = NewDisposeScope();
        using var empty = LowRank.AdamW(Array.Empty<Parameter>(), bf16_stochastic_round: true);
        empty.ParamGroups.Should().ContainSingle();
        using var mixed = LowRank.AdamW([new Parameter(zeros(4, ScalarType.BFloat16)), new Parameter(zeros(4))], bf16_stochastic_round: true);
        mixed.ParamGroups.Cast<LowRankParamGroup>().Single().Options.WeightRounding.Should().Be(WeightRounding.Stochastic(0));
    }

    public static TheoryData<string, WeightRounding, string> BadValues() => new()
    {
        { "a seed with nearest rounding", new WeightRounding(StateRounding.Nearest, 5), "*seed = 5*stochastic rounding only*" },
        { "an undefined mode", new WeightRounding((StateRounding)7, 0), "*weight rounding must be one of Nearest, Stochastic*" },
    };

    [Theory]
    [MemberData(nameof(BadValues))]
    public void BadValuesAreRefusedNamingTheOption(string what, WeightRounding rounding, string message)
    {
        using var scope = NewDisposeScope();
        var options = LowRankPresets.AdamW();
        options.WeightRounding = rounding;
        var act = () => new LowRankOptimizer([new LowRankParamGroup([new Parameter(zeros(4, ScalarType.BFloat16))])], options);
        act.Should().Throw<ArgumentException>(what).WithMessage(message).Which.ParamName.Should().Be("weight_rounding");
    }

    [Fact]
    public void AChangeAfterConstructionIsRefusedAtTheNextStep()
    {
        using var scope = NewDisposeScope();
        var p = new Parameter(zeros(4, ScalarType.BFloat16));
        using var opt = LowRank.AdamW([p], bf16_stochastic_round: true);
        opt.ParamGroups.Cast<LowRankParamGroup>().Single().Options.WeightRounding = WeightRounding.Nearest;
        var act = () => opt.StepParameter(p, ones(4, ScalarType.BFloat16));
        act.Should().Throw<InvalidOperationException>().WithMessage("*weight_rounding cannot switch from Stochastic (seed 0) to Nearest*");
    }

    // ---- checkpoints ----

    [Fact]
    public void TheRoundingIsSavedAndAMismatchOnLoadIsRefusedNamingBoth()
    {
        using var scope = NewDisposeScope();
        var path = Path.GetTempFileName();
        try
        {
            var p = new Parameter(ones(8, 8, ScalarType.BFloat16));
            using (var opt = LowRank.DctAdamW([p], lr: 1e-3, rank: 2, bf16_stochastic_round: true))
            {
                opt.StepParameter(p, ones(8, 8, ScalarType.BFloat16));
                opt.save_state_dict(path);
            }
            var q = new Parameter(ones(8, 8, ScalarType.BFloat16));
            using var nearest = LowRank.DctAdamW([q], lr: 1e-3, rank: 2);
            var act = () => nearest.load_state_dict(path);
            act.Should().Throw<InvalidDataException>().WithMessage(
                "*parameter group 0*saved with weight_rounding = Stochastic (seed 0)*this optimizer's group has weight_rounding = Nearest*WeightRounding = Stochastic (seed 0)*");
            nearest.States.Should().OnlyContain(s => s.Step == 0, "a refused load changes nothing");

            var options = LowRankPresets.DctAdamW(lr: 1e-3, rank: 2);
            options.WeightRounding = WeightRounding.Stochastic(4);
            using var otherSeed = new LowRankOptimizer([new LowRankParamGroup([q])], options);
            ((Action)(() => otherSeed.load_state_dict(path))).Should().Throw<InvalidDataException>().WithMessage("*Stochastic (seed 0)*Stochastic (seed 4)*");

            using var same = LowRank.DctAdamW([q], lr: 1e-3, rank: 2, bf16_stochastic_round: true);
            same.load_state_dict(path);
            same.States.Should().OnlyContain(s => s.Step == 1);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>A format-3 file (written before the weight rounding existed) holds nearest rounding: it loads into a nearest group only.</summary>
    [Fact]
    public void AFormat3CheckpointLoadsAsNearestRounding()
    {
        using var scope = NewDisposeScope();
        var file = Path.Combine(AppContext.BaseDirectory, "fixtures", "checkpoints", "889fd72", "adamw-bf16-stochastic.ckpt");
        File.Exists(file).Should().BeTrue(file);
        var model = nn.Sequential(("q", nn.Linear(16, 24, hasBias: false)), ("o", nn.Linear(24, 16)));
        model.to(ScalarType.BFloat16);
        using var nearest = StoredCheckpointTests.Create("adamw-bf16-stochastic", model);
        var options = new LowRankOptions();
        options.CopyFrom(nearest.ParamGroups.Cast<LowRankParamGroup>().Single().Options);
        options.WeightRounding = WeightRounding.Stochastic(1);
        using var stochastic = new LowRankOptimizer([new LowRankParamGroup(model.parameters())], options);
        var act = () => stochastic.load_state_dict(file);
        act.Should().Throw<InvalidDataException>().WithMessage("*saved with weight_rounding = Nearest*has weight_rounding = Stochastic (seed 1)*");
    }
}
