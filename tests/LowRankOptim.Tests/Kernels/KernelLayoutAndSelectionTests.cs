using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Kernels;

/// <summary>Odd strides are rejected by the SIMD path with a clear error, Auto falls back, explicit choices fail with the reason.</summary>
[Collection(SerialCollection.Name)] // sets LOWRANKOPTIM_KERNELS, which every selection reads
public sealed class KernelLayoutAndSelectionTests
{
    [Theory]
    [InlineData("float32")]
    [InlineData("bfloat16")]
    public void NonContiguousTensorsAreRejectedWithTheReason(string dtypeName)
    {
        using var scope = NewDisposeScope();
        var dtype = dtypeName == "float32" ? ScalarType.Float32 : ScalarType.BFloat16;
        var wide = randn(8, 6).to(dtype);
        var transposed = wide.t();            // strides (1, 6)
        var everyOther = randn(64).to(dtype).slice(0, 0, 64, 2); // stride 2
        var m = zeros(6, 8, dtype: dtype);
        var v = zeros(6, 8, dtype: dtype);

        var adam = () => CpuKernels.Instance.AdamDirection(transposed, m, v, new AdamScalars(0.9, 0.999, 1e-8, 1));
        adam.Should().Throw<ArgumentException>().WithMessage("*gradient is not contiguous*");
        var l1 = () => CpuKernels.Instance.L1Norms(transposed, L1Axis.Columns);
        l1.Should().Throw<ArgumentException>().WithMessage("*not contiguous*");
        var stats = () => CpuKernels.Instance.AdafactorStatistics(transposed, zeros(6, dtype: dtype), zeros(8, dtype: dtype), new AdafactorScalars(0.5, 1e-30));
        stats.Should().Throw<ArgumentException>().WithMessage("*not contiguous*");
        CpuKernels.Instance.Accepts(everyOther).Should().BeFalse();
        CpuKernels.Instance.Accepts(transposed, m).Should().BeFalse();
        CpuKernels.Instance.Accepts(wide, m).Should().BeTrue();
        // The state is untouched by a rejected call.
        m.count_nonzero().item<long>().Should().Be(0);

        // Auto falls back to the reference for this call; an explicit Cpu keeps the kernel (which rejects it).
        var choice = new KernelChoice<IAdamDirectionKernel>();
        var storage = KernelStorage.Dense(dtype);
        choice.ForCall(null, CPU, storage, 48, transposed, m, v).Should().BeSameAs(TorchKernels.Instance);
        choice.ForCall(null, CPU, storage, 48, wide.t().contiguous(), m, v).Should().BeSameAs(CpuKernels.Instance);
        choice.ForCall(KernelBackend.Cpu, CPU, storage, 48, transposed, m, v).Should().BeSameAs(CpuKernels.Instance);
    }

    [Fact]
    public void AdamRuleWithANonContiguousProjectedGradientStillEqualsTheReference()
    {
        using var scope = NewDisposeScope();
        var g = randn(5, 9).t(); // 9×5 view with odd strides
        IUpdateRule Rule(KernelPreference kernel) => new AdamConfig(Kernel: kernel).Create([9, 5], ScalarType.Float32, CPU);
        var (auto, cpu, reference) = (Rule(KernelPreference.Auto), Rule(KernelPreference.Cpu), Rule(KernelPreference.Reference));
        var config = new AdamConfig();
        var context = new RuleContext(1, 0.01, config, () => 0);
        var expected = reference.Compute(g, context).Direction;
        TensorAssert.Close(auto.Compute(g, context).Direction, expected, 1e-7, 1e-6, "Auto");
        TensorAssert.Close(cpu.Compute(g, context with { Config = config with { Kernel = KernelPreference.Cpu } }).Direction, expected, 1e-7, 1e-6, "Cpu");
        auto.Dispose(); cpu.Dispose(); reference.Dispose();
    }

