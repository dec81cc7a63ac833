using System.Text;
using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.State;

/// <summary>
/// User-written projection and rule configs: refused when their group is added unless registered, saved and loaded
/// once registered; a file naming a kind nobody registered fails with the kind and the place.
/// </summary>
public sealed class ConfigRegistryTests
{
    static ConfigRegistryTests()
    {
        ConfigRegistry.Register(ScaledSgdConfig.Read);
        ConfigRegistry.Register(CustomSvdProjection.Kind, CustomSvdProjection.Read);
    }

    private static Parameter[] Params() => [new Parameter(randn(6, 4)), new Parameter(randn(4))];

    private static LowRankOptions Options(IProjectionConfig projection, IUpdateRuleConfig rule) =>
        Equivalence.AdamWEquivalenceTests.Options(projection, rule);

    public static TheoryData<string, Func<LowRankOptimizer>, string, string> UnregisteredConfigs() => new()
    {
        { "rule", () => new LowRankOptimizer([new LowRankParamGroup(Params())], Options(FullSpace.Instance, new UnregisteredRule())),
            "Rule", "parameter group 0: the rule config LowRankOptim.Tests.State.UnregisteredRule is not registered*" +
            "ConfigRegistry.Register<UnregisteredRule>(\"UnregisteredRule\", reader => *" },
        { "projection", () => new LowRankOptimizer([new LowRankParamGroup(Params())], Options(new UnregisteredProjection(), new AdamConfig())),
            "Projection", "parameter group 0: the projection config LowRankOptim.Tests.State.UnregisteredProjection is not registered*" +
            "ConfigRegistry.Register<UnregisteredProjection>(\"UnregisteredProjection\", reader => *" },
        { "second group's rule", () => new LowRankOptimizer(
                [new LowRankParamGroup(Params()), new LowRankParamGroup(Params(), new LowRankOptions { Rule = new UnregisteredRule(0.5) })],
                Options(FullSpace.Instance, new AdamConfig())),
            "Rule", "parameter group 1: the rule config *UnregisteredRule is not registered*ConfigRegistry.Register<UnregisteredRule>*" },
        { "basis optimizer of Online Subspace Descent", () => new LowRankOptimizer([new LowRankParamGroup(Params())],
                Options(new OnlinePcaProjection(Rank: 2, BasisRule: new UnregisteredRule()), new AdamConfig())),
            "p_optimizer", "parameter group 0, the basis optimizer: the rule config *UnregisteredRule is not registered*ConfigRegistry.Register<UnregisteredRule>*" },
    };

    [Theory]
    [MemberData(nameof(UnregisteredConfigs))]
    public void AnUnregisteredConfigIsRefusedWhenItsGroupIsAdded(string what, Func<LowRankOptimizer> create, string parameter, string message)
    {
        using var scope = NewDisposeScope();
        create.Should().Throw<ArgumentException>(what).Where(e => e.ParamName == parameter, what).WithMessage(message);
    }

    [Fact]
    public void AnUnregisteredConfigIsRefusedByAddParamGroupAndChangesNothing()
    {
        using var scope = NewDisposeScope();
        using var opt = LowRank.AdamW(Params());
        var add = () => opt.add_param_group(new LowRankParamGroup(Params(), new LowRankOptions { Rule = new UnregisteredRule() }));
        add.Should().Throw<ArgumentException>().WithMessage("parameter group 1: the rule config *UnregisteredRule is not registered*");
        opt.ParamGroups.Should().HaveCount(1);
        opt.States.Should().HaveCount(2);
    }

