using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Compatibility;
using LowRankOptim.Tests.Kernels;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Quantization;

/// <summary>
/// <see cref="MomentStorage.BlockSize"/> (torchao's <c>block_size</c>): validation naming the option, which moments are
/// stored block-wise at a block size, equality of 0 and the format's default, the factories' knob, the checkpoint's
/// block size (saved, refused when it differs, old files as the default) and a bit-exact resume in 2048-entry blocks.
/// The catalog-wide checks (planner = allocated, resume, training, no tensor growth) run 2048-entry 8-bit blocks as the
/// storage "8bit-b2048" of <see cref="MomentStorageConformanceTests"/>.
/// </summary>
public sealed class BlockSizeTests
{
    [Theory]
    [InlineData(MomentFormat.Blockwise8Bit, -32)]
    [InlineData(MomentFormat.Blockwise8Bit, 16)]
    [InlineData(MomentFormat.Blockwise8Bit, 100)]
    [InlineData(MomentFormat.Blockwise8Bit, 4128)]
    [InlineData(MomentFormat.Blockwise8Bit, 8192)]
    [InlineData(MomentFormat.Blockwise4Bit, 48)]
    [InlineData(MomentFormat.Dense, 256)]
    [InlineData(MomentFormat.BFloat16, 2048)]
    public void AnInvalidBlockSizeIsRefusedNamingBlockSizeAndTheValue(MomentFormat format, int blockSize)
    {
        var storage = new MomentStorage(format, BlockSize: blockSize);
        var act = () => storage.Validate("parameter group 0");
        var e = act.Should().Throw<ArgumentException>().Which;
        e.ParamName.Should().Be("block_size");
        e.Message.Should().Contain($"block_size = {blockSize}").And.Contain("parameter group 0");
        if (format is MomentFormat.Dense or MomentFormat.BFloat16) e.Message.Should().Contain("needs a block-wise moment format").And.Contain("ignored");
        else e.Message.Should().Contain("a positive multiple of 32 up to 4096");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(32)]
    [InlineData(96)]
    [InlineData(2048)]
    [InlineData(4096)]
    public void ValidBlockSizesAreAccepted(int blockSize)
    {
        new MomentStorage(MomentFormat.Blockwise8Bit, BlockSize: blockSize).Validate("g");
        new MomentStorage(MomentFormat.Blockwise4Bit, BlockSize: blockSize).Validate("g");
    }

    [Fact]
    public void ThePresetsAndFactoriesTakeBlockSizeAndRefuseABadOneNamingIt()
    {
        using var scope = NewDisposeScope();
        LowRankPresets.AdamW(optim_bits: 8, block_size: 2048).MomentStorage.Should().Be(new MomentStorage(MomentFormat.Blockwise8Bit, BlockSize: 2048));
        LowRankPresets.DctAdamW(rank: 4, optim_bits: 4, block_size: 2048).MomentStorage!.EffectiveBlockSize.Should().Be(2048);
        LowRankPresets.GaLoreAdafactor(beta1: 0.9, optim_bits: 8, block_size: 512).MomentStorage!.BlockSize.Should().Be(512);
        LowRankPresets.Apollo(optim_bits: 8).MomentStorage!.EffectiveBlockSize.Should().Be(256, "0: the format's default");
        LowRankPresets.GaLore(optim_bits: 4).MomentStorage!.EffectiveBlockSize.Should().Be(128);

        var bad = () => LowRankPresets.GaLore(optim_bits: 8, block_size: 1000);
        bad.Should().Throw<ArgumentException>().WithMessage("*block_size = 1000*multiple of 32*").Which.ParamName.Should().Be("block_size");
        var ignored = () => LowRank.AdamW(TestProblems.Mlp(0).parameters(), optim_bits: 32, block_size: 2048);
        ignored.Should().Throw<ArgumentException>().WithMessage("*block_size = 2048 needs a block-wise moment format*").Which.ParamName.Should().Be("block_size");
        var ignored16 = () => LowRankPresets.OnlineSubspaceDescent(optim_bits: 16, block_size: 256);
        ignored16.Should().Throw<ArgumentException>().Which.ParamName.Should().Be("block_size");
    }

