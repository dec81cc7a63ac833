using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static LowRankOptim.Tests.Presets.FactoryGoldenTests;
using static LowRankOptim.Tests.Presets.PresetCatalog;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Presets;

/// <summary>Presets give the reference options; every factory shape builds its optimizer with exactly the preset's options.</summary>
public sealed class PresetOptionsTests
{
    public static TheoryData<string, Func<LowRankOptions>, LowRankOptions> ReferenceDefaults() => new()
    {
        { "GaLore", () => LowRankPresets.GaLore(), Options(1e-3, 0, WeightDecayOrder.AfterUpdate, new SvdProjection(128, 200, 0.25, ProjectionType.Std), GaLoreAdam()) },
        { "GaLore randomized", () => LowRankPresets.GaLore(projector: GaLoreProjector.RandomizedSvd),
            Options(1e-3, 0, WeightDecayOrder.AfterUpdate, new RandomizedSvdProjection(128, 200, 0.25, ProjectionType.Std, Oversampling: 8, PowerIterations: 2, Seed: 0), GaLoreAdam()) },
        { "GaLoreAdafactor", () => LowRankPresets.GaLoreAdafactor(),
            Options(0, 0, WeightDecayOrder.BeforeUpdate, new SvdProjection(), new AdafactorConfig(null, 1e-30, 1e-3, 1.0, -0.8, RelativeStep: true, ScaleParameter: true, WarmupInit: false)) },
        { "DctAdamW", () => LowRankPresets.DctAdamW(),
            Options(1e-3, 0, WeightDecayOrder.BeforeUpdate, new DctProjection(128, 1, 1.0, DctTransformMethod.MatrixProduct, 1.0, 32000, ProjectionType.Std), TorchAdam()) },
        { "OnlineSubspaceDescent", () => LowRankPresets.OnlineSubspaceDescent(),
            Options(1e-3, 0, WeightDecayOrder.AfterUpdate, new OnlinePcaProjection(128, 200, 0.25, ProjectionType.Std, BasisRule: TorchAdam(), BasisWeightDecay: 0.01), GaLoreAdam()) },
        { "GaLorePlus", () => LowRankPresets.GaLorePlus(),
            Options(1e-3, 0, WeightDecayOrder.AfterUpdate, new GaLorePlusProjection(128, 200, 0.25, 8, 2, 0, null, CrossHeadReading.SharedLongSide, 0, 200, false, 1.0), GaLoreAdam()) },
        { "Smmf", () => LowRankPresets.Smmf(), Options(1e-3, 0, WeightDecayOrder.BeforeUpdate, FullSpace.Instance, new SmmfConfig(0.9, 1e-8, -0.5, 0.999, true, KernelPreference.Auto)) },
        { "AdamW", () => LowRankPresets.AdamW(), Options(1e-3, 0, WeightDecayOrder.BeforeUpdate, FullSpace.Instance, TorchAdam()) },
    };

    [Theory]
    [MemberData(nameof(ReferenceDefaults))]
    public void PresetsHaveTheReferenceDefaults(string what, Func<LowRankOptions> preset, LowRankOptions expected)
    {
        Of(preset()).Should().Be(Of(expected), what);
        preset().Should().NotBeSameAs(preset(), "every call returns a new options object (an options object belongs to one group)");
    }

    public static TheoryData<string, string> SettingNames()
    {
        var data = new TheoryData<string, string> { { "GaLore", "defaults" } };
        foreach (var (preset, setting, _) in Settings) data.Add(preset, setting);
        return data;
    }

    private static Dictionary<string, object?> KnobsOf(string preset, string setting) =>
        setting == "defaults" ? [] : Settings.Single(s => s.Preset == preset && s.Case == setting).Knobs;

