using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Conformance;

/// <summary>
/// Every catalog method: a group's method configuration is fixed once the optimizer is built, a checkpoint loads
/// only into an optimizer of the same method configuration, and hyperparameters (lr, betas, weight decay) are restored
/// by a load as torch.optim restores them (issue 12, points 1 and 2).
/// </summary>
public sealed class MethodConfigurationTests
{
    public static TheoryData<string> Methods() => MethodCatalog.Names();


    private static List<LowRankOptions> Options(LowRankOptimizer opt) => opt.ParamGroups.Cast<LowRankParamGroup>().Select(g => g.Options).ToList();

    /// <summary>A projection of another structure: none instead of one, or GaLore's instead of none.</summary>
    private static IProjectionConfig OtherProjection(IProjectionConfig p) => p is FullSpace ? new SvdProjection(Rank: 2) : FullSpace.Instance;

    /// <summary>A rule of another kind.</summary>
    private static IUpdateRuleConfig OtherRule(IUpdateRuleConfig r) => r is AdamConfig ? new SgdConfig(0.9) : new AdamConfig();

    private static byte[] LoadInto(string method, byte[] file)
    {
        using var opt = MethodCatalog.Get(method).Create(TestProblems.Mlp(9));
        using (var reader = new BinaryReader(new MemoryStream(file))) opt.load_state_dict(reader);
        return Checkpoints.Bytes(opt);
    }

    /// <summary>
    /// Point 1: a structural change after construction (projection or rule replaced) is refused at the next step and
    /// at the next save, naming the group; nothing changes, and once the original config is back the optimizer's own
    /// checkpoint loads into an optimizer built the same way.
    /// </summary>
    [Theory]
    [MemberData(nameof(Methods))]
    public void StructuralChangesAfterConstructionAreRefusedAndTheOwnCheckpointStaysLoadable(string method)
    {
        using var scope = NewDisposeScope();
        var model = TestProblems.Mlp(1);
        using var opt = MethodCatalog.Get(method).Trained(model, 2);
        var before = Checkpoints.Bytes(opt);
        var weights = TestProblems.Snapshot(model);
        var (x, y) = TestProblems.Data(1);

        foreach (var (options, g) in Options(opt).Select((o, g) => (o, g)))
        {
            foreach (var role in new[] { "projection", "rule" })
            {
                var (projection, rule) = (options.Projection!, options.Rule!);
                if (role == "projection") options.Projection = OtherProjection(projection);
                else options.Rule = OtherRule(rule);

                TestProblems.LossAndBackward(model, x, y);
                var step = () => opt.step();
                step.Should().Throw<InvalidOperationException>($"{method}: group {g}'s {role} changed")
                    .WithMessage($"parameter group {g}: the {role} cannot switch from *after the optimizer is built*");
                opt.zero_grad();
                var save = () => Checkpoints.Bytes(opt);
                save.Should().Throw<InvalidOperationException>($"{method}: a save after group {g}'s {role} changed").WithMessage($"parameter group {g}:*cannot switch*");

                (options.Projection, options.Rule) = (projection, rule);
                Checkpoints.Bytes(opt).Should().Equal(before, $"{method}: the refused {role} change of group {g} changed nothing");
            }
        }
        foreach (var (p, q) in model.parameters().Zip(weights)) TensorAssert.Identical(p, q, $"{method}: no weight moved");
        LoadInto(method, before).Should().Equal(before, $"{method}: the optimizer's own checkpoint loads into an optimizer built the same way");
    }

    /// <summary>The issue's case: GaLore's rank changed in place from 2 to 1.</summary>
    [Fact]
    public void ChangingGaLoresRankInPlaceIsRefusedNamingRankAndBothValues()
    {
        using var scope = NewDisposeScope();
        var w = new Parameter(TestProblems.Gradient(1, 8, 6));
        using var opt = LowRank.GaLore([w], lr: 0.01, rank: 2, update_proj_gap: 2);
        w.grad = TestProblems.Gradient(2, 8, 6);
        opt.step();
        var saved = Checkpoints.Bytes(opt);
        var options = ((LowRankParamGroup)opt.ParamGroups.First()).Options;
        options.Projection = ((SvdProjection)options.Projection!) with { Rank = 1 };
        w.grad = TestProblems.Gradient(3, 8, 6);
        var step = () => opt.step();
        step.Should().Throw<InvalidOperationException>().WithMessage("parameter group 0: the projection option rank cannot switch from 2 to 1 after the optimizer is built*");
        var save = () => Checkpoints.Bytes(opt);
        save.Should().Throw<InvalidOperationException>().WithMessage("*rank cannot switch from 2 to 1*");

        // A load restores what the optimizer was built with; its file loads into an optimizer built the same way.
        using (var reader = new BinaryReader(new MemoryStream(saved))) opt.load_state_dict(reader);
        Checkpoints.Bytes(opt).Should().Equal(saved);
        opt.step();
        var w2 = new Parameter(w.detach().clone());
        using var same = LowRank.GaLore([w2], lr: 0.01, rank: 2, update_proj_gap: 2);
        using (var reader = new BinaryReader(new MemoryStream(Checkpoints.Bytes(opt)))) same.load_state_dict(reader);
        same.States[0].Step.Should().Be(2);
    }

