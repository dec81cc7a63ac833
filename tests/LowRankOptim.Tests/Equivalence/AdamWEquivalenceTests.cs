using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Equivalence;

/// <summary>Degenerate settings that must reproduce a known optimizer.</summary>
public sealed class AdamWEquivalenceTests
{
    /// <summary>
    /// No projection + Adam (torch conventions) equals TorchSharp's AdamW: two groups, a scheduler, 50 steps.
    /// Bit for bit with the reference ops (the same ops in the same order: mul_, add_, addcmul_, sqrt, div, add_,
    /// addcdiv_); within 1e-6 with the fused CPU kernel, whose IEEE square root differs from libtorch's in the
    /// last place for some elements.
    /// </summary>
    [Theory]
    [InlineData(KernelPreference.Reference)]
    [InlineData(KernelPreference.Cpu)]
    public void FullSpaceAdamWithTorchConventionsEqualsTorchSharpAdamW(KernelPreference kernel)
    {
        using var scope = NewDisposeScope();
        var reference = TestProblems.Mlp(1);
        var ours = TestProblems.Mlp(1);
        var (x, y) = TestProblems.Data(1);

        static (IEnumerable<Parameter> Weights, IEnumerable<Parameter> Biases) Split(Sequential m) =>
            (m.named_parameters().Where(p => p.name.EndsWith("weight")).Select(p => p.parameter).ToList(),
             m.named_parameters().Where(p => p.name.EndsWith("bias")).Select(p => p.parameter).ToList());

        var (rw, rb) = Split(reference);
        using var torchAdamW = optim.AdamW(
            // AdamW.ParamGroup's constructor fills its own betas and eps, so they are passed per group.
            [new AdamW.ParamGroup(rw, lr: 0.01, beta1: 0.85, beta2: 0.99, eps: 1e-7, weight_decay: 0.1),
             new AdamW.ParamGroup(rb, lr: 0.02, beta1: 0.85, beta2: 0.99, eps: 1e-7, weight_decay: 0.0)],
            lr: 0.01, beta1: 0.85, beta2: 0.99, eps: 1e-7);
        var (ow, ob) = Split(ours);
        using var lowRank = new LowRankOptimizer(
            [new LowRankParamGroup(ow, new LowRankOptions { LearningRate = 0.01, WeightDecay = 0.1 }),
             new LowRankParamGroup(ob, new LowRankOptions { LearningRate = 0.02, WeightDecay = 0.0 })],
            new LowRankOptions
            {
                LearningRate = 0.01, WeightDecay = 0.01, DecayOrder = WeightDecayOrder.BeforeUpdate,
                Projection = FullSpace.Instance,
                Rule = new AdamConfig(0.85, 0.99, 1e-7, CorrectBias: true, AdamEpsilonMode.AfterBiasCorrection, kernel),
            });
        var torchSchedule = optim.lr_scheduler.StepLR(torchAdamW, 10, 0.5);
        var ourSchedule = optim.lr_scheduler.StepLR(lowRank, 10, 0.5);

        double worst = 0;
        for (var step = 0; step < 50; step++)
        {
            TestProblems.LossAndBackward(reference, x, y);
            TestProblems.LossAndBackward(ours, x, y);
            torchAdamW.step(); lowRank.step();
            torchAdamW.zero_grad(); lowRank.zero_grad();
            torchSchedule.step(); ourSchedule.step();
            foreach (var (a, b) in reference.parameters().Zip(ours.parameters()))
            {
                if (kernel == KernelPreference.Reference) TensorAssert.Identical(b, a, $"parameter after step {step + 1}");
                worst = Math.Max(worst, (a - b).abs().max().item<float>());
            }
        }
        worst.Should().BeLessThanOrEqualTo(1e-6);
        lowRank.ParamGroups.Select(g => g.LearningRate).Should().Equal(torchAdamW.ParamGroups.Select(g => g.LearningRate));
    }