    [Theory]
    [MemberData(nameof(SettingNames))]
    public void EveryFactoryShapeBuildsItsOptimizerWithThePresetsOptions(string preset, string setting)
    {
        using var scope = NewDisposeScope();
        var knobs = KnobsOf(preset, setting);
        var expected = Of(Call<LowRankOptions>(Preset(preset), knobs));
        foreach (var shape in Shapes)
        {
            using var opt = Call<LowRankOptimizer>(Factory(preset, shape), knobs, Empty(shape));
            Of(opt.Defaults).Should().Be(expected, $"LowRank.{preset}({shape.Name}, {setting}) uses LowRankPresets.{preset}'s options");
            opt.ParamGroups.Should().HaveCount(shape == GroupsShape ? 0 : 1, "the flat shapes make one group");
            foreach (LowRankParamGroup g in opt.ParamGroups) Of(g.Options).Should().Be(expected, "the group takes the defaults");
        }
    }

    [Fact]
    public void GaLorePlusOverAModelUsesThePresetsOptionsAndItsProjectionWithHeads()
    {
        using var scope = NewDisposeScope();
        var knobs = KnobsOf("GaLorePlus", "every knob");
        var heads = AttentionHeads.QueryKeyValue(4);
        var factory = Factories("GaLorePlus").Single(f => f.GetParameters()[0].ParameterType == typeof(nn.Module));
        var model = TestProblems.Mlp(1);
        model.to(ScalarType.BFloat16); // the setting rounds bf16 weights stochastically: every group needs a bf16 parameter
        using var opt = Call<LowRankOptimizer>(factory, knobs, model, (Func<string, AttentionHeads?>)(n => n == "fc1" ? heads : null), null);
        var preset = Call<LowRankOptions>(Preset("GaLorePlus"), knobs);
        Of(opt.Defaults).Should().Be(Of(preset));
        opt.ParamGroups.Cast<LowRankParamGroup>().Select(g => g.Options.Projection)
            .Should().Equal(((GaLorePlusProjection)preset.Projection!) with { Heads = heads }, preset.Projection, FullSpace.Instance);
    }

    [Fact]
    public void TheSettingsGiveEveryKnobOfEveryPresetANonDefaultValue()
    {
        foreach (var preset in AllPresets)
        {
            var set = Settings.Where(s => s.Preset == preset.Name).SelectMany(s => s.Knobs).ToArray();
            foreach (var (name, _, defaultValue) in Knobs(preset))
                set.Where(kv => kv.Key == name).Should().Contain(kv => !Equals(kv.Value, defaultValue),
                    $"a setting of {preset.Name} changes {name} (add one for a new knob)");
        }
    }

    [Theory]
    [MemberData(nameof(SettingNames))]
    public void EveryKnobOfASettingChangesTheOptions(string preset, string setting)
    {
        var knobs = KnobsOf(preset, setting);
        var all = Of(Call<LowRankOptions>(Preset(preset), knobs));
        foreach (var name in knobs.Keys)
        {
            var without = knobs.Where(kv => kv.Key != name).ToDictionary();
            object withoutOptions;
            try { withoutOptions = Of(Call<LowRankOptions>(Preset(preset), without)); }
            catch (ArgumentException e) { withoutOptions = e; }
            withoutOptions.Should().NotBe(all, $"LowRankPresets.{preset} reads {name}");
        }
    }

    /// <summary>Values that some knob of each type rejects.</summary>
    private static object?[] InvalidCandidates(Type type)
    {
        var t = Nullable.GetUnderlyingType(type) ?? type;
        if (t == typeof(double)) return [-1.0, double.NaN, double.PositiveInfinity, 0.0, 1.0, 2.0];
        if (t == typeof(int)) return [-1, 0];
        if (t == typeof(long)) return [-1L, 0L];
        if (t.IsEnum) return [Enum.ToObject(t, 99)];
        return [];
    }

    /// <summary>Knobs no value of their type rejects.</summary>
    private static readonly string[] Unconstrained = ["GaLorePlus.seed"];

