using System.ComponentModel;
using System.Reflection;
using FluentAssertions;
using Xunit;
using static LowRankOptim.Tests.Presets.PresetCatalog;

namespace LowRankOptim.Tests.Presets;

/// <summary>The API's shape: one preset per factory, TorchSharp's three shapes with the preset's knobs, one knob order.</summary>
public sealed class PresetStructureTests
{
    public static TheoryData<string> PresetNames() => [.. AllPresets.Select(p => p.Name)];

    [Theory]
    [MemberData(nameof(PresetNames))]
    public void EveryPresetHasTheThreeFactoryShapesWithItsKnobs(string name)
    {
        var knobs = Knobs(Preset(name));
        var factories = Factories(name);
        factories.Select(f => f.GetParameters()[0].ParameterType).Should().Contain(Shapes, $"{name} has TorchSharp's three shapes");
        foreach (var factory in factories)
            Knobs(factory).Should().Equal(knobs, $"{factory} takes the knobs of LowRankPresets.{name}: same names, types, defaults and order");
    }

    [Fact]
    public void EveryFactoryHasAPreset()
    {
        var factories = typeof(LowRank).GetMethods(BindingFlags.Public | BindingFlags.Static).Where(m => m.ReturnType == typeof(LowRankOptimizer));
        factories.Select(f => f.Name).Distinct().Should().BeEquivalentTo(AllPresets.Select(p => p.Name));
    }

    /// <summary>The order of the knobs several methods share (the rule at the top of <see cref="LowRank"/>).</summary>
    private static readonly string[] SharedOrder =
        ["lr", "beta1", "beta2", "eps", "weight_decay", "rank", "update_proj_gap", "scale", "proj_type", "correct_bias", "conventions", "projector", "optim_bits", "bf16_stochastic_round", "block_size", "kernel"];

    [Theory]
    [MemberData(nameof(PresetNames))]
    public void SharedKnobsComeInOneOrderWithSnakeCaseNames(string name)
    {
        foreach (var method in Factories(name).Append(Preset(name)))
        {
            var names = Knobs(method).Select(k => k.Name).ToArray();
            names.Should().OnlyContain(n => n.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '_'), $"{method} uses torch-style names");
            names.Where(SharedOrder.Contains).Select(n => Array.IndexOf(SharedOrder, n)).Should().BeInAscendingOrder($"{method} follows the shared knob order ({string.Join(", ", names)})");
        }
    }

    [Fact]
    public void ObsoleteOverloadsAreHiddenAndSayWhatToUse()
    {
        var obsolete = typeof(LowRank).GetMethods(BindingFlags.Public | BindingFlags.Static).Where(m => m.IsDefined(typeof(ObsoleteAttribute))).ToArray();
        obsolete.Select(m => m.Name).Distinct().Should().BeEquivalentTo(["DctAdamW", "OnlineSubspaceDescent", "GaLorePlus"]);
        foreach (var m in obsolete)
        {
            m.GetCustomAttribute<EditorBrowsableAttribute>()!.State.Should().Be(EditorBrowsableState.Never, $"{m} is hidden");
            m.GetCustomAttribute<ObsoleteAttribute>()!.Message.Should().Contain("pass them by name", $"{m} says what to use");
        }
    }
}
