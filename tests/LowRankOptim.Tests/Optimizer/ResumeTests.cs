using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.optim;

namespace LowRankOptim.Tests.Optimizer;

/// <summary>
/// Train k steps, save, build a fresh model and optimizer, load, train n more: parameters and optimizer
/// state equal the uninterrupted run bit for bit (CPU). Refreshes fall on both sides of the save.
/// </summary>
public sealed class ResumeTests
{
    public static TheoryData<string> Configurations() =>
    [
        "galore-std", "galore-full", "galore-adafactor-momentum", "adamw-full-space", "sgd-momentum",
        "galore-randomized", "galore-randomized-full", "dct-adamw", "dct-adamw-fast", "osd-adamw", "osd-adafactor-basis",
        "smmf", "smmf-reference-beta-none-no-vector-reshape", "smmf-l2-with-galore-linear-weights",
        "galore-plus-heads-residual-in-warmup", "galore-plus-per-head-residual-reestimated",
    ];

    /// <summary>The MLP's fc1 (20×12) as a Q-like weight of 4 heads, fc2 (6×20) as an O-like weight of 4 heads.</summary>
    private static AttentionHeads? MlpHeads(string name) => name switch
    {
        "fc1" => AttentionHeads.QueryKeyValue(4),
        "fc2" => AttentionHeads.Output(4),
        _ => null,
    };

    internal static LowRankOptimizer Create(string configuration, Sequential model) => configuration switch
    {
        "galore-std" => LowRank.GaLore(LowRank.SplitParameters(model), lr: 0.01, rank: 3, update_proj_gap: 3, scale: 0.5, weight_decay: 0.1),
        "galore-full" => LowRank.GaLore(LowRank.SplitParameters(model), lr: 0.01, rank: 4, update_proj_gap: 4, proj_type: ProjectionType.Full),
        "galore-adafactor-momentum" => LowRank.GaLoreAdafactor(LowRank.SplitParameters(model), beta1: 0.9, rank: 3, update_proj_gap: 3, weight_decay: 0.05),
        "adamw-full-space" => LowRank.AdamW(model.parameters(), lr: 0.01, weight_decay: 0.01),
        // Refreshes at steps 1, 4, 7, 10: the sketch of a refresh after the load must be the same draw.
        "galore-randomized" => LowRank.GaLore(LowRank.SplitParameters(model), lr: 0.01, rank: 3, update_proj_gap: 3, scale: 0.5,
            weight_decay: 0.1, projector: GaLoreProjector.RandomizedSvd, power_iterations: 1, seed: 12),
        "galore-randomized-full" => LowRank.GaLore(LowRank.SplitParameters(model), lr: 0.01, rank: 4, update_proj_gap: 4,
            proj_type: ProjectionType.Full, projector: GaLoreProjector.RandomizedSvd, oversampling: 2),
        // Re-selections at steps 1, 2, 4, 6, …: the indices are the whole projector state.
        "dct-adamw" => LowRank.DctAdamW(model.parameters(), lr: 0.01, weight_decay: 0.05, rank: 3, update_proj_gap: 2),
        "dct-adamw-fast" => LowRank.DctAdamW(model.parameters(), lr: 0.01, rank: 4, update_proj_gap: 3, sim_type: DctTransformMethod.FastTransform),
        // P takes a step of its own optimizer every step: its moments and step count must resume exactly.
        "osd-adamw" => LowRank.OnlineSubspaceDescent(LowRank.SplitParameters(model), lr: 0.01, rank: 3, update_proj_gap: 5, weight_decay: 0.1),
        "osd-adafactor-basis" => LowRank.OnlineSubspaceDescent(LowRank.SplitParameters(model), lr: 0.01, rank: 3, update_proj_gap: 5,
            p_optimizer: new AdafactorConfig(Beta1: 0.9, RelativeStep: false), p_weight_decay: 0),
        "sgd-momentum" => new LowRankOptimizer([new LowRankParamGroup(model.parameters())],
            Equivalence.AdamWEquivalenceTests.Options(FullSpace.Instance, new SgdConfig(0.9), 0.05)),
        "smmf" => LowRank.Smmf(model.parameters(), lr: 0.01, weight_decay: 0.01),
        "smmf-reference-beta-none-no-vector-reshape" => LowRank.Smmf(model.parameters(), lr: 0.01, beta: null, vector_reshape: false,
            decay_rate: -0.8, kernel: KernelPreference.Reference),
        // One optimizer, one state file: GaLore-Adam on the linear weights, SMMF (L2 decay) on the biases.
        "smmf-l2-with-galore-linear-weights" => LowRank.Smmf(
            [new LowRankParamGroup(LowRank.SplitParameters(model)[0].Parameters, new LowRankOptions
                {
                    Projection = new SvdProjection(3, 3, 0.5),
                    Rule = new AdamConfig(EpsMode: AdamEpsilonMode.BeforeBiasCorrection),
                    DecayOrder = WeightDecayOrder.AfterUpdate,
                }),
             new LowRankParamGroup(LowRank.SplitParameters(model)[1].Parameters)],
            lr: 0.01, weight_decay: 0.05, weight_decay_mode: SmmfWeightDecayMode.Adam),
        // The save at step 5 falls inside the residual warm-up (7 steps): the accumulator and its progress resume.
        "galore-plus-heads-residual-in-warmup" => LowRank.GaLorePlus(model, MlpHeads, lr: 0.01, weight_decay: 0.05, rank: 3, update_proj_gap: 3,
            power_iterations: 1, seed: 4, residual_density: 0.2, residual_warmup: 7),
        // After the warm-up (2 steps), indices re-chosen at the refreshes of steps 4, 7 and 10, before and after the save.
        "galore-plus-per-head-residual-reestimated" => LowRank.GaLorePlus(model, MlpHeads, lr: 0.01, rank: 2, update_proj_gap: 3, seed: 9,
            cross_head: CrossHeadReading.PerHeadShortSide, residual_density: 0.3, residual_warmup: 2, residual_reestimate: true, residual_scale: 0.5),
        _ => throw new ArgumentException(configuration),
    };

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