    [Theory]
    [MemberData(nameof(PresetStructureTests.PresetNames), MemberType = typeof(PresetStructureTests))]
    public void AnInvalidKnobThrowsAnArgumentExceptionNamingIt(string name)
    {
        using var scope = NewDisposeScope();
        var rejected = new HashSet<string>();
        var calls = new List<(string What, Func<IReadOnlyDictionary<string, object?>, object> Call)>
        {
            ($"LowRankPresets.{name}", knobs => Call<LowRankOptions>(Preset(name), knobs)),
        };
        foreach (var factory in Factories(name))
        {
            var shape = factory.GetParameters()[0].ParameterType;
            calls.Add(shape == typeof(nn.Module)
                ? ($"LowRank.{name}(model, …)", knobs => Call<LowRankOptimizer>(factory, knobs, TestProblems.Mlp(1), (Func<string, AttentionHeads?>)(_ => null), null))
                : ($"LowRank.{name}({shape.Name}, …)", knobs => Call<LowRankOptimizer>(factory, knobs, Empty(shape))));
        }
        foreach (var (knob, type, _) in Knobs(Preset(name)))
            foreach (var value in InvalidCandidates(type))
                foreach (var (what, call) in calls)
                {
                    object? result = null;
                    try { result = call(new Dictionary<string, object?> { [knob] = value }); }
                    catch (ArgumentException e)
                    {
                        e.ParamName.Should().Be(knob, $"{what} with {knob} = {value} names the knob the user typed ({e.Message})");
                        rejected.Add(knob);
                    }
                    (result as IDisposable)?.Dispose();
                }
        var constrained = Knobs(Preset(name)).Where(k => InvalidCandidates(k.Type).Length > 0 && !Unconstrained.Contains($"{name}.{k.Name}")).Select(k => k.Name);
        rejected.Should().BeEquivalentTo(constrained, $"every numeric and enum knob of {name} rejects some value");
    }

    private static Parameter[] Params() => [new Parameter(randn(6, 4)), new Parameter(randn(4))];

    private static (string, Parameter)[] Named() => [("w", new Parameter(randn(6, 4))), ("b", new Parameter(randn(4)))];

    private static LowRankParamGroup[] Groups() => [new LowRankParamGroup(Params())];

    public static TheoryData<string, Action, string> InvalidArguments() => new()
    {
        { "GaLore rank 0", () => LowRank.GaLore(Params(), rank: 0), "rank" },
        { "GaLore named update_proj_gap 0", () => LowRank.GaLore(Named(), update_proj_gap: 0), "update_proj_gap" },
        { "GaLore preset rank 0", () => LowRankPresets.GaLore(rank: 0), "rank" },
        { "GaLore preset seed with the exact SVD", () => LowRankPresets.GaLore(seed: 1), "seed" },
        { "DCT preset scale 0", () => LowRankPresets.DctAdamW(scale: 0), "scale" },
        { "DCT named scale < 0", () => LowRank.DctAdamW(Named(), scale: -1), "scale" },
        { "DCT groups weight_decay < 0", () => LowRank.DctAdamW(Groups(), lr: 0.01, weight_decay: -1), "weight_decay" },
        { "Adafactor preset clip_threshold 0", () => LowRankPresets.GaLoreAdafactor(clip_threshold: 0), "clip_threshold" },
        { "Adafactor named lr with relative_step", () => LowRank.GaLoreAdafactor(Named(), lr: 0.1), "lr" },
        { "Adafactor parameters eps1 0", () => LowRank.GaLoreAdafactor(Params(), eps1: 0), "eps1" },
        { "OSD groups p_weight_decay < 0", () => LowRank.OnlineSubspaceDescent(Groups(), p_weight_decay: -1), "p_weight_decay" },
        { "OSD named proj_type Full", () => LowRank.OnlineSubspaceDescent(Named(), proj_type: ProjectionType.Full), "proj_type" },
        { "SMMF named growth_rate 2", () => LowRank.Smmf(Named(), growth_rate: 2), "growth_rate" },
        { "AdamW groups eps < 0", () => LowRank.AdamW(Groups(), eps: -1), "eps" },
        { "AdamW named beta2 1", () => LowRank.AdamW(Named(), beta2: 1), "beta2" },
        { "GaLore+ named residual_warmup < 0", () => LowRank.GaLorePlus(Named(), residual_warmup: -1), "residual_warmup" },
        { "GaLore+ over a model power_iterations < 0", () => LowRank.GaLorePlus(TestProblems.Mlp(1), _ => null, power_iterations: -1), "power_iterations" },
        { "GaLore+ over a null model", () => LowRank.GaLorePlus(null!, _ => null), "model" },
        { "GaLore+ over a model, null heads_of", () => LowRank.GaLorePlus(TestProblems.Mlp(1), null!), "heads_of" },
        { "null parameters", () => LowRank.GaLore((IEnumerable<Parameter>)null!), "parameters" },
        { "null named parameters", () => LowRank.Smmf((IEnumerable<(string, Parameter)>)null!), "parameters" },
        { "null groups", () => LowRank.DctAdamW((IEnumerable<LowRankParamGroup>)null!), "groups" },
    };

