using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Smmf;

/// <summary>SMMF's options, modes and mixing with other rules in one optimizer.</summary>
public sealed class SmmfBehaviourTests
{
    /// <summary>
    /// Our "adam" weight-decay mode is L2: exactly SMMF without decay fed G + λW. (The reference's "adam"
    /// mode computes G + λW and discards it, a no-op; see docs/algorithms/smmf.md.)
    /// </summary>
    [Theory]
    [InlineData(KernelPreference.Auto)]
    [InlineData(KernelPreference.Reference)]
    public void AdamWeightDecayModeAddsLambdaTimesWToTheGradient(KernelPreference kernel)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(5);
        var init = randn([12, 10], generator: gen);
        var coupled = new Parameter(init.clone());
        var manual = new Parameter(init.clone());
        using var a = LowRank.Smmf([coupled], lr: 0.01, weight_decay: 0.3, weight_decay_mode: SmmfWeightDecayMode.Adam, kernel: kernel);
        using var b = LowRank.Smmf([manual], lr: 0.01, weight_decay: 0.0, kernel: kernel);
        for (var k = 0; k < 5; k++)
        {
            var g = randn([12, 10], generator: gen);
            coupled.grad = g.clone();
            manual.grad = g.add(manual.detach(), alpha: 0.3);
            a.step();
            b.step();
        }
        TensorAssert.Identical(coupled, manual, $"{kernel}: L2 mode");
    }

    [Fact]
    public void AdamWWeightDecayModeShrinksTheWeightsBeforeTheUpdate()
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(6);
        var init = randn([9, 8], generator: gen);
        var decayed = new Parameter(init.clone());
        var plain = new Parameter(init.clone());
        using var a = LowRank.Smmf([decayed], lr: 0.05, weight_decay: 0.2);
        using var b = LowRank.Smmf([plain], lr: 0.05, weight_decay: 0.0);
        var g = randn([9, 8], generator: gen);
        decayed.grad = g.clone();
        plain.grad = g.clone();
        a.step();
        b.step();
        // One step: W(1 − ηλ) − ηU versus W − ηU, with the same U.
        TensorAssert.Close(decayed, plain.detach() - init * (0.05 * 0.2), 1e-6, 1e-6, "decoupled decay before the update");
    }

    [Fact]
    public void ChangingBetaBetweenNullAndAValueAfterBuildingIsRejected()
    {
        using var scope = NewDisposeScope();
        var p = new Parameter(randn(6, 6));
        using var opt = LowRank.Smmf([p]);
        ((LowRankParamGroup)opt.ParamGroups.First()).Options.Rule = new SmmfConfig(Beta: null);
        p.grad = randn(6, 6);
        var act = () => opt.step();
        act.Should().Throw<InvalidOperationException>().WithMessage("*beta cannot switch*");
    }

    [Fact]
    public void TheKernelCanBeSwitchedBetweenStepsAndBothReadTheSameState()
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(7);
        var init = randn([20, 14], generator: gen);
        var switching = new Parameter(init.clone());
        var fixedReference = new Parameter(init.clone());
        using var a = LowRank.Smmf([switching], lr: 0.01, kernel: KernelPreference.Cpu);
        using var b = LowRank.Smmf([fixedReference], lr: 0.01, kernel: KernelPreference.Reference);
        for (var k = 0; k < 6; k++)
        {
            ((LowRankParamGroup)a.ParamGroups.First()).Options.Rule = new SmmfConfig(Kernel: k % 2 == 0 ? KernelPreference.Cpu : KernelPreference.Reference);
            var g = randn([20, 14], generator: gen);
            switching.grad = g.clone();
            fixedReference.grad = g.clone();
            a.step();
            b.step();
        }
        TensorAssert.Close(switching, fixedReference, 1e-6, 1e-5, "alternating kernels vs the reference");
    }

    /// <summary>A conv net trained by SMMF for its kernels and norms and GaLore for its linear layer, in one optimizer.</summary>
    [Fact]
    public void SmmfAndGaLoreShareOneOptimizerAndTheLossGoesDown()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(
            ("conv", nn.Conv2d(2, 6, 3)), ("norm", nn.BatchNorm2d(6)), ("act", nn.ReLU()),
            ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(6, 4)));
        TestProblems.Reseed(model, 9);
        using var gen = new Generator(9);
        var x = randn([16, 2, 8, 8], generator: gen);
        var y = randn([16, 4], generator: gen);
        var groups = LowRank.SplitParameters(model);
        groups[0].Options = new LowRankOptions
        {
            Projection = new SvdProjection(2, 5, 1.0),
            Rule = new AdamConfig(EpsMode: AdamEpsilonMode.BeforeBiasCorrection),
        };
        using var opt = LowRank.Smmf(groups, lr: 0.02);
        opt.States.Select(s => s.Rule.GetType()).Should().Contain([typeof(AdamRule), typeof(SmmfRule)]);
        opt.States.Where(s => s.Subspace is not null).Should().ContainSingle("only the linear weight is projected");
        float first = 0, last = 0;
        for (var k = 0; k < 40; k++)
        {
            using var inner = NewDisposeScope();
            var loss = nn.functional.mse_loss(model.call(x), y);
            loss.backward();
            opt.step();
            opt.zero_grad();
            if (k == 0) first = loss.item<float>();
            last = loss.item<float>();
        }
        last.Should().BeLessThan(first * 0.8f);
    }
}
