using System.Text.Json;
using FluentAssertions;
using LowRankOptim.Bench.Commands;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Training;
using LowRankOptim.Tests.Support;
using Xunit;

namespace LowRankOptim.Tests.Bench;

/// <summary>The bench's moment storage: `memory --optim-bits` plans each optimizer per storage, `pretrain --optim-bits` trains with it and records it.</summary>
[Collection(SerialCollection.Name)] // its commands set libtorch's process-wide thread count, which changes other tests' rounding
public sealed class OptimBitsBenchTests
{
    [Fact]
    public void MemoryPlansEachOptimizerPerStorageAndSmmfDenseOnly()
    {
        var (code, output, error) = Cli.Run(MemoryCommand.Create(), ["memory", "--model", "tiny", "--optimizers", "adamw,galore,smmf", "--optim-bits", "32,16,8,4", "--json"]);
        code.Should().Be(0, error);
        error.Should().Contain("note: smmf has no moments to store in 16/8/4 bits");
        using var doc = JsonDocument.Parse(output);
        var rows = doc.RootElement.GetProperty("rows").EnumerateArray()
            .Select(r => (Optimizer: r.GetProperty("optimizer").GetString()!, Bits: r.GetProperty("optim_bits").GetInt32(), State: r.GetProperty("state_bytes").GetInt64()))
            .ToList();
        rows.Where(r => r.Optimizer == "smmf").Select(r => r.Bits).Should().Equal(32);
        foreach (var optimizer in new[] { "adamw", "galore" })
        {
            var states = rows.Where(r => r.Optimizer == optimizer).OrderByDescending(r => r.Bits).ToList();
            states.Select(r => r.Bits).Should().Equal(32, 16, 8, 4);
            states.Select(r => r.State).Should().BeInDescendingOrder(optimizer).And.OnlyHaveUniqueItems("each storage is smaller than the one before");
        }
    }

    [Fact]
    public void MemoryTableAndCsvHaveTheStorageColumn()
    {
        var csv = Path.GetTempFileName();
        try
        {
            var (code, output, error) = Cli.Run(MemoryCommand.Create(), ["memory", "--model", "tiny", "--optimizers", "galore", "--optim-bits", "8", "--csv", csv]);
            code.Should().Be(0, error);
            output.Should().Contain("| optim bits |").And.Contain("| galore | 8 |");
            File.ReadAllLines(csv)[0].Should().StartWith("model,optimizer,optim_bits,");
        }
        finally { File.Delete(csv); }
    }

    [Fact]
    public void MemoryVerifyFindsThePredictionExactWithEightBitMoments()
    {
        var (code, _, error) = Cli.Run(MemoryCommand.Create(), ["memory", "--model", "tiny", "--optimizers", "adamw,galore,dct", "--optim-bits", "8", "--verify", "--json"]);
        code.Should().Be(0, error);
        error.Should().Contain("adamw 8-bit").And.Contain("galore 8-bit rank 32").And.Contain("equal").And.NotContain("MISMATCH");
    }

    [Fact]
    public void EightBitAdamWOf7BPlansAtLeastTheIssuesReductionFromFloat32AdamW()
    {
        // Issue 14's target (b): block-wise 8-bit moments (1 byte + a float32 scale per 256) against float32 ones.
        var target = MemoryCommand.FromConfig(LlamaConfig.Named["7b"]);
        var dense = MemoryCommand.Plan(target, OptimizerKind.AdamW, 1024, TorchSharp.torch.ScalarType.Float32).StateBytes;
        var eightBit = MemoryCommand.Plan(target, OptimizerKind.AdamW, 1024, TorchSharp.torch.ScalarType.Float32, optimBits: 8).StateBytes;
        (1 - eightBit / (double)dense).Should().BeGreaterThanOrEqualTo(0.74);
    }

    [Theory]
    [InlineData("7")]
    [InlineData("eight")]
    public void MemoryRefusesAnotherStorage(string value)
    {
        var (code, _, error) = Cli.Run(MemoryCommand.Create(), ["memory", "--model", "tiny", "--optim-bits", value]);
        code.Should().Be(2);
        error.Should().Contain($"--optim-bits '{value}' must be 32 (dense), 16 (bfloat16), 8 or 4").And.Contain("--help");
    }