    [Theory]
    [MemberData(nameof(InvalidArguments))]
    public void InvalidArgumentsNameTheArgument(string what, Action create, string parameter)
    {
        using var scope = NewDisposeScope();
        create.Should().Throw<ArgumentException>(what).Where(e => e.ParamName == parameter, $"{what} names {parameter}");
    }

#pragma warning disable CS0618 // The superseded overloads are what these tests call.
    [Fact]
    public void PositionalCallsInTheOrderBeforeThePresetsKeepTheirMeaning()
    {
        using var scope = NewDisposeScope();
        var dct = Options(0.01, 0.1, WeightDecayOrder.BeforeUpdate, new DctProjection(4, 1, 1.0, DctTransformMethod.MatrixProduct, 1.0, 32000, ProjectionType.Std), TorchAdam());
        using (var opt = LowRank.DctAdamW(Params(), 0.01, 0.1, 4)) Of(opt.Defaults).Should().Be(Of(dct), "DctAdamW(ps, lr, weight_decay, rank)");
        using (var opt = LowRank.DctAdamW(Groups(), 0.01, 0.1, rank: 4)) Of(opt.Defaults).Should().Be(Of(dct), "DctAdamW(groups, lr, weight_decay, rank: r)");
        using (var opt = LowRank.DctAdamW(Params(), 0.01, 0.1, 4, 1, DctTransformMethod.MatrixProduct, 1.0, 32000, 0.9, 0.999, 1e-8, ProjectionType.Std))
            Of(opt.Defaults).Should().Be(Of(dct), "DctAdamW with every knob by position");

        var osd = Options(0.05, 0.4, WeightDecayOrder.BeforeUpdate, new OnlinePcaProjection(4, 17, 2.0, ProjectionType.Right, BasisRule: new SgdConfig(0.5), BasisWeightDecay: 0.02),
            TorchAdam(0.6, 0.97, 1e-5, correctBias: false));
        using (var opt = LowRank.OnlineSubspaceDescent(Params(), 0.05, 0.6, 0.97, 1e-5, 0.4, 4, 17, 2.0, ProjectionType.Right, false, AdamConventions.TorchOptim, new SgdConfig(0.5), 0.02))
            Of(opt.Defaults).Should().Be(Of(osd), "OnlineSubspaceDescent with every knob by position");
        using (var opt = LowRank.OnlineSubspaceDescent(Groups(), 0.05, 0.6, 0.97, 1e-5, 0.4, 4, 17, 2.0, ProjectionType.Right, false, AdamConventions.TorchOptim, new SgdConfig(0.5), 0.02))
            Of(opt.Defaults).Should().Be(Of(osd), "OnlineSubspaceDescent over groups with every knob by position");

        using (var opt = LowRank.GaLorePlus(TestProblems.Mlp(1), _ => null, null, 0.01, 0.05, 3))
            Of(opt.Defaults).Should().Be(Of(Options(0.01, 0.05, WeightDecayOrder.AfterUpdate, new GaLorePlusProjection(Rank: 3), GaLoreAdam())),
                "GaLorePlus(model, heads_of, include, lr, weight_decay, rank)");
    }
#pragma warning restore CS0618

    [Fact]
    public void AnEmptyCollectionKeepsItsMeaningWhereItCompiledBefore()
    {
        using var adamw = LowRank.AdamW([], lr: 0.01);
        adamw.ParamGroups.Should().HaveCount(1, "LowRank.AdamW([]) is the flat shape (one empty group), as before the presets");
        using var adafactor = LowRank.GaLoreAdafactor([], lr: 0.01, relative_step: false);
        adafactor.ParamGroups.Should().BeEmpty("LowRank.GaLoreAdafactor([]) is the groups shape (no groups), as before the presets");
    }
}
