using FluentAssertions;
using LowRankOptim.Tests.Support;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Presets;

/// <summary>
/// The presets' and factories' <c>optim_bits</c> (bitsandbytes' name) sets every group's moment storage; an invalid value
/// names the knob; a rule without moments (SMMF) refuses a compressed storage, naming the rule.
/// </summary>
public sealed class OptimBitsTests
{
    public static TheoryData<string, Func<nn.Module, LowRankOptimizer>> EightBit() => new()
    {
        { "AdamW", m => LowRank.AdamW(m.parameters(), lr: 0.01, optim_bits: 8) },
        { "GaLore", m => LowRank.GaLore(LowRank.SplitParameters(m), lr: 0.01, rank: 3, optim_bits: 8) },
    };

    [Theory]
    [MemberData(nameof(EightBit))]
    public void EightBitsGiveEveryGroupBlockwise8BitMoments(string method, Func<nn.Module, LowRankOptimizer> create)
    {
        using var scope = NewDisposeScope();
        using var opt = create(TestProblems.Mlp(1));
        opt.Defaults.MomentStorage!.Format.Should().Be(MomentFormat.Blockwise8Bit, method);
        opt.ParamGroups.Should().NotBeEmpty();
        foreach (LowRankParamGroup g in opt.ParamGroups)
            g.Options.MomentStorage.Should().Be(new MomentStorage(MomentFormat.Blockwise8Bit), $"{method}: a group without options takes the defaults' storage");
    }

    [Theory]
    [InlineData(32, MomentFormat.Dense)]
    [InlineData(16, MomentFormat.BFloat16)]
    [InlineData(8, MomentFormat.Blockwise8Bit)]
    [InlineData(4, MomentFormat.Blockwise4Bit)]
    public void EachValueIsBitsandbytesFormat(int bits, MomentFormat format)
    {
        var options = LowRankPresets.GaLore(optim_bits: bits);
        options.MomentStorage.Should().Be(new MomentStorage(format), "nearest rounding and the default size threshold");
        options.MomentStorage!.OptimBits.Should().Be(bits);
    }

    public static TheoryData<string, Action> SevenBits() => new()
    {
        { "AdamW preset", () => LowRankPresets.AdamW(optim_bits: 7) },
        { "GaLore factory", () => LowRank.GaLore(TestProblems.Mlp(1).parameters(), optim_bits: 7) },
        { "Apollo factory", () => LowRank.Apollo(LowRank.SplitParameters(TestProblems.Mlp(1)), optim_bits: 7) },
        { "GaLore-Adafactor preset", () => LowRankPresets.GaLoreAdafactor(beta1: 0.9, optim_bits: 7) },
    };

    [Theory]
    [MemberData(nameof(SevenBits))]
    public void SevenBitsThrowNamingOptimBits(string what, Action create)
    {
        using var scope = NewDisposeScope();
        create.Should().Throw<ArgumentOutOfRangeException>(what)
            .Where(e => e.ParamName == "optim_bits" && e.Message.Contains("32") && e.Message.Contains('4'), "the message lists the values");
    }

    [Fact]
    public void AdafactorWithoutMomentumRefusesCompressedMomentsNamingOptimBits()
    {
        var create = () => LowRankPresets.GaLoreAdafactor(optim_bits: 8);
        create.Should().Throw<ArgumentException>().Where(e => e.ParamName == "optim_bits" && e.Message.Contains("AdafactorConfig"),
            "Hugging Face's default beta1 = null keeps no first moment: there is nothing to compress");
    }

    [Fact]
    public void SmmfRefusesAGroupWithEightBitMomentsNamingTheRule()
    {
        using var scope = NewDisposeScope();
        var model = TestProblems.Mlp(1);
        var groups = new[]
        {
            new LowRankParamGroup(model.parameters(), new LowRankOptions { MomentStorage = MomentStorage.FromOptimBits(8) }),
        };
        var create = () => LowRank.Smmf(groups, lr: 0.01);
        create.Should().Throw<ArgumentException>()
            .Where(e => e.ParamName == "optim_bits" && e.Message.Contains("SmmfConfig") && e.Message.Contains("Blockwise8Bit"),
                "SMMF's factored moments have nothing to store in 8 bits; the message names the rule and the storage");
    }
}
