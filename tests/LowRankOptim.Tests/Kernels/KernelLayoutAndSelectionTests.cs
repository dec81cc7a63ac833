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
        var choice = new KernelChoice(KernelOperation.AdamDirection);
        choice.ForCall(KernelPreference.Auto, CPU, dtype, transposed, m, v).Should().BeSameAs(TorchKernels.Instance);
        choice.ForCall(KernelPreference.Auto, CPU, dtype, wide.t().contiguous(), m, v).Should().BeSameAs(CpuKernels.Instance);
        choice.ForCall(KernelPreference.Cpu, CPU, dtype, transposed, m, v).Should().BeSameAs(CpuKernels.Instance);
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

    [Fact]
    public void SelectionFollowsDeviceDtypeAndPreference()
    {
        KernelSelection.Select(KernelPreference.Auto, KernelOperation.AdamDirection, CPU, ScalarType.Float32).Should().BeSameAs(CpuKernels.Instance);
        KernelSelection.Select(KernelPreference.Auto, KernelOperation.AdamDirection, CPU, ScalarType.BFloat16).Should().BeSameAs(CpuKernels.Instance);
        KernelSelection.Select(KernelPreference.Auto, KernelOperation.AdamDirection, CPU, ScalarType.Float64).Should().BeSameAs(TorchKernels.Instance);
        KernelSelection.Select(KernelPreference.Auto, KernelOperation.SmmfStep, CPU, ScalarType.BFloat16).Should().BeSameAs(TorchKernels.Instance);
        KernelSelection.Select(KernelPreference.Reference, KernelOperation.L1Norms, CPU, ScalarType.Float32).Should().BeSameAs(TorchKernels.Instance);

        var cpuOnFloat64 = () => KernelSelection.Select(KernelPreference.Cpu, KernelOperation.AdamDirection, CPU, ScalarType.Float64);
        cpuOnFloat64.Should().Throw<NotSupportedException>().WithMessage("*float32 or bfloat16*Float64*");
        var cudaOnCpu = () => KernelSelection.Select(KernelPreference.Cuda, KernelOperation.AdamDirection, CPU, ScalarType.Float32);
        cudaOnCpu.Should().Throw<NotSupportedException>().WithMessage("*CUDA tensors*cpu*");
        var cpuOnCuda = () => KernelSelection.Select(KernelPreference.Cpu, KernelOperation.AdamDirection, new Device(DeviceType.CUDA, 0), ScalarType.Float32);
        cpuOnCuda.Should().Throw<NotSupportedException>().WithMessage("*CPU tensors*cuda*");
        var smmfCudaOnCpu = () => KernelSelection.Select(KernelPreference.Cuda, KernelOperation.SmmfStep, CPU, ScalarType.Float32);
        smmfCudaOnCpu.Should().Throw<NotSupportedException>().WithMessage("kernel = Cuda cannot run SmmfStep: the CUDA kernels need CUDA tensors, but the state is on cpu*");
        var smmfCudaOnFloat64 = () => KernelSelection.Select(KernelPreference.Cuda, KernelOperation.SmmfStep, new Device(DeviceType.CUDA, 0), ScalarType.Float64);
        smmfCudaOnFloat64.Should().Throw<NotSupportedException>().WithMessage("*the CUDA SMMF kernel needs float32 tensors, not Float64*");
        if (CudaKernels.UnavailableReason is string reason)
        {
            // No CUDA here: Auto on a CUDA device falls back silently; an explicit Cuda says why.
            KernelSelection.Select(KernelPreference.Auto, KernelOperation.AdamDirection, new Device(DeviceType.CUDA, 0), ScalarType.Float32).Should().BeSameAs(TorchKernels.Instance);
            var cuda = () => KernelSelection.Select(KernelPreference.Cuda, KernelOperation.AdamDirection, new Device(DeviceType.CUDA, 0), ScalarType.Float32);
            cuda.Should().Throw<NotSupportedException>().Which.Message.Should().Contain(reason);
            KernelSelection.Select(KernelPreference.Auto, KernelOperation.SmmfStep, new Device(DeviceType.CUDA, 0), ScalarType.Float32).Should().BeSameAs(TorchKernels.Instance);
            var smmf = () => KernelSelection.Select(KernelPreference.Cuda, KernelOperation.SmmfStep, new Device(DeviceType.CUDA, 0), ScalarType.Float32);
            smmf.Should().Throw<NotSupportedException>().Which.Message.Should().Contain(reason);
        }
    }

    [Fact]
    public void AnExplicitChoiceThatCannotBeHonouredFailsWhenTheOptimizerIsBuilt()
    {
        using var scope = NewDisposeScope();
        var adam = () => new AdamConfig(Kernel: KernelPreference.Cuda).Create([8, 4], ScalarType.Float32, CPU);
        adam.Should().Throw<NotSupportedException>().WithMessage("*kernel = Cuda*CUDA tensors*");
        var adafactor = () => new AdafactorConfig(Kernel: KernelPreference.Cpu).Create([8, 4], ScalarType.Float64, CPU);
        adafactor.Should().Throw<NotSupportedException>().WithMessage("*kernel = Cpu*Float64*");
        var smmf = () => new SmmfConfig(Kernel: KernelPreference.Cuda).Create([8, 4], ScalarType.Float32, CPU);
        smmf.Should().Throw<NotSupportedException>().WithMessage("kernel = Cuda cannot run SmmfStep: the CUDA kernels need CUDA tensors*");
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
            KernelSelection.Effective(KernelPreference.Auto).Should().Be(KernelPreference.Reference);
            KernelSelection.Effective(KernelPreference.Cpu).Should().Be(KernelPreference.Cpu);
            KernelSelection.Select(KernelPreference.Auto, KernelOperation.AdamDirection, CPU, ScalarType.Float32).Should().BeSameAs(TorchKernels.Instance);
            Environment.SetEnvironmentVariable(KernelSelection.EnvironmentVariable, "cpu");
            KernelSelection.Select(KernelPreference.Auto, KernelOperation.AdamDirection, CPU, ScalarType.Float32).Should().BeSameAs(CpuKernels.Instance);
            Environment.SetEnvironmentVariable(KernelSelection.EnvironmentVariable, "gpu");
            var bad = () => KernelSelection.Effective(KernelPreference.Auto);
            bad.Should().Throw<ArgumentException>().WithMessage("*LOWRANKOPTIM_KERNELS='gpu'*auto, reference, cpu, cuda*");
        }
        finally
        {
            Environment.SetEnvironmentVariable(KernelSelection.EnvironmentVariable, old);
        }
    }
}
