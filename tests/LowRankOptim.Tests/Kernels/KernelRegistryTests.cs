using System.Reflection;
using System.Runtime.CompilerServices;
using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Kernels;

/// <summary>
/// Kernels registered per (operation, backend, storage): the reference for everything, the backends for what they
/// implement, one exception for an explicit choice that cannot be honoured, and kernels registered from outside.
/// </summary>
[Collection(SerialCollection.Name)] // registers kernels process-wide, which every selection reads
public sealed class KernelRegistryTests
{
    private static readonly ScalarType[] FloatTypes = [ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float64];

    private static readonly Dictionary<KernelOperation, Type> Interfaces = new()
    {
        [KernelOperation.AdamDirection] = typeof(IAdamDirectionKernel),
        [KernelOperation.AdamUpdate] = typeof(IAdamUpdateKernel),
        [KernelOperation.AdafactorStatistics] = typeof(IAdafactorStatisticsKernel),
        [KernelOperation.SmmfStep] = typeof(ISmmfStepKernel),
        [KernelOperation.L1Norms] = typeof(IL1NormsKernel),
        [KernelOperation.QuantizedAdam] = typeof(IQuantizedAdamKernel),
        [KernelOperation.WeightUpdate] = typeof(IWeightUpdateKernel),
    };

    /// <summary>The operations on block-wise (quantized) state: no dense registration, one per width and working dtype.</summary>
    private static bool Blockwise(KernelOperation operation) => operation == KernelOperation.QuantizedAdam;

    /// <summary>
    /// What each non-reference backend registers, as <c>Row</c> prints it, for the operations on block-wise state (the
    /// dense operations are checked in <see cref="TheBackendsRegisterOnlyWhatTheyImplement"/>). A backend that adds a
    /// kernel changes its line here.
    /// </summary>
    private static readonly Dictionary<(KernelBackend, KernelOperation), string> BlockwiseRows = new()
    {
        [(KernelBackend.Cpu, KernelOperation.QuantizedAdam)] =
            "Blockwise8Bit Float32, Blockwise8Bit BFloat16, Blockwise4Bit Float32, Blockwise4Bit BFloat16",
        // Automatic since the GPU harness passed quantized_adam.cu on an H200 (docs/kernels.md).
        [(KernelBackend.Cuda, KernelOperation.QuantizedAdam)] =
            "Blockwise8Bit Float32, Blockwise8Bit BFloat16, Blockwise4Bit Float32, Blockwise4Bit BFloat16",
    };

    [Fact]
    public void TheReferenceIsRegisteredForEveryOperationAndDenseDtype()
    {
        Interfaces.Keys.Should().BeEquivalentTo(Enum.GetValues<KernelOperation>(), "every operation has its interface");
        foreach (var operation in Enum.GetValues<KernelOperation>().Where(o => !Blockwise(o)))
            foreach (var dtype in FloatTypes)
            {
                var kernel = KernelRegistry.Find(operation, KernelBackend.Reference, KernelStorage.Dense(dtype));
                kernel.Should().BeSameAs(TorchKernels.Instance, $"{operation} on {dtype}");
                kernel.Should().BeAssignableTo(Interfaces[operation]);
                kernel!.Backend.Should().Be(KernelBackend.Reference);
                kernel.MaxElements(KernelStorage.Dense(dtype)).Should().Be(long.MaxValue);
                kernel.UnavailableReason.Should().BeNull();
            }
        KernelSelection.Reference<IAdamDirectionKernel>(KernelStorage.Dense(ScalarType.Float64)).Should().BeSameAs(TorchKernels.Instance);
        KernelSelection.Reference<IAdamUpdateKernel>(KernelStorage.Dense(ScalarType.Float16)).Should().BeSameAs(TorchKernels.Instance);
        KernelSelection.Reference<IAdafactorStatisticsKernel>(KernelStorage.Dense(ScalarType.BFloat16)).Should().BeSameAs(TorchKernels.Instance);
        KernelSelection.Reference<ISmmfStepKernel>(KernelStorage.Dense(ScalarType.Float32)).Should().BeSameAs(TorchKernels.Instance);
        KernelSelection.Reference<IL1NormsKernel>(KernelStorage.Dense(ScalarType.Float64)).Should().BeSameAs(TorchKernels.Instance);
    }