    [Theory]
    [MemberData(nameof(Configurations))]
    public void ResumeFromFileEqualsTheUninterruptedRun(string configuration)
    {
        using var scope = NewDisposeScope();
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-resume-");
        try
        {
            var (x, y) = TestProblems.Data(5);
            const int k = 5, n = 6;

            var straight = TestProblems.Mlp(5);
            using var straightOpt = Create(configuration, straight);
            Train(straight, straightOpt, Schedule(straightOpt), k + n, x, y);

            var first = TestProblems.Mlp(5);
            using (var firstOpt = Create(configuration, first))
            {
                Train(first, firstOpt, Schedule(firstOpt), k, x, y);
                first.save(Path.Combine(dir.FullName, "model.bin"));
                firstOpt.save_state_dict(Path.Combine(dir.FullName, "optimizer.bin"));
            }

            var resumed = TestProblems.Mlp(999); // different init: everything must come from the files
            resumed.load(Path.Combine(dir.FullName, "model.bin"));
            using var resumedOpt = Create(configuration, resumed);
            // TorchSharp's schedulers have no state_dict: re-create, advance k steps, then load (torchsharp.md §1.2).
            var schedule = Schedule(resumedOpt);
            for (var i = 0; i < k; i++) schedule.step();
            resumedOpt.load_state_dict(Path.Combine(dir.FullName, "optimizer.bin"));
            resumedOpt.States.Should().OnlyContain(s => s.Step == k);
            Train(resumed, resumedOpt, schedule, n, x, y);

            foreach (var ((name, p), q) in straight.named_parameters().Zip(resumed.parameters()))
                TensorAssert.Identical(q, p, $"{configuration}: {name}");
            Serialized(resumedOpt).Should().Equal(Serialized(straightOpt), "the optimizer state equals the uninterrupted run's");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Theory]
    [MemberData(nameof(Configurations))]
    public void InMemoryStateDictCopiesAndResumes(string configuration)
    {
        using var scope = NewDisposeScope();
        var (x, y) = TestProblems.Data(6);
        var a = TestProblems.Mlp(6);
        using var aOpt = Create(configuration, a);
        var aSchedule = Schedule(aOpt);
        Train(a, aOpt, aSchedule, 4, x, y);

        var b = TestProblems.Mlp(6);
        using (var _ = no_grad())
            foreach (var (p, q) in a.parameters().Zip(b.parameters())) q.copy_(p);
        using var bOpt = Create(configuration, b);
        var bSchedule = Schedule(bOpt);
        for (var i = 0; i < 4; i++) bSchedule.step();
        // Loaded inside a caller's dispose scope: the loaded tensors must outlive it.
        using (var inner = NewDisposeScope()) bOpt.load_state_dict(aOpt.state_dict());
        Serialized(bOpt).Should().Equal(Serialized(aOpt));

        Train(a, aOpt, aSchedule, 3, x, y);
        Train(b, bOpt, bSchedule, 3, x, y);
        foreach (var (p, q) in a.parameters().Zip(b.parameters()))
            TensorAssert.Identical(q, p, configuration);
        // Copies, not shared tensors: the two states evolved separately yet stay equal.
        aOpt.States[0].Rule.Should().NotBeSameAs(bOpt.States[0].Rule);
    }

    internal static byte[] Serialized(LowRankOptimizer opt)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream)) opt.save_state_dict(writer);
        return stream.ToArray();
    }
}