    private static readonly LlamaConfig Small = new("test", 256, 32, 48, 4, 4, 1, 32);

    private static TrainSettings Settings(int optimBits) =>
        new(Small, 2, Batch: 4, Sequence: 16, WarmupSteps: 1, MinLrRatio: 0.1, ClipNorm: 1.0, Seed: 5,
            EvalEvery: 1, EvalBatches: 1, CheckpointEvery: 0, LowRank: new LowRankSettings(4, 3, 0.25, optimBits));

    [Theory]
    [InlineData(OptimizerKind.AdamW)]
    [InlineData(OptimizerKind.GaLore)]
    public void APretrainingRunWithEightBitMomentsTrainsRecordsItAndHoldsLessState(OptimizerKind kind)
    {
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-optimbits-");
        try
        {
            var data = TinyCorpus.Create();
            var dense = Trainer.Run("dense", kind, 3e-3, Settings(32), data, Path.Combine(dir.FullName, "dense"), resume: false);
            var eightBit = Trainer.Run("8bit", kind, 3e-3, Settings(8), data, Path.Combine(dir.FullName, "8bit"), resume: false);
            (dense.OptimBits, eightBit.OptimBits).Should().Be((32, 8));
            eightBit.OptimizerStateBytes.Should().BeLessThan(dense.OptimizerStateBytes, "the embedding's moments (256 × 32 entries) are stored in 8 bits");
            double.IsFinite(eightBit.ValidationLoss).Should().BeTrue();
            var csv = Path.Combine(dir.FullName, "summary.csv");
            Reports.WriteCsv(csv, [dense, eightBit]);
            File.ReadAllLines(csv).Select(l => l.Split(',')[2]).Should().Equal("optim_bits", "32", "8");
            Reports.Json([eightBit], new { }).Should().Contain("\"optim_bits\": 8");
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void PretrainRefusesSmmfNamedWithEightBits()
    {
        var (code, _, error) = Cli.Run(PretrainCommand.Create(), ["pretrain", "--optimizers", "galore,smmf", "--optim-bits", "8"]);
        code.Should().Be(2);
        error.Should().Contain("--optim-bits 8: smmf cannot store its moments in 8 bits").And.Contain("--help");
    }

    [Fact]
    public void PretrainSkipsSmmfFromTheDefaultListWithANote()
    {
        var kinds = PretrainCommand.WithOptimBits([.. OptimizerCatalog.All], 8, named: false);
        kinds.Should().NotContain(OptimizerKind.Smmf).And.Contain(OptimizerKind.AdamW).And.HaveCount(OptimizerCatalog.All.Count - 1);
        PretrainCommand.WithOptimBits([.. OptimizerCatalog.All], 32, named: true).Should().Equal(OptimizerCatalog.All);
    }

    [Fact]
    public void PretrainRefusesAnotherStorage()
    {
        var (code, _, error) = Cli.Run(PretrainCommand.Create(), ["pretrain", "--optim-bits", "7"]);
        code.Should().Be(2);
        error.Should().Contain("--optim-bits 7 must be 32 (dense), 16 (bfloat16), 8 or 4");
    }

    [Fact]
    public void PretrainRefusesStochasticRoundingOfDenseMoments()
    {
        var (code, _, error) = Cli.Run(PretrainCommand.Create(), ["pretrain", "--stochastic-rounding"]);
        code.Should().Be(2);
        error.Should().Contain("--stochastic-rounding needs --optim-bits 16, 8 or 4");
    }

    [Fact]
    public void StochasticRoundingReachesEveryGroupsStorage()
    {
        var (projected, full) = OptimizerCatalog.GroupOptions(OptimizerKind.GaLore, 0.01, new LowRankSettings(4, 3, 0.25, 8, StochasticRounding: true));
        projected.MomentStorage.Should().Be(MomentStorage.FromOptimBits(8, LowRankOptim.Kernels.StateRounding.Stochastic));
        full.MomentStorage.Should().Be(projected.MomentStorage);
        using var model = TorchSharp.torch.nn.Linear(4, 4);
        using var adamw = (LowRankOptimizer)OptimizerCatalog.Create(OptimizerKind.AdamW, model, 0.01, new LowRankSettings(4, 3, 0.25, 8, StochasticRounding: true));
        adamw.ParamGroups.Cast<LowRankParamGroup>().Should().OnlyContain(g => g.Options.MomentStorage == projected.MomentStorage, "the AdamW baseline too");
    }

    [Fact]
    public void MemoryVerifyFindsThePredictionExactIn2048EntryBlocks()
    {
        var (code, output, error) = Cli.Run(MemoryCommand.Create(), ["memory", "--model", "tiny", "--optimizers", "adamw,galore,dct", "--optim-bits", "32,8,4", "--block-size", "2048", "--verify", "--json"]);
        code.Should().Be(0, error);
        error.Should().Contain("adamw 8-bit (blocks of 2048)").And.Contain("dct 4-bit (blocks of 2048) rank 32").And.Contain("equal").And.NotContain("MISMATCH");
        using var doc = JsonDocument.Parse(output);
        doc.RootElement.GetProperty("rows").EnumerateArray().Select(r => (r.GetProperty("optim_bits").GetInt32(), r.GetProperty("block_size").GetInt32())).Distinct()
            .Should().BeEquivalentTo([(32, 0), (8, 2048), (4, 2048)], "dense moments have no blocks");
    }

    [Fact]
    public void TheBlockSizeChangesThePlanAsTheAllocation()
    {
        // LLaMA-7B, DCT-AdamW rank 1024, bf16 parameters, 8-bit moments: 2048-entry blocks against 256-entry ones against bf16 AdamW.
        var target = MemoryCommand.FromConfig(LlamaConfig.Named["7b"]);
        var adamw = MemoryCommand.Plan(target, OptimizerKind.AdamW, 1024, TorchSharp.torch.ScalarType.BFloat16).StateBytes;
        var at256 = MemoryCommand.Plan(target, OptimizerKind.Dct, 1024, TorchSharp.torch.ScalarType.BFloat16, optimBits: 8).StateBytes;
        var at2048 = MemoryCommand.Plan(target, OptimizerKind.Dct, 1024, TorchSharp.torch.ScalarType.BFloat16, optimBits: 8, blockSize: 2048).StateBytes;
        (at256, at2048).Should().Be((3_823_452_288L, 3_772_007_440L), "docs/benchmarks.md's figures");
        (1 - at2048 / (double)adamw).Should().BeGreaterThanOrEqualTo(0.86);
        (1 - at256 / (double)adamw).Should().BeLessThan(0.86);
    }

    [Theory]
    [InlineData(new[] { "--optim-bits", "8", "--block-size", "100" }, "block_size = 100 must be 0 (the format's default: 256 for 8-bit, 128 for 4-bit) or a positive multiple of 32 up to 4096")]
    [InlineData(new[] { "--optim-bits", "8", "--block-size", "8192" }, "block_size = 8192 must be")]
    [InlineData(new[] { "--optim-bits", "32", "--block-size", "2048" }, "--block-size 2048 needs --optim-bits 8 or 4")]
    public void PretrainAndMemoryRefuseABadBlockSize(string[] arguments, string message)
    {
        var (code, _, error) = Cli.Run(PretrainCommand.Create(), ["pretrain", .. arguments]);
        code.Should().Be(2);
        error.Should().Contain(message);
        (code, _, error) = Cli.Run(MemoryCommand.Create(), ["memory", "--model", "tiny", .. arguments]);
        code.Should().Be(2);
        error.Should().Contain(message);
    }

    [Fact]
    public void TheBlockSizeReachesEveryGroupsStorage()
    {
        var settings = new LowRankSettings(4, 3, 0.25, 8, StochasticRounding: true, BlockSize: 2048);
        foreach (var kind in OptimizerCatalog.All.Where(k => OptimizerCatalog.SupportsOptimBits(k, 8)))
        {
            var (projected, full) = OptimizerCatalog.GroupOptions(kind, 0.01, settings);
            projected.MomentStorage.Should().Be(MomentStorage.FromOptimBits(8, LowRankOptim.Kernels.StateRounding.Stochastic, blockSize: 2048), kind.CliName());
            full.MomentStorage.Should().Be(projected.MomentStorage);
        }
    }
}