    [Fact]
    public void TheReferenceIsRegisteredForQuantizedAdamOnBlockwiseStorageOnly()
    {
        foreach (var bits in new[] { 8, 4 })
            foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float64 })
            {
                var storage = KernelStorage.Blockwise(bits, dtype);
                var kernel = KernelRegistry.Find(KernelOperation.QuantizedAdam, KernelBackend.Reference, storage);
                kernel.Should().BeSameAs(TorchKernels.Instance, $"{storage}");
                KernelSelection.Reference<IQuantizedAdamKernel>(storage).Should().BeSameAs(TorchKernels.Instance);
            }
        KernelRegistry.Registrations.Where(r => r.Operation == KernelOperation.QuantizedAdam)
            .Should().OnlyContain(r => r.Storage.Kind != StorageKind.Dense, "Adam on quantized moments has no dense storage");
        KernelRegistry.Registrations.Where(r => r.Operation != KernelOperation.QuantizedAdam)
            .Should().OnlyContain(r => r.Storage.Kind == StorageKind.Dense, "the dense operations register dense storage only");
        KernelRegistry.Find(KernelOperation.QuantizedAdam, KernelBackend.Reference, KernelStorage.Blockwise(8, ScalarType.Float16)).Should().BeNull();
    }

    [Fact]
    public void TheBackendsRegisterOnlyWhatTheyImplement()
    {
        string Row(KernelBackend backend, KernelOperation operation) => string.Join(", ", KernelRegistry.Registrations
            .Where(r => r.Backend == backend && r.Operation == operation)
            .Select(r => r.Automatic ? $"{r.Storage}" : $"{r.Storage} (explicit only)"));
        foreach (var operation in Enum.GetValues<KernelOperation>().Where(Blockwise))
            foreach (var backend in new[] { KernelBackend.Cpu, KernelBackend.Cuda })
                Row(backend, operation).Should().Be(BlockwiseRows[(backend, operation)], $"the {backend} backend's {operation}");
        KernelRegistry.Find(KernelOperation.QuantizedAdam, KernelBackend.Cpu, KernelStorage.Blockwise(8, ScalarType.Float32)).Should().BeSameAs(QuantizedAdamCpuKernel.Instance);
        foreach (var operation in Enum.GetValues<KernelOperation>().Where(o => !Blockwise(o)))
        {
            var expected = operation switch
            {
                KernelOperation.SmmfStep => "Float32",
                KernelOperation.WeightUpdate => "BFloat16", // the rounded update of bfloat16 weights
                _ => "Float32, BFloat16",
            };
            Row(KernelBackend.Cpu, operation).Should().Be(expected, $"the CPU backend's {operation}");
            Row(KernelBackend.Cuda, operation).Should().Be(
                operation == KernelOperation.L1Norms ? "Float32 (explicit only), BFloat16 (explicit only)"
                : operation == KernelOperation.WeightUpdate ? "" // no CUDA kernel yet: the reference runs on the GPU
                : expected, $"the CUDA backend's {operation}");
        }
        KernelRegistry.Registrations.Should().OnlyContain(r => Interfaces[r.Operation].IsInstanceOfType(r.Kernel), "a kernel implements its operation");
        CpuKernels.Instance.MaxElements(KernelStorage.Dense(ScalarType.Float32)).Should().Be(SmmfCpuKernel.MaxElements);
    }

    [Fact]
    public void AnExplicitCpuChoiceTheBackendCannotTakeFailsWithOneExceptionAndMessage()
    {
        // A storage the CPU backend has no kernel of, for an operation (SMMF in bf16) and for a dtype (Adam in float64).
        Unhonoured(() => KernelSelection.Select<ISmmfStepKernel>(KernelBackend.Cpu, CPU, KernelStorage.Dense(ScalarType.BFloat16), 64, "the parameter of shape [8, 8]"),
            "kernel = Cpu needs float32 state on the CPU to run SmmfStep, but the parameter of shape [8, 8] is BFloat16 on cpu; use Auto or Reference.");
        Unhonoured(() => new AdamConfig(Kernel: KernelPreference.Cpu).Create([5, 3], ScalarType.Float64, CPU),
            "kernel = Cpu needs float32 or bfloat16 state on the CPU to run AdamDirection, but the Adam state of shape [5, 3] is Float64 on cpu; use Auto or Reference.");
        // Beyond the size limit (the state is not allocated: the choice is checked first).
        const long tooMany = SmmfCpuKernel.MaxElements + 1;
        Unhonoured(() => new SmmfConfig(Kernel: KernelPreference.Cpu).Create([tooMany], ScalarType.Float32, CPU),
            $"kernel = Cpu needs float32 state on the CPU, at most {SmmfCpuKernel.MaxElements} elements of Float32, to run SmmfStep, " +
            $"but the parameter of shape [{tooMany}] has {tooMany} elements; use Auto or Reference.");
        Unhonoured(() => new AdamConfig(Kernel: KernelPreference.Cpu).Create([2, tooMany / 2], ScalarType.Float32, CPU),
            $"kernel = Cpu needs float32 or bfloat16 state on the CPU, at most {SmmfCpuKernel.MaxElements} elements of Float32, to run AdamDirection, " +
            $"but the Adam state of shape [2, {tooMany / 2}] has {tooMany} elements; use Auto or Reference.");
        // Through a factory: the exception names the option, as every invalid argument does.
        Unhonoured(() => LowRank.Smmf([new Parameter(randn(6, 4, dtype: ScalarType.Float64))], kernel: KernelPreference.Cpu),
            "kernel = Cpu needs float32 state on the CPU to run SmmfStep, but the parameter of shape [6, 4] is Float64 on cpu; use Auto or Reference.");
        // Under Auto the same states take the reference silently.
        KernelSelection.Select<ISmmfStepKernel>(null, CPU, KernelStorage.Dense(ScalarType.Float32), tooMany).Should().BeSameAs(TorchKernels.Instance);
        KernelSelection.Select<IAdamDirectionKernel>(null, CPU, KernelStorage.Dense(ScalarType.Float64), 15).Should().BeSameAs(TorchKernels.Instance);
    }

    [Fact]
    public void EveryKernelPreferenceMapsToTheBackendOfTheSameName()
    {
        KernelPreference.Auto.Backend().Should().BeNull();
        foreach (var preference in Enum.GetValues<KernelPreference>().Where(p => p != KernelPreference.Auto))
            preference.Backend().ToString().Should().Be(preference.ToString());
        Enum.GetValues<KernelBackend>().Length.Should().Be(Enum.GetValues<KernelPreference>().Length - 1, "one preference per backend, and Auto");
        var unknown = () => ((KernelPreference)9).Backend();
        unknown.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("kernel");
    }

    [Fact]
    public void TheKernelAssemblyOwnsItsNamespaceAndGrantsTheLibraryNoInternals()
    {
        var kernels = typeof(IKernel).Assembly;
        var library = typeof(LowRankOptimizer).Assembly;
        kernels.GetCustomAttributes<InternalsVisibleToAttribute>().Select(a => a.AssemblyName).Should().NotContain(library.GetName().Name);
        kernels.GetTypes().Where(t => !t.IsDefined(typeof(CompilerGeneratedAttribute)) && !t.Name.StartsWith('<') && t.Namespace is not null)
            .Should().OnlyContain(t => t.Namespace!.StartsWith("LowRankOptim.Kernels"), "the kernel assembly's types live in its namespace");
        library.GetTypes().Should().NotContain(t => t.Namespace != null && t.Namespace.StartsWith("LowRankOptim.Kernels"));
        typeof(KernelPreference).Assembly.Should().BeSameAs(library, "the user-facing option lives with the options");
        typeof(KernelPreference).Namespace.Should().Be("LowRankOptim");
        kernels.GetExportedTypes().Should().NotContain([typeof(TorchKernels), typeof(CpuKernels), typeof(CudaKernels), typeof(SmmfCpuKernel), typeof(QuantizedAdamCpuKernel),
            typeof(WeightUpdateCpuKernel)],
            "the backends are reached through the registry, not by name");
    }

    [Fact]
    public void AKernelRegisteredFromOutsideIsSelectedByPreference()
    {
        using var scope = NewDisposeScope();
        var storage = KernelStorage.Dense(ScalarType.Float64);
        var fake = new CountingAdam(KernelBackend.Cpu);
        var before = () => KernelSelection.Select<IAdamDirectionKernel>(KernelBackend.Cpu, CPU, storage, 15);
        before.Should().Throw<ArgumentException>();

        using (KernelRegistry.Register(KernelOperation.AdamDirection, fake, storage, automatic: false))
        using (KernelRegistry.Register(KernelOperation.AdamUpdate, fake, storage, automatic: false))
        {
            KernelSelection.Select<IAdamDirectionKernel>(KernelBackend.Cpu, CPU, storage, 15).Should().BeSameAs(fake);
            KernelSelection.Select<IAdamDirectionKernel>(null, CPU, storage, 15).Should().BeSameAs(TorchKernels.Instance, "not registered for Auto");
            KernelSelection.Select<IAdamDirectionKernel>(KernelBackend.Cpu, CPU, KernelStorage.Dense(ScalarType.Float32), 15).Should().BeSameAs(CpuKernels.Instance);

            // A rule picks it up by preference alone: a projected rule (direction) and a full-space optimizer (fused update).
            var rule = new AdamConfig(Kernel: KernelPreference.Cpu).Create([5, 3], ScalarType.Float64, CPU);
            var g = randn(5, 3, dtype: ScalarType.Float64);
            var reference = new AdamConfig(Kernel: KernelPreference.Reference).Create([5, 3], ScalarType.Float64, CPU);
            var context = new RuleContext(1, 0.01, new AdamConfig(Kernel: KernelPreference.Cpu), () => 0);
            var direction = rule.Compute(g, context).Direction;
            TensorAssert.Identical(direction, reference.Compute(g, context with { Config = new AdamConfig(Kernel: KernelPreference.Reference) }).Direction, "the fake's direction (the reference's arithmetic)");
            fake.Directions.Should().Be(1);
            rule.Dispose(); reference.Dispose();

            var (fused, plain) = (new Parameter(randn(4, 6, dtype: ScalarType.Float64)), new Parameter(randn(4, 6, dtype: ScalarType.Float64)));
            plain.detach().copy_(fused);
            LowRankOptimizer Build(Parameter p, KernelPreference kernel) => new([new LowRankParamGroup([p])], new LowRankOptions
            {
                LearningRate = 0.01, WeightDecay = 0.1, DecayOrder = WeightDecayOrder.BeforeUpdate, Projection = FullSpace.Instance, Rule = new AdamConfig(Kernel: kernel),
            });
            using var withFake = Build(fused, KernelPreference.Cpu);
            using var withReference = Build(plain, KernelPreference.Reference);
            for (var step = 0; step < 3; step++)
            {
                var grad = randn(4, 6, dtype: ScalarType.Float64);
                (fused.grad, plain.grad) = (grad.clone(), grad.clone());
                withFake.step(); withReference.step();
            }
            TensorAssert.Identical(fused, plain, "parameters after 3 steps");
            fake.Updates.Should().Be(3);

            // A registration for Auto replaces the one with the same key until it is disposed.
            var automatic = new CountingAdam(KernelBackend.Cpu);
            using (KernelRegistry.Register(KernelOperation.AdamDirection, automatic, storage))
            {
                KernelSelection.Select<IAdamDirectionKernel>(null, CPU, storage, 15).Should().BeSameAs(automatic);
                KernelSelection.Select<IAdamDirectionKernel>(KernelBackend.Cpu, CPU, storage, 15).Should().BeSameAs(automatic);
            }
            KernelSelection.Select<IAdamDirectionKernel>(KernelBackend.Cpu, CPU, storage, 15).Should().BeSameAs(fake);
        }
        before.Should().Throw<ArgumentException>("disposing the registrations restores the built-in ones");
        KernelRegistry.Registrations.Should().NotContain(r => r.Kernel is CountingAdam);

        var wrong = () => KernelRegistry.Register(KernelOperation.SmmfStep, fake, storage);
        wrong.Should().Throw<ArgumentException>().WithMessage("CountingAdam does not implement ISmmfStepKernel, the interface of SmmfStep.*");
    }

    [Fact]
    public void ACachedChoiceSelectsAgainWhenTheRegistryChanges()
    {
        var storage = KernelStorage.Dense(ScalarType.Float64);
        var choice = new KernelChoice<IAdamDirectionKernel>();
        choice.For(null, CPU, storage, 15).Should().BeSameAs(TorchKernels.Instance);
        choice.IsExplicit.Should().BeFalse();
        var fake = new CountingAdam(KernelBackend.Cpu);
        using (KernelRegistry.Register(KernelOperation.AdamDirection, fake, storage))
            choice.For(null, CPU, storage, 15).Should().BeSameAs(fake);
        choice.For(null, CPU, storage, 15).Should().BeSameAs(TorchKernels.Instance);
        choice.Reference.Should().BeSameAs(TorchKernels.Instance);
    }

    private static void Unhonoured(Action select, string message) =>
        select.Should().ThrowExactly<ArgumentException>().WithMessage(message + " (Parameter 'kernel')").Which.ParamName.Should().Be("kernel");

    /// <summary>A test backend: the reference's arithmetic, counting its calls.</summary>
    private sealed class CountingAdam(KernelBackend backend) : IAdamDirectionKernel, IAdamUpdateKernel
    {
        public int Directions { get; private set; }
        public int Updates { get; private set; }
        public KernelBackend Backend => backend;
        public string? UnavailableReason => null;
        public long MaxElements(KernelStorage storage) => 1 << 20;
        public bool Accepts(params ReadOnlySpan<Tensor?> tensors) => true;

        public Tensor AdamDirection(Tensor gradient, Tensor expAvg, Tensor expAvgSq, in AdamScalars scalars)
        {
            Directions++;
            return TorchKernels.Instance.AdamDirection(gradient, expAvg, expAvgSq, scalars);
        }

        public void AdamUpdate(Tensor gradient, Tensor expAvg, Tensor expAvgSq, in AdamScalars scalars, Tensor weights)
        {
            Updates++;
            TorchKernels.Instance.AdamUpdate(gradient, expAvg, expAvgSq, scalars, weights);
        }
    }
}