    /// <summary>
    /// A rank = min(m, n) SVD projection of the smaller side (square matrices for the types that may pick
    /// the longer side) with a linear rule is a rotation and back: equal to the unprojected rule. Refreshing every 3 steps is exact without momentum; with momentum, the buffer kept across a
    /// refresh is reinterpreted in the new basis (GaLore's design), so equality holds within one basis.
    /// </summary>
    [Theory]
    [InlineData(ProjectionType.Std, 24L, 10L, 0.0, 3)]
    [InlineData(ProjectionType.Std, 10L, 24L, 0.0, 3)]
    [InlineData(ProjectionType.Left, 16L, 16L, 0.0, 3)]
    [InlineData(ProjectionType.Right, 16L, 9L, 0.0, 3)]
    [InlineData(ProjectionType.ReverseStd, 16L, 16L, 0.0, 3)]
    [InlineData(ProjectionType.Full, 12L, 12L, 0.0, 3)]
    [InlineData(ProjectionType.Std, 24L, 10L, 0.9, 1000)]
    [InlineData(ProjectionType.Std, 10L, 24L, 0.9, 1000)]
    [InlineData(ProjectionType.Full, 12L, 12L, 0.9, 1000)]
    public void FullRankProjectionWithSgdEqualsFullSpaceSgd(ProjectionType type, long rows, long cols, double momentum, int gap)
    {
        using var scope = NewDisposeScope();
        var w0 = TestProblems.Gradient(7, rows, cols);
        var projected = new Parameter(w0.clone());
        var plain = new Parameter(w0.clone());
        var rule = new SgdConfig(Momentum: momentum);
        using var a = new LowRankOptimizer([new LowRankParamGroup([projected])], Options(new SvdProjection((int)Math.Min(rows, cols), gap, 1.0, type), rule));
        using var b = new LowRankOptimizer([new LowRankParamGroup([plain])], Options(FullSpace.Instance, rule));
        for (var k = 0; k < 10; k++)
        {
            using var g = TestProblems.Gradient(100 + k, rows, cols);
            projected.grad = g.clone();
            plain.grad = g.clone();
            a.step(); b.step();
        }
        TensorAssert.Close(projected, plain, 1e-5, 1e-5, $"{type} {rows}×{cols}");
    }

    /// <summary>Full-space SGD with momentum equals TorchSharp's SGD.</summary>
    [Fact]
    public void FullSpaceSgdEqualsTorchSharpSgd()
    {
        using var scope = NewDisposeScope();
        var reference = TestProblems.Mlp(3);
        var ours = TestProblems.Mlp(3);
        var (x, y) = TestProblems.Data(3);
        using var sgd = optim.SGD(reference.parameters(), 0.05, momentum: 0.9, nesterov: true);
        using var lowRank = new LowRankOptimizer([new LowRankParamGroup(ours.parameters())],
            Options(FullSpace.Instance, new SgdConfig(0.9, 0.0, Nesterov: true), lr: 0.05));
        TrainSideBySide(reference, sgd, ours, lowRank, x, y, 20);
        foreach (var (p, q) in reference.parameters().Zip(ours.parameters()))
            TensorAssert.Close(q, p, 1e-6, 1e-6, "SGD");
    }

    /// <summary>Coupled (L2) weight decay + Adam with torch conventions equals TorchSharp's Adam with weight_decay.</summary>
    [Fact]
    public void CoupledWeightDecayEqualsTorchSharpAdam()
    {
        using var scope = NewDisposeScope();
        var reference = TestProblems.Mlp(4);
        var ours = TestProblems.Mlp(4);
        var (x, y) = TestProblems.Data(4);
        using var adam = optim.Adam(reference.parameters(), lr: 0.01, weight_decay: 0.05);
        var options = Options(FullSpace.Instance, new AdamConfig(), lr: 0.01);
        options.WeightDecay = 0.05;
        options.DecayOrder = WeightDecayOrder.CoupledToGradient;
        using var lowRank = new LowRankOptimizer([new LowRankParamGroup(ours.parameters())], options);
        TrainSideBySide(reference, adam, ours, lowRank, x, y, 20);
        foreach (var (p, q) in reference.parameters().Zip(ours.parameters()))
            TensorAssert.Close(q, p, 1e-6, 1e-6, "Adam with L2 weight decay");
    }

    /// <summary>Trains two identical models side by side, each with its optimizer, on the same batch.</summary>
    private static void TrainSideBySide(Sequential reference, optim.Optimizer referenceOptimizer, Sequential ours, optim.Optimizer ourOptimizer, Tensor x, Tensor y, int steps)
    {
        for (var step = 0; step < steps; step++)
        {
            TestProblems.LossAndBackward(reference, x, y);
            TestProblems.LossAndBackward(ours, x, y);
            referenceOptimizer.step(); ourOptimizer.step();
            referenceOptimizer.zero_grad(); ourOptimizer.zero_grad();
        }
    }

    internal static LowRankOptions Options(IProjectionConfig projection, IUpdateRuleConfig rule, double lr = 0.01) => new()
    {
        LearningRate = lr, WeightDecay = 0, DecayOrder = WeightDecayOrder.BeforeUpdate, Projection = projection, Rule = rule,
    };
}
