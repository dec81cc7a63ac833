using FluentAssertions;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Optimizer;

/// <summary>
/// Execution policy (the kernel choice) is never saved and never replaced by a load: after a file load or an
/// in-memory state-dict load, every group keeps the kernel it was built with.
/// </summary>
public sealed class ExecutionPolicyTests
{
    public static TheoryData<string> Configurations() => ["adam", "adafactor", "smmf", "dct"];

    private static LowRankOptions Options(string configuration, KernelPreference kernel) => new()
    {
        LearningRate = 0.01,
        WeightDecay = 0,
        DecayOrder = WeightDecayOrder.BeforeUpdate,
        Projection = configuration == "dct" ? new DctProjection(2, 3) { Kernel = kernel } : FullSpace.Instance,
        Rule = configuration switch
        {
            "adam" or "dct" => new AdamConfig(Kernel: kernel),
            "adafactor" => new AdafactorConfig(RelativeStep: false, Kernel: kernel),
            "smmf" => new SmmfConfig(Kernel: kernel),
            _ => throw new ArgumentException(configuration),
        },
    };

    private static KernelPreference KernelOf(LowRankOptions o) => o.Projection is DctProjection d
        ? d.Kernel
        : o.Rule switch
        {
            AdamConfig a => a.Kernel,
            AdafactorConfig a => a.Kernel,
            SmmfConfig s => s.Kernel,
            _ => throw new ArgumentException(o.Rule?.GetType().Name),
        };

    private static (LowRankOptimizer, Parameter) Build(string configuration, KernelPreference kernel)
    {
        var p = new Parameter(ones(8, 6));
        var opt = new LowRankOptimizer([new LowRankParamGroup([p])], Options(configuration, kernel));
        p.grad = full(8, 6, 0.5f);
        opt.step();
        return (opt, p);
    }

    [Theory]
    [MemberData(nameof(Configurations))]
    public void FileLoadKeepsTheKernelOfTheLoadingOptimizer(string configuration)
    {
        var (saving, _) = Build(configuration, KernelPreference.Auto);
        var (loading, _) = Build(configuration, KernelPreference.Reference);
        var path = Path.GetTempFileName();
        try
        {
            saving.save_state_dict(path);
            loading.load_state_dict(path);
            KernelOf(((LowRankParamGroup)loading.ParamGroups.First()).Options).Should().Be(KernelPreference.Reference);

            // And the other way round: a file of a Reference optimizer does not force Reference on an Auto one.
            loading.save_state_dict(path);
            saving.load_state_dict(path);
            KernelOf(((LowRankParamGroup)saving.ParamGroups.First()).Options).Should().Be(KernelPreference.Auto);
        }
        finally
        {
            File.Delete(path);
            saving.Dispose();
            loading.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(Configurations))]
    public void StateDictLoadKeepsTheKernelOfTheLoadingOptimizer(string configuration)
    {
        var (saving, _) = Build(configuration, KernelPreference.Auto);
        var (loading, _) = Build(configuration, KernelPreference.Reference);
        using (saving)
        using (loading)
        {
            loading.load_state_dict(saving.state_dict());
            KernelOf(((LowRankParamGroup)loading.ParamGroups.First()).Options).Should().Be(KernelPreference.Reference);
        }
    }
}