    [Fact]
    public void RegisteredCustomConfigsSaveLoadAndResumeExactly()
    {
        using var scope = NewDisposeScope();
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-registry-");
        try
        {
            var (x, y) = TestProblems.Data(7);
            const int k = 4, n = 5;
            LowRankOptimizer Create(Sequential model, ScaledSgdConfig rule) =>
                new([new LowRankParamGroup(LowRank.SplitParameters(model)[0].Parameters, new LowRankOptions { Projection = new CustomSvdProjection() }),
                     new LowRankParamGroup(LowRank.SplitParameters(model)[1].Parameters)],
                    Options(FullSpace.Instance, rule));

            var straight = TestProblems.Mlp(7);
            using var straightOpt = Create(straight, new ScaledSgdConfig());
            Train(straight, straightOpt, k + n, x, y);

            var first = TestProblems.Mlp(7);
            using (var firstOpt = Create(first, new ScaledSgdConfig()))
            {
                Train(first, firstOpt, k, x, y);
                first.save(Path.Combine(dir.FullName, "model.bin"));
                firstOpt.save_state_dict(Path.Combine(dir.FullName, "optimizer.bin"));
            }

            var resumed = TestProblems.Mlp(70);
            resumed.load(Path.Combine(dir.FullName, "model.bin"));
            // Built with another factor: the load restores the saved config.
            using var resumedOpt = Create(resumed, new ScaledSgdConfig(Factor: 0.25));
            resumedOpt.load_state_dict(Path.Combine(dir.FullName, "optimizer.bin"));
            var groups = resumedOpt.ParamGroups.Cast<LowRankParamGroup>().ToList();
            groups.Should().OnlyContain(g => g.Options.Rule!.Equals(new ScaledSgdConfig(0.9, 0.5)));
            groups[0].Options.Projection.Should().Be(new CustomSvdProjection());
            resumedOpt.States.Should().OnlyContain(s => s.Step == k);
            Train(resumed, resumedOpt, n, x, y);

            foreach (var ((name, p), q) in straight.named_parameters().Zip(resumed.parameters()))
                TensorAssert.Identical(q, p, name);
            Serialized(resumedOpt).Should().Equal(Serialized(straightOpt));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Theory]
    [InlineData("SgdConfig", "XgdConfig", "*parameter group 0 options: unknown rule kind 'XgdConfig'*registered rule kinds: *AdamConfig*ScaledSgdConfig*SgdConfig*ConfigRegistry.Register*")]
    [InlineData("FullSpace", "HalfSpace", "*parameter group 0 options: unknown projection kind 'HalfSpace'*registered projection kinds: *FullSpace*SvdProjection*ConfigRegistry.Register*")]
    [InlineData("FullSpace", "SgdConfig", "*parameter group 0 options: entry 'projection' names kind 'SgdConfig', a rule config (LowRankOptim.SgdConfig), not a projection config*")]
    public void AFileNamingAnUnknownKindFailsWithTheKindAndThePlace(string kind, string replacement, string message)
    {
        using var scope = NewDisposeScope();
        using var saving = new LowRankOptimizer([new LowRankParamGroup(Params())], Options(FullSpace.Instance, new SgdConfig(0.9)));
        var bytes = Serialized(saving);
        var patched = Replace(bytes, kind, replacement);

        using var loading = new LowRankOptimizer([new LowRankParamGroup(Params())], Options(FullSpace.Instance, new SgdConfig(0.9)));
        var before = Serialized(loading);
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, patched);
            var load = () => loading.load_state_dict(path);
            load.Should().Throw<InvalidDataException>().WithMessage(message);
        }
        finally { File.Delete(path); }
        Serialized(loading).Should().Equal(before, "a failed load changes nothing");
    }

    [Fact]
    public void RegistrationRefusesClashesAndNonConfigs()
    {
        ConfigRegistry.IsRegistered(typeof(AdamConfig)).Should().BeTrue();
        ConfigRegistry.IsRegistered(typeof(ScaledSgdConfig)).Should().BeTrue();
        ConfigRegistry.IsRegistered(typeof(UnregisteredRule)).Should().BeFalse();

        var takenKind = () => ConfigRegistry.Register<UnregisteredRule>("AdamConfig", _ => new UnregisteredRule());
        takenKind.Should().Throw<ArgumentException>().WithMessage("*'AdamConfig' is already registered for LowRankOptim.AdamConfig*");
        var libraryType = () => ConfigRegistry.Register(_ => new AdamConfig());
        libraryType.Should().Throw<ArgumentException>().WithMessage("*LowRankOptim.AdamConfig is one of the library's own configs*");
        var secondKind = () => ConfigRegistry.Register("another kind", ScaledSgdConfig.Read);
        secondKind.Should().Throw<ArgumentException>().WithMessage("*ScaledSgdConfig is already registered under kind 'ScaledSgdConfig'*");
        var notAConfig = () => ConfigRegistry.Register(_ => "text");
        notAConfig.Should().Throw<ArgumentException>().WithMessage("*System.String is neither an IProjectionConfig nor an IUpdateRuleConfig*");
        var abstractType = () => ConfigRegistry.Register<IUpdateRuleConfig>(_ => new SgdConfig());
        abstractType.Should().Throw<ArgumentException>().WithMessage("*abstract*");
        var emptyKind = () => ConfigRegistry.Register<UnregisteredRule>(" ", _ => new UnregisteredRule());
        emptyKind.Should().Throw<ArgumentException>();
        ConfigRegistry.IsRegistered(typeof(UnregisteredRule)).Should().BeFalse("refused registrations change nothing");

        // Registering a type again under its kind replaces its reader.
        ConfigRegistry.Register(ScaledSgdConfig.Read);
        ConfigRegistry.IsRegistered(typeof(ScaledSgdConfig)).Should().BeTrue();
    }

    private static void Train(Sequential model, LowRankOptimizer opt, int steps, Tensor x, Tensor y)
    {
        for (var i = 0; i < steps; i++)
        {
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
        }
    }

    private static byte[] Serialized(LowRankOptimizer opt)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream)) opt.save_state_dict(writer);
        return stream.ToArray();
    }

    /// <summary>Replaces the one occurrence of the length-prefixed string <paramref name="from"/> by <paramref name="to"/> (same length).</summary>
    private static byte[] Replace(byte[] bytes, string from, string to)
    {
        from.Length.Should().Be(to.Length);
        var (needle, replacement) = (Prefixed(from), Prefixed(to));
        var at = bytes.AsSpan().IndexOf(needle);
        at.Should().BeGreaterThanOrEqualTo(0, $"the state holds the kind '{from}'");
        bytes.AsSpan(at + 1).IndexOf(needle).Should().Be(-1, $"the state holds the kind '{from}' once");
        var patched = bytes.ToArray();
        replacement.CopyTo(patched, at);
        return patched;
    }

    private static byte[] Prefixed(string text) => [(byte)Encoding.UTF8.GetByteCount(text), .. Encoding.UTF8.GetBytes(text)];
}
