using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.optim;

namespace LowRankOptim.Tests.Conformance;

/// <summary>
/// Every catalog method: train k steps, save, build a fresh model and optimizer, load, train n more:
/// parameters and optimizer state equal the uninterrupted run bit for bit (CPU). Refreshes fall on both
/// sides of the save.
/// </summary>
public sealed class ResumeTests
{
    public static TheoryData<string> Methods() => MethodCatalog.Names();

    private static void Train(Sequential model, LowRankOptimizer opt, lr_scheduler.LRScheduler schedule, int steps, Tensor x, Tensor y)
    {
        for (var i = 0; i < steps; i++)
        {
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
            schedule.step();
        }
    }

    private static lr_scheduler.LRScheduler Schedule(LowRankOptimizer opt) => lr_scheduler.StepLR(opt, 3, 0.7);

    private static long?[] Progress(LowRankOptimizer opt) => opt.States.Select(MethodCatalog.SubspaceProgress).ToArray();

    [Theory]
    [MemberData(nameof(Methods))]
    public void ResumeFromFileEqualsTheUninterruptedRun(string method)
    {
        using var scope = NewDisposeScope();
        var create = MethodCatalog.Get(method).Create;
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-resume-");
        try
        {
            var (x, y) = TestProblems.Data(5);
            const int k = 5, n = 6;

            var straight = TestProblems.Mlp(5);
            using var straightOpt = create(straight);
            Train(straight, straightOpt, Schedule(straightOpt), k + n, x, y);

            var first = TestProblems.Mlp(5);
            long?[] saved;
            using (var firstOpt = create(first))
            {
                Train(first, firstOpt, Schedule(firstOpt), k, x, y);
                first.save(Path.Combine(dir.FullName, "model.bin"));
                firstOpt.save_state_dict(Path.Combine(dir.FullName, "optimizer.bin"));
                saved = Progress(firstOpt);
            }

            var resumed = TestProblems.Mlp(999); // different init: everything must come from the files
            resumed.load(Path.Combine(dir.FullName, "model.bin"));
            using var resumedOpt = create(resumed);
            // TorchSharp's schedulers have no state_dict: re-create, advance k steps, then load (torchsharp.md §1.2).
            var schedule = Schedule(resumedOpt);
            for (var i = 0; i < k; i++) schedule.step();
            resumedOpt.load_state_dict(Path.Combine(dir.FullName, "optimizer.bin"));
            resumedOpt.States.Should().OnlyContain(s => s.Step == k);
            Progress(resumedOpt).Should().Equal(saved, "the refresh counts are state");
            Train(resumed, resumedOpt, schedule, n, x, y);

            // Every subspace refreshed (or, for Online Subspace Descent, stepped its basis) before the save and after the load.
            var after = Progress(resumedOpt);
            for (var i = 0; i < saved.Length; i++)
                if (saved[i] is long before)
                {
                    before.Should().BePositive($"{method}: parameter {i} refreshed before the save");
                    after[i].Should().BeGreaterThan(before, $"{method}: parameter {i} refreshed after the load");
                }

            foreach (var ((name, p), q) in straight.named_parameters().Zip(resumed.parameters()))
                TensorAssert.Identical(q, p, $"{method}: {name}");
            Checkpoints.Bytes(resumedOpt).Should().Equal(Checkpoints.Bytes(straightOpt), "the optimizer state equals the uninterrupted run's");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void InMemoryStateDictCopiesAndResumes(string method)
    {
        using var scope = NewDisposeScope();
        var create = MethodCatalog.Get(method).Create;
        var (x, y) = TestProblems.Data(6);
        var a = TestProblems.Mlp(6);
        using var aOpt = create(a);
        var aSchedule = Schedule(aOpt);
        Train(a, aOpt, aSchedule, 4, x, y);

        var b = TestProblems.Mlp(6);
        using (var _ = no_grad())
            foreach (var (p, q) in a.parameters().Zip(b.parameters())) q.copy_(p);
        using var bOpt = create(b);
        var bSchedule = Schedule(bOpt);
        for (var i = 0; i < 4; i++) bSchedule.step();
        // Loaded inside a caller's dispose scope: the loaded tensors must outlive it.
        using (var inner = NewDisposeScope()) bOpt.load_state_dict(aOpt.state_dict());
        Checkpoints.Bytes(bOpt).Should().Equal(Checkpoints.Bytes(aOpt));

        Train(a, aOpt, aSchedule, 3, x, y);
        Train(b, bOpt, bSchedule, 3, x, y);
        foreach (var (p, q) in a.parameters().Zip(b.parameters()))
            TensorAssert.Identical(q, p, method);
        // Copies, not shared tensors: the two states evolved separately yet stay equal.
        aOpt.States[0].Rule.Should().NotBeSameAs(bOpt.States[0].Rule);
        Checkpoints.Bytes(bOpt).Should().Equal(Checkpoints.Bytes(aOpt));
    }
}
