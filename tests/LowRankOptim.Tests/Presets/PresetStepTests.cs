using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Presets;

/// <summary>
/// TorchSharp's three shapes of a factory and the preset used directly train a model identically, bit for bit.
/// The knobs differ from the defaults (small rank, T = 2 so that the basis is refreshed), so a shape that dropped
/// or swapped one would step differently.
/// </summary>
public sealed class PresetStepTests
{
    private sealed record Builders(
        Func<IEnumerable<Parameter>, LowRankOptimizer> Parameters,
        Func<IEnumerable<(string name, Parameter parameter)>, LowRankOptimizer> Named,
        Func<IEnumerable<LowRankParamGroup>, LowRankOptimizer> Groups,
        Func<LowRankOptions> Preset);

    private static readonly Dictionary<string, Builders> Methods = new()
    {
        ["GaLore"] = new(
            ps => LowRank.GaLore(ps, lr: 0.02, beta2: 0.99, weight_decay: 0.01, rank: 3, update_proj_gap: 2, scale: 0.5, proj_type: ProjectionType.ReverseStd),
            ns => LowRank.GaLore(ns, lr: 0.02, beta2: 0.99, weight_decay: 0.01, rank: 3, update_proj_gap: 2, scale: 0.5, proj_type: ProjectionType.ReverseStd),
            gs => LowRank.GaLore(gs, lr: 0.02, beta2: 0.99, weight_decay: 0.01, rank: 3, update_proj_gap: 2, scale: 0.5, proj_type: ProjectionType.ReverseStd),
            () => LowRankPresets.GaLore(lr: 0.02, beta2: 0.99, weight_decay: 0.01, rank: 3, update_proj_gap: 2, scale: 0.5, proj_type: ProjectionType.ReverseStd)),
        ["GaLore randomized"] = new(
            ps => LowRank.GaLore(ps, lr: 0.02, rank: 3, update_proj_gap: 2, projector: GaLoreProjector.RandomizedSvd, oversampling: 2, power_iterations: 1, seed: 7),
            ns => LowRank.GaLore(ns, lr: 0.02, rank: 3, update_proj_gap: 2, projector: GaLoreProjector.RandomizedSvd, oversampling: 2, power_iterations: 1, seed: 7),
            gs => LowRank.GaLore(gs, lr: 0.02, rank: 3, update_proj_gap: 2, projector: GaLoreProjector.RandomizedSvd, oversampling: 2, power_iterations: 1, seed: 7),
            () => LowRankPresets.GaLore(lr: 0.02, rank: 3, update_proj_gap: 2, projector: GaLoreProjector.RandomizedSvd, oversampling: 2, power_iterations: 1, seed: 7)),
        ["GaLoreAdafactor"] = new(
            ps => LowRank.GaLoreAdafactor(ps, lr: 0.02, beta1: 0.9, relative_step: false, scale_parameter: false, rank: 3, update_proj_gap: 2),
            ns => LowRank.GaLoreAdafactor(ns, lr: 0.02, beta1: 0.9, relative_step: false, scale_parameter: false, rank: 3, update_proj_gap: 2),
            gs => LowRank.GaLoreAdafactor(gs, lr: 0.02, beta1: 0.9, relative_step: false, scale_parameter: false, rank: 3, update_proj_gap: 2),
            () => LowRankPresets.GaLoreAdafactor(lr: 0.02, beta1: 0.9, relative_step: false, scale_parameter: false, rank: 3, update_proj_gap: 2)),
        ["DctAdamW"] = new(
            ps => LowRank.DctAdamW(ps, lr: 0.02, weight_decay: 0.01, rank: 3, update_proj_gap: 2, scale: 0.5, sim_type: DctTransformMethod.FastTransform),
            ns => LowRank.DctAdamW(ns, lr: 0.02, weight_decay: 0.01, rank: 3, update_proj_gap: 2, scale: 0.5, sim_type: DctTransformMethod.FastTransform),
            gs => LowRank.DctAdamW(gs, lr: 0.02, weight_decay: 0.01, rank: 3, update_proj_gap: 2, scale: 0.5, sim_type: DctTransformMethod.FastTransform),
            () => LowRankPresets.DctAdamW(lr: 0.02, weight_decay: 0.01, rank: 3, update_proj_gap: 2, scale: 0.5, sim_type: DctTransformMethod.FastTransform)),
        ["OnlineSubspaceDescent"] = new(
            ps => LowRank.OnlineSubspaceDescent(ps, lr: 0.02, rank: 3, update_proj_gap: 2, p_weight_decay: 0.1, conventions: AdamConventions.TorchOptim),
            ns => LowRank.OnlineSubspaceDescent(ns, lr: 0.02, rank: 3, update_proj_gap: 2, p_weight_decay: 0.1, conventions: AdamConventions.TorchOptim),
            gs => LowRank.OnlineSubspaceDescent(gs, lr: 0.02, rank: 3, update_proj_gap: 2, p_weight_decay: 0.1, conventions: AdamConventions.TorchOptim),
            () => LowRankPresets.OnlineSubspaceDescent(lr: 0.02, rank: 3, update_proj_gap: 2, p_weight_decay: 0.1, conventions: AdamConventions.TorchOptim)),
        ["GaLorePlus"] = new(
            ps => LowRank.GaLorePlus(ps, lr: 0.02, rank: 3, update_proj_gap: 2, seed: 5, residual_density: 0.1, residual_warmup: 1),
            ns => LowRank.GaLorePlus(ns, lr: 0.02, rank: 3, update_proj_gap: 2, seed: 5, residual_density: 0.1, residual_warmup: 1),
            gs => LowRank.GaLorePlus(gs, lr: 0.02, rank: 3, update_proj_gap: 2, seed: 5, residual_density: 0.1, residual_warmup: 1),
            () => LowRankPresets.GaLorePlus(lr: 0.02, rank: 3, update_proj_gap: 2, seed: 5, residual_density: 0.1, residual_warmup: 1)),
        ["Smmf"] = new(
            ps => LowRank.Smmf(ps, lr: 0.02, decay_rate: -0.8, weight_decay: 0.01, vector_reshape: false),
            ns => LowRank.Smmf(ns, lr: 0.02, decay_rate: -0.8, weight_decay: 0.01, vector_reshape: false),
            gs => LowRank.Smmf(gs, lr: 0.02, decay_rate: -0.8, weight_decay: 0.01, vector_reshape: false),
            () => LowRankPresets.Smmf(lr: 0.02, decay_rate: -0.8, weight_decay: 0.01, vector_reshape: false)),
        ["AdamW"] = new(
            ps => LowRank.AdamW(ps, lr: 0.02, beta1: 0.8, weight_decay: 0.01),
            ns => LowRank.AdamW(ns, lr: 0.02, beta1: 0.8, weight_decay: 0.01),
            gs => LowRank.AdamW(gs, lr: 0.02, beta1: 0.8, weight_decay: 0.01),
            () => LowRankPresets.AdamW(lr: 0.02, beta1: 0.8, weight_decay: 0.01)),
    };

