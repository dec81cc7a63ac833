using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Conformance;

/// <summary>
/// Every catalog method with a kernel choice: execution policy is never saved and never replaced by a load.
/// After a file load or an in-memory state-dict load (each way: Auto into Reference, Reference into Auto), every
/// kernel choice of every group (its rule's, the DCT projection's) is the one the loading optimizer was built
/// with, and the optimizer trains on. The kernel choices are set through <see cref="KernelChoices.Rebuild"/>.
/// </summary>
public sealed class ExecutionPolicyTests
{
    private const string BasisRule = "basis rule";

    public static TheoryData<string> Methods() => MethodCatalog.Names(m => m.KernelChoiceSites.Any(s => s != BasisRule));

    public static TheoryData<string> MethodsWithABasisRule() => MethodCatalog.Names(m => m.KernelChoiceSites.Contains(BasisRule));

    [Theory]
    [MemberData(nameof(Methods))]
    public void FileLoadKeepsTheKernelsOfTheLoadingOptimizer(string method) => LoadsKeepTheKernels(method, c => c != BasisRule, file: true);

    [Theory]
    [MemberData(nameof(Methods))]
    public void StateDictLoadKeepsTheKernelsOfTheLoadingOptimizer(string method) => LoadsKeepTheKernels(method, c => c != BasisRule, file: false);

    /// <summary>The kernel of Online Subspace Descent's basis rule (P's optimizer) is execution policy too: a load keeps it.</summary>
    [Theory]
    [MemberData(nameof(MethodsWithABasisRule))]
    public void LoadsKeepTheBasisRuleKernelOfTheLoadingOptimizer(string method)
    {
        LoadsKeepTheKernels(method, c => c == BasisRule, file: true);
        LoadsKeepTheKernels(method, c => c == BasisRule, file: false);
    }

    private static void LoadsKeepTheKernels(string method, Func<string, bool> sites, bool file)
    {
        using var scope = NewDisposeScope();
        using var auto = Build(method, KernelPreference.Auto, out var autoModel);
        using var reference = Build(method, KernelPreference.Reference, out var referenceModel);
        var path = Path.GetTempFileName();
        try
        {
            void Load(LowRankOptimizer from, LowRankOptimizer into)
            {
                if (file)
                {
                    from.save_state_dict(path);
                    into.load_state_dict(path);
                }
                else into.load_state_dict(from.state_dict());
            }

            var how = file ? "file" : "state dict";
            Load(auto, reference);
            KernelsShouldBe(reference, sites, KernelPreference.Reference, $"{method}: the {how} of an Auto optimizer does not replace Reference");
            Load(reference, auto);
            KernelsShouldBe(auto, sites, KernelPreference.Auto, $"{method}: the {how} of a Reference optimizer does not force Reference");
            Step(autoModel, auto);
            Step(referenceModel, reference);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static LowRankOptimizer Build(string method, KernelPreference kernel, out Sequential model)
    {
        model = TestProblems.Mlp(7);
        var opt = KernelChoices.Rebuild(MethodCatalog.Get(method).Create(model), kernel);
        Step(model, opt);
        return opt;
    }

    private static void Step(Sequential model, LowRankOptimizer opt)
    {
        var (x, y) = TestProblems.Data(7);
        TestProblems.LossAndBackward(model, x, y);
        opt.step();
        opt.zero_grad();
    }

    private static void KernelsShouldBe(LowRankOptimizer opt, Func<string, bool> sites, KernelPreference kernel, string because)
    {
        var choices = opt.ParamGroups.Cast<LowRankParamGroup>()
            .SelectMany((g, i) => KernelChoices.Of(g.Options).Where(c => sites(c.Where)).Select(c => $"group {i} {c.Where}: {c.Kernel}")).ToList();
        choices.Should().NotBeEmpty().And.OnlyContain(c => c.EndsWith($": {kernel}"), because);
    }
}