    private static IKernel Select<TKernel>(KernelBackend? backend, Device device, ScalarType dtype, long count = 32) where TKernel : class, IKernel =>
        KernelSelection.Select<TKernel>(backend, device, KernelStorage.Dense(dtype), count);

    [Fact]
    public void SelectionFollowsDeviceDtypeAndPreference()
    {
        var cuda0 = new Device(DeviceType.CUDA, 0);
        Select<IAdamDirectionKernel>(null, CPU, ScalarType.Float32).Should().BeSameAs(CpuKernels.Instance);
        Select<IAdamDirectionKernel>(null, CPU, ScalarType.BFloat16).Should().BeSameAs(CpuKernels.Instance);
        Select<IAdamDirectionKernel>(null, CPU, ScalarType.Float64).Should().BeSameAs(TorchKernels.Instance);
        Select<ISmmfStepKernel>(null, CPU, ScalarType.BFloat16).Should().BeSameAs(TorchKernels.Instance);
        Select<IL1NormsKernel>(KernelBackend.Reference, CPU, ScalarType.Float32).Should().BeSameAs(TorchKernels.Instance);
        // Auto respects the size limits: a float32 CPU tensor of 2 GiB or more takes the reference.
        Select<ISmmfStepKernel>(null, CPU, ScalarType.Float32, SmmfCpuKernel.MaxElements).Should().BeSameAs(CpuKernels.Instance);
        Select<ISmmfStepKernel>(null, CPU, ScalarType.Float32, SmmfCpuKernel.MaxElements + 1).Should().BeSameAs(TorchKernels.Instance);
        Select<IAdamDirectionKernel>(null, CPU, ScalarType.BFloat16, 2 * SmmfCpuKernel.MaxElements + 1).Should().BeSameAs(CpuKernels.Instance);
        Select<IAdamDirectionKernel>(null, CPU, ScalarType.BFloat16, 2 * SmmfCpuKernel.MaxElements + 2).Should().BeSameAs(TorchKernels.Instance);

        Unhonoured(() => Select<IAdamDirectionKernel>(KernelBackend.Cpu, CPU, ScalarType.Float64),
            "kernel = Cpu needs float32 or bfloat16 state on the CPU to run AdamDirection, but the state is Float64 on cpu; use Auto or Reference.");
        Unhonoured(() => Select<IAdamDirectionKernel>(KernelBackend.Cuda, CPU, ScalarType.Float32),
            "kernel = Cuda needs float32 or bfloat16 state on a CUDA device to run AdamDirection, but the state is Float32 on cpu; use Auto or Reference.");
        Unhonoured(() => Select<IAdamDirectionKernel>(KernelBackend.Cpu, cuda0, ScalarType.Float32), "*float32 or bfloat16 state on the CPU*Float32 on cuda:0*");
        Unhonoured(() => Select<ISmmfStepKernel>(KernelBackend.Cuda, CPU, ScalarType.Float32),
            "kernel = Cuda needs float32 state on a CUDA device to run SmmfStep, but the state is Float32 on cpu; use Auto or Reference.");
        Unhonoured(() => Select<ISmmfStepKernel>(KernelBackend.Cuda, cuda0, ScalarType.Float64), "*needs float32 state on a CUDA device to run SmmfStep, but the state is Float64 on cuda:0*");
        if (CudaKernels.UnavailableReason is string reason)
        {
            // No CUDA here: Auto on a CUDA device falls back silently; an explicit Cuda says why.
            Select<IAdamDirectionKernel>(null, cuda0, ScalarType.Float32).Should().BeSameAs(TorchKernels.Instance);
            Unhonoured(() => Select<IAdamDirectionKernel>(KernelBackend.Cuda, cuda0, ScalarType.Float32),
                $"kernel = Cuda needs float32 or bfloat16 state on a CUDA device to run AdamDirection, but the Cuda kernels cannot run in this process: {reason.TrimEnd('.')}; use Auto or Reference.");
            Select<ISmmfStepKernel>(null, cuda0, ScalarType.Float32).Should().BeSameAs(TorchKernels.Instance);
            Unhonoured(() => Select<ISmmfStepKernel>(KernelBackend.Cuda, cuda0, ScalarType.Float32), $"*cannot run in this process: {reason.TrimEnd('.')}*");
        }
    }