    [Fact]
    public void ZeroAndTheFormatsDefaultAreOneStorage()
    {
        var zero = new MomentStorage(MomentFormat.Blockwise8Bit);
        var named = new MomentStorage(MomentFormat.Blockwise8Bit, BlockSize: 256);
        named.Should().Be(zero);
        named.GetHashCode().Should().Be(zero.GetHashCode());
        new MomentStorage(MomentFormat.Blockwise4Bit, BlockSize: 128).Should().Be(new MomentStorage(MomentFormat.Blockwise4Bit));
        new MomentStorage(MomentFormat.Blockwise8Bit, BlockSize: 2048).Should().NotBe(zero);
        new MomentStorage(MomentFormat.Blockwise4Bit, BlockSize: 256).Should().NotBe(new MomentStorage(MomentFormat.Blockwise4Bit));
        zero.ToString().Should().Be("Blockwise8Bit");
        new MomentStorage(MomentFormat.Blockwise8Bit, BlockSize: 2048).ToString().Should().Be("Blockwise8Bit (blocks of 2048)");
        MomentStorage.FromOptimBits(8, blockSize: 2048).BlockSize.Should().Be(2048);
        MomentStorage.Dense.EffectiveBlockSize.Should().Be(0);
    }

    /// <summary>A moment is stored block-wise when it has at least MinElements entries and a whole number of blocks of the block size.</summary>
    [Theory]
    [InlineData(MomentFormat.Blockwise8Bit, 0, 4096L, 256)]       // default: 16 blocks of 256
    [InlineData(MomentFormat.Blockwise8Bit, 2048, 4096L, 2048)]   // 2 blocks of 2048
    [InlineData(MomentFormat.Blockwise8Bit, 4096, 4096L, 4096)]   // one block
    [InlineData(MomentFormat.Blockwise8Bit, 4096, 6144L, 0)]      // 1.5 blocks: dense
    [InlineData(MomentFormat.Blockwise8Bit, 2048, 5120L, 0)]      // 2.5 blocks: dense (a whole number of 256-entry blocks)
    [InlineData(MomentFormat.Blockwise8Bit, 0, 5120L, 256)]
    [InlineData(MomentFormat.Blockwise8Bit, 2048, 2048L, 0)]      // one whole block, but under MinElements (4096)
    [InlineData(MomentFormat.Blockwise4Bit, 2048, 8192L, 2048)]
    [InlineData(MomentFormat.Blockwise4Bit, 0, 8192L, 128)]
    [InlineData(MomentFormat.Blockwise4Bit, 96, 8160L, 96)]       // 85 blocks of 96
    public void StorageIsChosenByTheBlockSize(MomentFormat format, int blockSize, long count, int expectedBlock)
    {
        var storage = new MomentStorage(format, BlockSize: blockSize);
        foreach (var (kind, map) in new[] { (MomentKind.Signed, 0), (MomentKind.NonNegative, 1) })
        {
            var entry = new TensorEntry("m", [count], ScalarType.Float32) { Moment = kind };
            var stored = storage.StorageOf(entry);
            if (expectedBlock == 0)
            {
                stored.Should().Be(entry.Storage, $"{count} entries in blocks of {storage.EffectiveBlockSize} stay dense");
                continue;
            }
            var blockwise = stored.Should().BeOfType<BlockwiseStorage>().Which;
            blockwise.Format.BlockSize.Should().Be(expectedBlock);
            blockwise.Format.Bits.Should().Be(format == MomentFormat.Blockwise8Bit ? 8 : 4);
            var defaults = format == MomentFormat.Blockwise8Bit ? (BlockFormat.Signed8, BlockFormat.Unsigned8) : (BlockFormat.Signed4, BlockFormat.Unsigned4);
            blockwise.Format.Map.Should().Be((map == 0 ? defaults.Item1 : defaults.Item2).Map);
            blockwise.Format.Bytes(count).Should().Be(count * blockwise.Format.Bits / 8 + 4 * (count / expectedBlock), "codes plus one float32 absmax per block");
        }
    }

    private static LowRankOptimizer AdamW(IEnumerable<Parameter> parameters, int blockSize, KernelPreference kernel = KernelPreference.Auto) =>
        new([new LowRankParamGroup(parameters)], new LowRankOptions
        {
            LearningRate = 0.01, WeightDecay = 0.01, DecayOrder = WeightDecayOrder.BeforeUpdate, Projection = FullSpace.Instance,
            Rule = new AdamConfig(Kernel: kernel), MomentStorage = new MomentStorage(MomentFormat.Blockwise8Bit, MinElements: 2048, BlockSize: blockSize),
        });