    public static TheoryData<string> MethodNames() => [.. Methods.Keys];

    /// <summary>Trains a fresh copy of the test MLP for four steps with the optimizer <paramref name="create"/> builds; returns its weights.</summary>
    private static Tensor[] Train(Func<nn.Module, LowRankOptimizer> create)
    {
        var model = TestProblems.Mlp(3);
        var (x, y) = TestProblems.Data(3);
        using var opt = create(model);
        for (var step = 0; step < 4; step++)
        {
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
        }
        return TestProblems.Snapshot(model);
    }

    [Theory]
    [MemberData(nameof(MethodNames))]
    public void TheThreeShapesAndThePresetTakeIdenticalSteps(string method)
    {
        using var scope = NewDisposeScope();
        var b = Methods[method];
        var initial = TestProblems.Snapshot(TestProblems.Mlp(3));
        var byParameters = Train(m => b.Parameters(m.parameters()));
        var runs = new Dictionary<string, Tensor[]>
        {
            ["named parameters"] = Train(m => b.Named(m.named_parameters())),
            ["groups"] = Train(m => b.Groups([new LowRankParamGroup(m.parameters())])),
            ["preset"] = Train(m => new LowRankOptimizer([new LowRankParamGroup(m.parameters())], b.Preset())),
        };
        for (var i = 0; i < initial.Length; i++)
            byParameters[i].allclose(initial[i], rtol: 0, atol: 0).Should().BeFalse($"{method} trains parameter {i}");
        foreach (var (shape, weights) in runs)
            for (var i = 0; i < weights.Length; i++)
                TensorAssert.Identical(weights[i], byParameters[i], $"{method} over {shape} vs over parameters, parameter {i}");
    }

    [Fact]
    public void GaLorePlusOverAModelStepsAsItsHeadGroupsWithThePreset()
    {
        using var scope = NewDisposeScope();
        static AttentionHeads? Heads(string name) => name == "fc1" ? AttentionHeads.QueryKeyValue(4) : null;
        var overModel = Train(m => LowRank.GaLorePlus(m, Heads, lr: 0.02, beta2: 0.99, rank: 3, update_proj_gap: 2, residual_density: 0.1, residual_warmup: 1));
        var preset = () => LowRankPresets.GaLorePlus(lr: 0.02, beta2: 0.99, rank: 3, update_proj_gap: 2, residual_density: 0.1, residual_warmup: 1);
        var overGroups = Train(m =>
        {
            var options = preset();
            return new LowRankOptimizer(LowRank.HeadGroups(m, Heads, (GaLorePlusProjection)options.Projection!), options);
        });
        var withoutHeads = Train(m => new LowRankOptimizer([new LowRankParamGroup(m.parameters())], preset()));
        for (var i = 0; i < overModel.Length; i++) TensorAssert.Identical(overModel[i], overGroups[i], $"parameter {i}");
        overModel[0].allclose(withoutHeads[0], rtol: 0, atol: 0).Should().BeFalse("the attention weight's heads change its steps");
    }

    /// <summary>The example of README.md and docs/getting-started.md (presets as group options), compiled and run.</summary>
    [Fact]
    public void TheDocumentedPresetExampleRuns()
    {
        using var scope = NewDisposeScope();
        var model = TestProblems.Mlp(3);
        var (x, y) = TestProblems.Data(3);

        // --- as in the docs ---
        var split = LowRank.SplitParameters(model);                 // Linear weights, then the rest
        var opt = new LowRankOptimizer(
        [
            new LowRankParamGroup(split[0].Parameters, LowRankPresets.GaLore(lr: 1e-3, rank: 128)),
            new LowRankParamGroup(split[1].Parameters, LowRankPresets.Smmf(lr: 1e-3)),
        ], LowRankPresets.AdamW(lr: 1e-3));
        // --- end ---

        using var _ = opt;
        TestProblems.LossAndBackward(model, x, y);
        opt.step();
        opt.ParamGroups.Cast<LowRankParamGroup>().Select(g => g.Options.Rule!.GetType()).Should().Equal(typeof(AdamConfig), typeof(SmmfConfig));
        opt.States.Select(s => s.StateBytes).Should().OnlyContain(bytes => bytes > 0);
    }
}