    /// <summary>An explicit choice that cannot be honoured: one exception type, for the option 'kernel', with the whole message.</summary>
    private static void Unhonoured(Action select, string message) =>
        select.Should().ThrowExactly<ArgumentException>().WithMessage(message + " (Parameter 'kernel')").Which.ParamName.Should().Be("kernel");

    [Fact]
    public void AnExplicitChoiceThatCannotBeHonouredFailsWhenTheOptimizerIsBuilt()
    {
        using var scope = NewDisposeScope();
        Unhonoured(() => new AdamConfig(Kernel: KernelPreference.Cuda).Create([8, 4], ScalarType.Float32, CPU),
            "kernel = Cuda needs float32 or bfloat16 state on a CUDA device to run AdamDirection, but the Adam state of shape [8, 4] is Float32 on cpu; use Auto or Reference.");
        Unhonoured(() => new AdafactorConfig(Kernel: KernelPreference.Cpu).Create([8, 4], ScalarType.Float64, CPU),
            "kernel = Cpu needs float32 or bfloat16 state on the CPU to run AdafactorStatistics, but the Adafactor state of a gradient of shape [8, 4] is Float64 on cpu; use Auto or Reference.");
        Unhonoured(() => new SmmfConfig(Kernel: KernelPreference.Cuda).Create([8, 4], ScalarType.Float32, CPU),
            "kernel = Cuda needs float32 state on a CUDA device to run SmmfStep, but the parameter of shape [8, 4] is Float32 on cpu; use Auto or Reference.");
        Unhonoured(() => new SmmfConfig(Kernel: KernelPreference.Cpu).Create([8, 4], ScalarType.Float64, CPU),
            "kernel = Cpu needs float32 state on the CPU to run SmmfStep, but the parameter of shape [8, 4] is Float64 on cpu; use Auto or Reference.");
        // An unfactorized 1-D SMMF tensor never runs a kernel, so an explicit Cuda does not stop it.
        new SmmfConfig(VectorReshape: false, Kernel: KernelPreference.Cuda).Create([8], ScalarType.Float32, CPU).Dispose();

    }

    [Fact]
    public void TheEnvironmentVariableOverridesAutoOnly()
    {
        var old = Environment.GetEnvironmentVariable(KernelSelection.EnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(KernelSelection.EnvironmentVariable, "Reference");
            KernelSelection.Effective(null).Should().Be(KernelBackend.Reference);
            KernelSelection.Effective(KernelBackend.Cpu).Should().Be(KernelBackend.Cpu);
            Select<IAdamDirectionKernel>(null, CPU, ScalarType.Float32).Should().BeSameAs(TorchKernels.Instance);
            Environment.SetEnvironmentVariable(KernelSelection.EnvironmentVariable, "cpu");
            Select<IAdamDirectionKernel>(null, CPU, ScalarType.Float32).Should().BeSameAs(CpuKernels.Instance);
            // A backend named by the variable is explicit: it fails like one.
            Unhonoured(() => Select<IAdamDirectionKernel>(null, CPU, ScalarType.Float64), "kernel = Cpu needs float32 or bfloat16 state on the CPU*Float64*");
            Environment.SetEnvironmentVariable(KernelSelection.EnvironmentVariable, "auto");
            KernelSelection.Effective(null).Should().BeNull();
            Environment.SetEnvironmentVariable(KernelSelection.EnvironmentVariable, "gpu");
            var bad = () => KernelSelection.Effective(null);
            bad.Should().Throw<ArgumentException>().WithMessage("*LOWRANKOPTIM_KERNELS='gpu'*auto, reference, cpu, cuda*");
        }
        finally
        {
            Environment.SetEnvironmentVariable(KernelSelection.EnvironmentVariable, old);
        }
    }
}
