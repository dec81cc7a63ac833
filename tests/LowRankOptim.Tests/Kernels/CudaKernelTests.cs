using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Kernels.Cuda;
using LowRankOptim.Kernels.Cuda.Native;
using LowRankOptim.Tests.Support;
using Xunit;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Kernels;

/// <summary>A fact that is skipped, with the reason, when NVRTC cannot be loaded (xunit 2 has no dynamic skip).</summary>
public sealed class NvrtcFactAttribute : FactAttribute
{
    public NvrtcFactAttribute()
    {
        if (CudaLibraries.NvrtcProblem is string problem) Skip = $"NVRTC is not available: {problem}";
    }
}

/// <summary>A fact that is skipped, with the reason, when no CUDA device or TorchSharp CUDA backend is present.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute()
    {
        if (CudaKernels.UnavailableReason is string problem) Skip = $"no CUDA execution here: {problem}";
    }
}

public sealed class CudaKernelTests
{
    /// <summary>Every embedded source compiles with NVRTC to PTX (the launch path) and to a CUBIN (assembled) for sm_80 and sm_90.</summary>
    [NvrtcFact]
    public void EveryEmbeddedKernelCompilesForSm80AndSm90()
    {
        KernelSources.Names.Should().BeEquivalentTo(KernelLaunches.All.Select(k => k.Source).Distinct());
        foreach (var arch in new[] { 80, 90 })
            foreach (var source in KernelSources.Names)
            {
                var ptx = System.Text.Encoding.ASCII.GetString(Nvrtc.Ptx(source, arch));
                ptx.Should().Contain($".target sm_{arch}", $"{source} PTX for compute_{arch}");
                foreach (var (_, function) in KernelLaunches.All.Where(k => k.Source == source))
                    ptx.Should().Contain($".entry {function}(", $"{source} must define {function}");
                Nvrtc.Cubin(source, arch).Length.Should().BeGreaterThan(0);
            }
    }

    [Fact]
    public void TheCompilerReportsACompileErrorWithTheLog()
    {
        if (CudaLibraries.NvrtcProblem is not null) return; // covered by the skip of the fact above
        var bad = () => Nvrtc.CompileText("extern \"C\" __global__ void k() { undefined_name = 1; }", "bad.cu", 80);
        bad.Should().Throw<CudaCompileException>().WithMessage("*undefined_name*");
    }

    [CudaFact]
    public void CudaKernelsEqualTheReferenceOnCudaTensors()
    {
        using var scope = NewDisposeScope();
        var cuda = new Device(DeviceType.CUDA, 0);
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
            foreach (var size in KernelParityTests.Sizes)
            {
                var g = randn([size], device: cuda).to(dtype);
                var (mr, vr) = (zeros([size], dtype, cuda), zeros([size], dtype, cuda));
                var (mc, vc) = (mr.clone(), vr.clone());
                var s = new AdamScalars(0.9, 0.999, 1e-8, Math.Sqrt(1 - 0.999));
                var expected = TorchKernels.Instance.AdamDirection(g, mr, vr, s);
                var actual = CudaKernels.Instance.AdamDirection(g, mc, vc, s);
                var tol = dtype == ScalarType.Float32 ? 1e-5 : 1.0 / 32;
                TensorAssert.Close(mc, mr, 1e-6, tol, "m"); TensorAssert.Close(vc, vr, 1e-6, tol, "v"); TensorAssert.Close(actual, expected, 1e-3, tol, "direction");
                var x = randn([size / 7 + 1, 7], device: cuda).to(dtype);
                foreach (var axis in new[] { L1Axis.Columns, L1Axis.Rows })
                    TensorAssert.Close(CudaKernels.Instance.L1Norms(x, axis), TorchKernels.Instance.L1Norms(x, axis), 1e-5, 1e-5, $"{axis} ℓ1");
                var (rr, cr) = (ones([size / 7 + 1], dtype, cuda), ones([7], dtype, cuda));
                var (rc, cc) = (rr.clone(), cr.clone());
                TorchKernels.Instance.AdafactorStatistics(x, rr, cr, new AdafactorScalars(0.5, 1e-30));
                CudaKernels.Instance.AdafactorStatistics(x, rc, cc, new AdafactorScalars(0.5, 1e-30));
                TensorAssert.Close(rc, rr, 1e-6, tol, "Adafactor rows"); TensorAssert.Close(cc, cr, 1e-6, tol, "Adafactor cols");
            }
    }
}