    /// <summary>Full-space 8-bit Adam on a 64×256 weight (8 blocks of 2048): the fused CPU kernel and the reference agree, and a resume is bit-exact.</summary>
    [Fact]
    public void TwoThousandFortyEightEntryBlocksTrainAndResumeBitExactly()
    {
        using var scope = NewDisposeScope();
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-block-size-");
        try
        {
            var gen = new Generator(23);
            var init = randn([64, 256], generator: gen);
            var grads = Enumerable.Range(0, 10).Select(_ => randn([64, 256], generator: gen)).ToList();
            Parameter Fresh() => new(init.clone());
            void Steps(LowRankOptimizer opt, Parameter p, int from, int to)
            {
                for (var i = from; i < to; i++)
                {
                    p.grad = grads[i].clone();
                    opt.step();
                }
            }

            var straight = Fresh();
            using var straightOpt = AdamW([straight], 2048);
            var slot = straightOpt.States.Single().Rule.State.TensorSlots.First(t => t.Entry.Name == "exp_avg");
            slot.Entry.Storage.Should().BeOfType<BlockwiseStorage>().Which.Format.BlockSize.Should().Be(2048);
            Steps(straightOpt, straight, 0, 10);
            straightOpt.StateBytes.Should().Be(2 * (64 * 256 + 4 * 8), "two 8-bit moments with 8 float32 absmax each");

            var reference = Fresh();
            using (var referenceOpt = AdamW([reference], 2048, KernelPreference.Reference))
                Steps(referenceOpt, reference, 0, 10);
            TensorAssert.Close(straight, reference, 1e-6, 1e-5, "the fused kernel and the reference in 2048-entry blocks");

            var first = Fresh();
            var file = Path.Combine(dir.FullName, "optimizer.bin");
            using (var firstOpt = AdamW([first], 2048))
            {
                Steps(firstOpt, first, 0, 4);
                firstOpt.save_state_dict(file);
            }
            var resumed = new Parameter(first.detach().clone());
            using var resumedOpt = AdamW([resumed], 2048);
            resumedOpt.load_state_dict(file);
            Steps(resumedOpt, resumed, 4, 10);
            TensorAssert.Identical(resumed, straight, "resumed in 2048-entry blocks = uninterrupted");

            // The same file into 256-entry blocks (the default) is refused, naming both block sizes; nothing changes.
            using var other = AdamW([Fresh()], 0);
            Checkpoints.ShouldRefuse(other, file, "*parameter group 0*Blockwise8Bit moments are stored in blocks of 2048 entries*stores them in blocks of 256 (block_size)*block_size = 2048*");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void ACheckpointInDefaultBlocksIsRefusedByAnotherBlockSize()
    {
        using var scope = NewDisposeScope();
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-block-size-");
        try
        {
            var file = Path.Combine(dir.FullName, "optimizer.bin");
            var p = new Parameter(randn(64, 256));
            using (var opt = AdamW([p], 0))
            {
                p.grad = randn(64, 256);
                opt.step();
                opt.save_state_dict(file);
            }
            using var named = AdamW([new Parameter(randn(64, 256))], 256);
            named.load_state_dict(file); // 256 is the default: the same storage
            using var coarse = AdamW([new Parameter(randn(64, 256))], 2048);
            Checkpoints.ShouldRefuse(coarse, file, "*stored in blocks of 256 entries*stores them in blocks of 2048 (block_size)*");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>
    /// A file of options format 4 (commit 3f4f077, before the block size was saved) holds 4-bit moments in torchao's
    /// 128-entry blocks: it loads as the default block size, equal to 128 named explicitly, and is refused by 384.
    /// </summary>
    [Fact]
    public void AnOlderFormatLoadsAsTheDefaultBlockSize()
    {
        using var scope = NewDisposeScope();
        var file = Path.Combine(StoredCheckpointTests.StoredRoot, "3f4f077", "adamw-4bit.ckpt");
        File.Exists(file).Should().BeTrue(file);
        LowRankOptimizer Build(int blockSize)
        {
            var model = nn.Sequential(("q", nn.Linear(16, 24, hasBias: false)), ("o", nn.Linear(24, 16)));
            var options = LowRankPresets.AdamW(lr: 0.01, weight_decay: 0.01);
            options.MomentStorage = new MomentStorage(MomentFormat.Blockwise4Bit, MinElements: 128, BlockSize: blockSize);
            return new LowRankOptimizer([new LowRankParamGroup(model.parameters())], options);
        }
        using (var byDefault = Build(0)) byDefault.load_state_dict(file);
        using (var named = Build(128))
        {
            named.load_state_dict(file);
            named.ParamGroups.Cast<LowRankParamGroup>().Single().Options.MomentStorage!.EffectiveBlockSize.Should().Be(128);
        }
        using var other = Build(384);
        Checkpoints.ShouldRefuse(other, file, "*stored in blocks of 128 entries*stores them in blocks of 384 (block_size)*");
    }

    /// <summary>On a GPU: 2048-entry blocks under Auto take the reference (the CUDA kernel cannot) and equal the CPU run; an explicit Cuda choice is refused.</summary>
    [CudaFact]
    public void OnCudaLargeBlocksTakeTheReferenceOrAreRefused()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(3);
        var init = randn([64, 256], generator: gen);
        var grads = Enumerable.Range(0, 4).Select(_ => randn([64, 256], generator: gen)).ToList();
        var (gpu, cpu) = (new Parameter(init.cuda()), new Parameter(init.clone()));
        using var onGpu = AdamW([gpu], 2048);
        using var onCpu = AdamW([cpu], 2048, KernelPreference.Reference);
        foreach (var g in grads)
        {
            (gpu.grad, cpu.grad) = (g.cuda(), g.clone());
            onGpu.step(); onCpu.step();
        }
        TensorAssert.Close(gpu.cpu(), cpu, 1e-5, 1e-4, "2048-entry blocks on CUDA (reference) and on the CPU");
        var act = () => AdamW([new Parameter(init.cuda())], 2048, KernelPreference.Cuda);
        act.Should().Throw<ArgumentException>().WithMessage("*kernel = Cuda cannot take blocks of 2048 entries*block_size*").Which.ParamName.Should().Be("kernel");
    }
}

/// <summary>Selection and a quantized kernel's block sizes (serial: it registers a kernel process-wide, which every selection reads).</summary>
[Collection(SerialCollection.Name)]
public sealed class BlockSizeSelectionTests
{
    /// <summary>
    /// Kernel selection asks a quantized kernel whether it takes the format: automatic selection passes one over for the
    /// reference, an explicit choice is refused naming block_size (the CUDA kernel's blocks are at most 256 entries). A
    /// test kernel on a storage nothing else uses (block-wise 8-bit float64) stands in for it.
    /// </summary>
    [Fact]
    public void SelectionHonoursWhatAQuantizedKernelTakes()
    {
        var storage = KernelStorage.Blockwise(8, ScalarType.Float64);
        var kernel = new UpTo256Kernel();
        IQuantizedAdamKernel cuda = CudaKernels.Instance;
        cuda.FormatProblem(BlockFormat.Signed8 with { BlockSize = 2048 }).Should().Contain("blocks of 2048 entries").And.Contain("256");
        cuda.FormatProblem(BlockFormat.Signed8).Should().BeNull();
        using (KernelRegistry.Register(KernelOperation.QuantizedAdam, kernel, storage))
        {
            var coarse = BlockFormat.Signed8 with { BlockSize = 2048 };
            KernelSelection.Select<IQuantizedAdamKernel>(null, CPU, storage, 4096, "the state", BlockFormat.Signed8).Should().BeSameAs(kernel);
            KernelSelection.Select<IQuantizedAdamKernel>(null, CPU, storage, 4096, "the state", coarse).Should().BeSameAs(TorchKernels.Instance, "Auto takes the reference");
            var act = () => KernelSelection.Select<IQuantizedAdamKernel>(KernelBackend.Cpu, CPU, storage, 4096, "the Adam state of shape [4096]", coarse);
            act.Should().Throw<ArgumentException>()
                .WithMessage("kernel = Cpu cannot take blocks of 2048 entries (at most 256), but the Adam state of shape [4096] is stored in 8-bit blocks of 2048 entries (block_size); use Auto or Reference.*")
                .Which.ParamName.Should().Be("kernel");
            var choice = new KernelChoice<IQuantizedAdamKernel>("the state", coarse);
            choice.For(null, CPU, storage, 4096).Should().BeSameAs(TorchKernels.Instance);
        }
        KernelRegistry.Registrations.Should().NotContain(r => r.Kernel is UpTo256Kernel);
    }

    /// <summary>A quantized kernel that takes blocks of at most 256 entries (the reference's arithmetic).</summary>
    private sealed class UpTo256Kernel : IQuantizedAdamKernel
    {
        public KernelBackend Backend => KernelBackend.Cpu;
        public string? UnavailableReason => null;
        public long MaxElements(KernelStorage storage) => long.MaxValue;
        public bool Accepts(params ReadOnlySpan<Tensor?> tensors) => true;
        public string? FormatProblem(BlockFormat format) => format.BlockSize <= 256 ? null : $"blocks of {format.BlockSize} entries (at most 256)";
        public Tensor QuantizedAdamDirection(Tensor gradient, in QuantizedMoments moments, in AdamScalars scalars) =>
            TorchKernels.Instance.QuantizedAdamDirection(gradient, moments, scalars);
        public void QuantizedAdamUpdate(Tensor gradient, in QuantizedMoments moments, in AdamScalars scalars, Tensor weights) =>
            TorchKernels.Instance.QuantizedAdamUpdate(gradient, moments, scalars, weights);
    }
}