    /// <summary>Point 2: every other method's checkpoint is refused, naming the group, the option and both values; nothing changes.</summary>
    [Theory]
    [MemberData(nameof(Methods))]
    public void AnotherMethodsCheckpointIsRefused(string saving)
    {
        using var scope = NewDisposeScope();
        byte[] file;
        int groups;
        using (var source = MethodCatalog.Get(saving).Trained(TestProblems.Mlp(2), 3)) (file, groups) = (Checkpoints.Bytes(source), source.ParamGroups.Count());
        foreach (var loading in MethodCatalog.All.Where(m => m.Name != saving))
        {
            using var target = loading.Trained(TestProblems.Mlp(3), 1);
            var before = Checkpoints.Bytes(target);
            var load = () =>
            {
                using var reader = new BinaryReader(new MemoryStream(file));
                target.load_state_dict(reader);
            };
            var message = load.Should().Throw<InvalidDataException>($"a {saving} checkpoint loaded into {loading.Name}").Which.Message;
            if (target.ParamGroups.Count() == groups)
                message.Should().MatchRegex(@"^parameter group \d+: the checkpoint was saved with .+, but this optimizer's group has .+",
                    $"{saving} into {loading.Name} names the group, the option and both values");
            Checkpoints.Bytes(target).Should().Equal(before, $"{saving} into {loading.Name}: a refused load changes nothing");
        }
    }

    [Fact]
    public void ASavedStructuralOptionNamesTheOptionAndBothValues()
    {
        using var scope = NewDisposeScope();
        var cases = new (Func<Parameter, LowRankOptimizer> Saving, Func<Parameter, LowRankOptimizer> Loading, string Message)[]
        {
            (p => LowRank.GaLore([p], rank: 3), p => LowRank.GaLore([p], rank: 2),
                "parameter group 0: the checkpoint was saved with projection option 'rank' = 3, but this optimizer's group has 'rank' = 2.*"),
            (p => LowRank.GaLore([p], rank: 2, projector: GaLoreProjector.RandomizedSvd), p => LowRank.GaLore([p], rank: 2),
                "parameter group 0: the checkpoint was saved with the projection RandomizedSvdProjection, but this optimizer's group has the projection SvdProjection.*"),

            (p => LowRank.Smmf([p], beta: null), p => LowRank.Smmf([p]),
                "*'beta' = null, but this optimizer's group has 'beta' = 0.9 (whether beta is set decides whether a first moment is kept)*"),
            (p => LowRank.AdamW([p]), p => LowRank.AdamW([p], conventions: AdamConventions.GaLoreReference),
                "*decay_order = BeforeUpdate, but this optimizer's group has decay_order = AfterUpdate*"),
            (p => LowRank.GaLore([p], rank: 2, correct_bias: false), p => LowRank.GaLore([p], rank: 2),
                "*rule option 'correct_bias' = false, but this optimizer's group has 'correct_bias' = true*"),
            (p => LowRank.OnlineSubspaceDescent([p], rank: 2), p => LowRank.OnlineSubspaceDescent([p], rank: 2, p_optimizer: new AdamConfig(Beta1: 0.5)),
                "*projection option 'p_optimizer.beta1' = 0.9, but this optimizer's group has 'p_optimizer.beta1' = 0.5*"),
        };
        foreach (var (saving, loading, message) in cases)
        {
            var p = new Parameter(TestProblems.Gradient(4, 8, 6));
            using var a = saving(p);
            p.grad = TestProblems.Gradient(5, 8, 6);
            a.step();
            var q = new Parameter(TestProblems.Gradient(4, 8, 6));
            using var b = loading(q);
            var load = () => b.load_state_dict(new BinaryReader(new MemoryStream(Checkpoints.Bytes(a))));
            load.Should().Throw<InvalidDataException>().WithMessage(message);
        }
    }

    /// <summary>Point 2: hyperparameters changed in the loading optimizer are replaced by the saved ones (torch.optim's behaviour).</summary>
    [Theory]
    [MemberData(nameof(Methods))]
    public void ALoadRestoresTheSavedHyperparameters(string method)
    {
        using var scope = NewDisposeScope();
        using var source = MethodCatalog.Get(method).Trained(TestProblems.Mlp(4), 3);
        var file = Checkpoints.Bytes(source);
        using var target = MethodCatalog.Get(method).Trained(TestProblems.Mlp(5), 1);
        foreach (var options in Options(target))
        {
            options.LearningRate *= 0.5;
            options.WeightDecay = options.WeightDecay!.Value + 0.25;
            if (options.Rule is IBetasRuleConfig b) options.Rule = b.WithBetas(0.5, 0.75);
        }
        using (var reader = new BinaryReader(new MemoryStream(file))) target.load_state_dict(reader);
        foreach (var (t, s) in Options(target).Zip(Options(source)))
        {
            t.LearningRate.Should().Be(s.LearningRate, method);
            t.InitialLearningRate.Should().Be(s.InitialLearningRate, method);
            t.WeightDecay.Should().Be(s.WeightDecay, method);
            t.Rule.Should().Be(s.Rule, method);
        }
        Checkpoints.Bytes(target).Should().Equal(file, $"{method}: the loaded optimizer saves the file it loaded");
    }
}
