using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Quantization;

/// <summary>
/// Every catalog method × every compressed moment storage: refused at construction where the method has no moment to
/// compress (SMMF), else: moments really stored compressed, planner = allocated, resume from a file equal to the
/// uninterrupted run bit for bit (stochastic rounding included), no native tensor growth, training that still learns,
/// and checkpoints that load only into the same storage. The model's first layer is 24×256, so projected moments
/// (r×256) are whole blocks; <see cref="MomentStorage.MinElements"/> is lowered to 256 so they are compressed.
/// </summary>
public sealed class MomentStorageConformanceTests
{
    private const int Input = 256, Hidden = 24;

    internal static readonly Dictionary<string, MomentStorage> Storages = new()
    {
        ["bf16"] = new(MomentFormat.BFloat16, MinElements: 256),
        ["8bit"] = new(MomentFormat.Blockwise8Bit, MinElements: 256),
        ["8bit-stochastic"] = new(MomentFormat.Blockwise8Bit, StateRounding.Stochastic, Seed: 5, MinElements: 256),
        ["4bit"] = new(MomentFormat.Blockwise4Bit, MinElements: 256),
        // bitsandbytes' former blocks (torchao's block_size): the 24×256 weight's full-space moments are 3 blocks, projected r×256 ones only at r = 8k.
        ["8bit-b2048"] = new(MomentFormat.Blockwise8Bit, MinElements: 256, BlockSize: 2048),
    };

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var method in MethodCatalog.All)
            foreach (var storage in Storages.Keys)
                data.Add(method.Name, storage);
        return data;
    }

    internal static bool HasMoments(CatalogMethod method)
    {
        using var scope = NewDisposeScope();
        using var opt = method.Create(TestProblems.Mlp(0, Input, Hidden));
        return opt.ParamGroups.Cast<LowRankParamGroup>().All(g => g.Options.Rule is not SmmfConfig);
    }

    /// <summary>The catalog method's optimizer over <paramref name="model"/>, every group's moments in <paramref name="storage"/>.</summary>
    internal static LowRankOptimizer Build(CatalogMethod method, nn.Module model, MomentStorage storage)
    {
        using var source = method.Create(model);
        var groups = source.ParamGroups.Cast<LowRankParamGroup>().Select(g =>
        {
            var options = new LowRankOptions();
            options.CopyFrom(g.Options);
            options.MomentStorage = storage;
            return new LowRankParamGroup(g.Parameters, options);
        }).ToList();
        return new LowRankOptimizer(groups, new LowRankOptions());
    }

    internal static Sequential Model(long seed) => TestProblems.Mlp(seed, Input, Hidden);

    internal static (Tensor X, Tensor Y) Data(long seed) => TestProblems.Data(seed, input: Input);

    internal static double Train(Sequential model, LowRankOptimizer opt, int steps, Tensor x, Tensor y)
    {
        var loss = 0.0;
        for (var i = 0; i < steps; i++)
        {
            loss = TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
        }
        return loss;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void StorageIsRefusedOrCompressesAndPlanEqualsAllocated(string method, string storage)
    {
        using var scope = NewDisposeScope();
        var row = MethodCatalog.Get(method);
        if (!HasMoments(row))
        {
            var act = () => Build(row, Model(1), Storages[storage]);
            act.Should().Throw<ArgumentException>().WithMessage("*moment storage*SmmfConfig keeps none*").Which.ParamName.Should().Be("optim_bits");
            return;
        }
        var (x, y) = Data(1);
        var model = Model(1);
        using var opt = Build(row, model, Storages[storage]);
        Train(model, opt, 8, x, y);
        // Every moment that fits the format is compressed, nothing else is (per-head and r×r moments of this model are ragged).
        var slots = opt.States.SelectMany(Slots).ToList();
        foreach (var t in slots)
            (t.Entry.Storage is not DenseStorage).Should().Be(t.Entry.Moment != MomentKind.None && Fits(Storages[storage], DTypes.Elements(t.Entry.Shape)),
                $"{method} / {storage}: entry '{t.Entry.Name}' {StateReader.Format(t.Entry.Shape)} is stored as {t.Entry.Storage}");
        var compressed = slots.Any(t => t.Entry.Storage is not DenseStorage);
        MemoryPlanner.Plan(opt).Parameters.Select(p => p.StateBytes).Should().Equal(opt.States.Select(s => s.StateBytes), "planned vs allocated bytes per parameter");

        var denseModel = Model(1);
        using var dense = Build(row, denseModel, MomentStorage.Dense);
        Train(denseModel, dense, 8, x, y);
        if (compressed) opt.StateBytes.Should().BeLessThan(dense.StateBytes);
        else opt.StateBytes.Should().Be(dense.StateBytes);
    }

    private static bool Fits(MomentStorage storage, long count) => storage.Format switch
    {
        MomentFormat.BFloat16 => true,
        MomentFormat.Blockwise8Bit or MomentFormat.Blockwise4Bit => count >= storage.MinElements && count % storage.EffectiveBlockSize == 0,
        _ => false,
    };

    [Fact]
    public void TheCatalogCompressesMomentsOfEveryKind()
    {
        using var scope = NewDisposeScope();
        var names = new HashSet<string>();
        foreach (var row in MethodCatalog.All.Where(HasMoments))
        {
            var model = Model(1);
            using var opt = Build(row, model, Storages["8bit"]);
            Train(model, opt, 8, Data(1).X, Data(1).Y);
            names.UnionWith(opt.States.SelectMany(Slots).Where(t => t.Entry.Storage is BlockwiseStorage).Select(t => t.Entry.Name));
        }
        names.Should().Contain(["exp_avg", "exp_avg_sq", "momentum_buffer"], "Adam's and Adafactor's moments, SGD's momentum");

        // GaLore+'s residual moments (k = 0.25·24·256 = 6 blocks) and Online Subspace Descent's basis moments (P of 256×4).
        var plusModel = Model(1);
        using (var plus = LowRank.GaLorePlus(plusModel, MethodCatalog.Heads, lr: 0.01, rank: 2, residual_density: 0.25, residual_warmup: 2))
        {
            using var opt = Build(new CatalogMethod("plus", _ => plus), plusModel, Storages["8bit"]);
            Train(plusModel, opt, 4, Data(1).X, Data(1).Y);
            opt.States.SelectMany(Slots).Where(t => t.Entry.Storage is BlockwiseStorage && t.HasValue).Select(t => t.Entry.Name)
                .Should().Contain(["residual_exp_avg", "residual_exp_avg_sq"]);
        }
        var wide = nn.Sequential(("fc1", nn.Linear(512, 256)));
        using (var osd = LowRank.OnlineSubspaceDescent(LowRank.SplitParameters(wide), lr: 0.01, rank: 4))
        {
            using var opt = Build(new CatalogMethod("osd", _ => osd), wide, Storages["8bit"]);
            var (x, y) = (randn(8, 512), randn(8, 256));
            for (var i = 0; i < 3; i++)
            {
                using (var loss = nn.functional.mse_loss(wide.call(x), y)) loss.backward();
                opt.step();
                opt.zero_grad();
            }
            var basisRule = opt.States.First(s => s.Subspace is not null).Subspace!.State.TensorSlots.Where(t => t.Entry.Storage is BlockwiseStorage).ToList();
            basisRule.Select(t => t.Entry.Name).Should().Equal(["exp_avg", "exp_avg_sq"], "the basis rule's Adam moments, nested in the subspace's state");
        }
    }

    private static IEnumerable<TensorSlot> Slots(LowRankParameterState s) =>
        (s.Subspace?.State.TensorSlots ?? []).Concat(s.Rule.State.TensorSlots);

    [Theory]
    [MemberData(nameof(Cases))]
    public void ResumeFromFileEqualsTheUninterruptedRun(string method, string storage)
    {
        using var scope = NewDisposeScope();
        var row = MethodCatalog.Get(method);
        if (!HasMoments(row)) return; // refused: StorageIsRefusedOrCompressesAndPlanEqualsAllocated
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-storage-resume-");
        try
        {
            var (x, y) = Data(5);
            const int k = 5, n = 6;
            var straight = Model(5);
            using var straightOpt = Build(row, straight, Storages[storage]);
            Train(straight, straightOpt, k + n, x, y);

            var first = Model(5);
            using (var firstOpt = Build(row, first, Storages[storage]))
            {
                Train(first, firstOpt, k, x, y);
                first.save(Path.Combine(dir.FullName, "model.bin"));
                firstOpt.save_state_dict(Path.Combine(dir.FullName, "optimizer.bin"));
            }
            var resumed = Model(99);
            resumed.load(Path.Combine(dir.FullName, "model.bin"));
            using var resumedOpt = Build(row, resumed, Storages[storage]);
            resumedOpt.load_state_dict(Path.Combine(dir.FullName, "optimizer.bin"));
            Train(resumed, resumedOpt, n, x, y);

            foreach (var (a, b) in straight.parameters().Zip(resumed.parameters()))
                TensorAssert.Identical(b, a, $"{method} / {storage}: parameters equal the uninterrupted run");
            foreach (var (a, b) in straightOpt.States.Zip(resumedOpt.States))
                a.ApproximatelyEquals(b).Should().BeTrue($"{method} / {storage}: parameter {a.Index}'s saved state equals the uninterrupted run's");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void CompressedMomentsStillTrain(string method, string storage)
    {
        using var scope = NewDisposeScope();
        var row = MethodCatalog.Get(method);
        if (!HasMoments(row)) return;
        var (x, y) = Data(2);
        var model = Model(2);
        using var opt = Build(row, model, Storages[storage]);
        var first = TestProblems.LossAndBackward(model, x, y);
        opt.zero_grad();
        var last = Train(model, opt, 25, x, y);
        var denseModel = Model(2);
        using var dense = Build(row, denseModel, MomentStorage.Dense);
        var denseLast = Train(denseModel, dense, 25, x, y);
        double.IsFinite(last).Should().BeTrue();
        // The compressed run makes at least half the progress of the dense run.
        (first - last).Should().BeGreaterThan(0.5 * (first - denseLast), $"{method} / {storage}: loss {first} → {last} (dense → {denseLast})");
    }

    [Fact]
    public void ACheckpointLoadsOnlyIntoTheSameStorage()
    {
        using var scope = NewDisposeScope();
        var row = MethodCatalog.Get("galore-std");
        var (x, y) = Data(3);
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-storage-mismatch-");
        try
        {
            var file = Path.Combine(dir.FullName, "dense.bin");
            var model = Model(3);
            using (var opt = Build(row, model, MomentStorage.Dense))
            {
                Train(model, opt, 2, x, y);
                opt.save_state_dict(file);
            }
            using var eightBit = Build(row, Model(3), Storages["8bit"]);
            Checkpoints.ShouldRefuse(eightBit, file, "*parameter group 0*stored as dense*stores them as Blockwise8Bit*not converted*");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void ASkippedStepLeavesQuantizedStateUnchanged()
    {
        using var scope = NewDisposeScope();
        var model = Model(4);
        var (x, y) = Data(4);
        using var opt = Build(MethodCatalog.Get("adamw"), model, Storages["8bit-stochastic"]);
        Train(model, opt, 3, x, y);
        var before = opt.States.Select(Serialized).ToArray();
        TestProblems.LossAndBackward(model, x, y);
        using (no_grad()) model.parameters().First().grad!.fill_(float.NaN);
        opt.step();
        opt.zero_grad();
        var skipped = opt.States.First();
        skipped.SkippedUpdates.Should().Be(1);
        // Everything but the step counter is as before (the first parameter's moments were decoded and dropped, not re-stored).
        Serialized(skipped).Length.Should().Be(before[0].Length);
        skipped.Rule.State.TensorSlots.Should().OnlyContain(t => t.Entry.Storage is DenseStorage || t.Compressed != null, "no workspace outlives the step");
    }

    private static byte[] Serialized(LowRankParameterState s)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream)) s.SaveStateDict(writer);
        return stream.ToArray();
    }

    [Theory]
    [InlineData(MomentFormat.Dense, StateRounding.Stochastic, 0L, 4096L, "rounding")]
    [InlineData(MomentFormat.Blockwise8Bit, StateRounding.Nearest, 3L, 4096L, "seed")]
    [InlineData(MomentFormat.Blockwise8Bit, StateRounding.Nearest, 0L, 0L, "min_8bit_size")]
    [InlineData((MomentFormat)9, StateRounding.Nearest, 0L, 4096L, "moment_storage")]
    public void InvalidStorageIsRefusedNamingTheOption(MomentFormat format, StateRounding rounding, long seed, long minElements, string option)
    {
        using var scope = NewDisposeScope();
        var options = LowRankPresets.AdamW();
        options.MomentStorage = new MomentStorage(format, rounding, seed, minElements);
        var act = () => new LowRankOptimizer([new LowRankParamGroup(Model(0).parameters(), options)], new LowRankOptions());
        act.Should().Throw<ArgumentException>().Which.ParamName.Should().Be(option);
    }
}

/// <summary>Every catalog method × compressed storage: no native tensor growth once the state exists (serial: counts are process-wide).</summary>
[Collection(SerialCollection.Name)]
public sealed class MomentStorageMemoryTests
{
    public static TheoryData<string, string> Cases() => MomentStorageConformanceTests.Cases();

    [Theory]
    [MemberData(nameof(Cases))]
    public void LiveTensorCountStaysFlat(string method, string storage)
    {
        using var outer = NewDisposeScope();
        var row = MethodCatalog.Get(method);
        if (!MomentStorageConformanceTests.HasMoments(row)) return;
        var model = MomentStorageConformanceTests.Model(8);
        var (x, y) = MomentStorageConformanceTests.Data(8);
        using var opt = MomentStorageConformanceTests.Build(row, model, MomentStorageConformanceTests.Storages[storage]);
        MomentStorageConformanceTests.Train(model, opt, 10, x, y);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var live = Tensor.TotalCount;
        MomentStorageConformanceTests.Train(model, opt, 30, x, y);
        Tensor.TotalCount.Should().Be(live, $"{method} / {storage}: no tensor per step survives it");
    }

}
