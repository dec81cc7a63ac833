using FluentAssertions;
using LowRankOptim.Kernels;
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
                // The full-space update: moments and weights in place, against the reference's mul_ + addcdiv_.
                var update = s with { StepSize = 1e-3, DecayFactor = 1 - 1e-5 };
                var w = randn([size], device: cuda).to(dtype);
                var (wr, wc) = (w.clone(), w.clone());
                TorchKernels.Instance.AdamUpdate(g, mr, vr, update, wr);
                CudaKernels.Instance.AdamUpdate(g, mc, vc, update, wc);
                TensorAssert.Close(mc, mr, 1e-6, tol, "m after the update"); TensorAssert.Close(vc, vr, 1e-6, tol, "v after the update");
                TensorAssert.Close(wc, wr, 1e-6, tol, "weights after the update");
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

    /// <summary>
    /// SMMF views (rows×cols): one element, column counts that are not multiples of 8 (sign bytes straddle
    /// rows), fewer columns than one 256-column block and several blocks with few rows, several bands.
    /// </summary>
    private static readonly (long Rows, long Cols)[] SmmfViews = [(1, 1), (7, 13), (33, 31), (3, 1000), (1000, 3), (64, 64), (1024, 1000)];

    private static SmmfFactors SmmfState(long rows, long cols, bool momentum, Device device) => new(rows, cols,
        momentum ? zeros([rows], device: device) : null, momentum ? zeros([cols], device: device) : null,
        momentum ? SignBits.Zeros(rows * cols, device) : null, zeros([rows], device: device), zeros([cols], device: device));

    private static SmmfFactors Copy(SmmfFactors s, Device device) => new(s.Rows, s.Cols,
        s.MomentRows?.to(device, copy: true), s.MomentCols?.to(device, copy: true), s.MomentSigns?.to(device, copy: true),
        s.VarianceRows.to(device, copy: true), s.VarianceCols.to(device, copy: true));

    /// <summary>
    /// The CUDA SMMF kernel on CUDA tensors: three steps in direction mode and one weight update against the
    /// reference (TorchSharp ops on the same CUDA tensors), and every step against the CPU kernel taking the
    /// same step from a CPU copy of the same state: the target and the sign bits bit for bit, the factors to
    /// float rounding (both sum in float64, in different orders).
    /// </summary>
    [CudaFact]
    public void CudaSmmfEqualsTheReferenceAndTheCpuKernelOnCudaTensors()
    {
        using var scope = NewDisposeScope();
        var cuda = new Device(DeviceType.CUDA, 0);
        foreach (var (rows, cols) in SmmfViews)
            foreach (var momentum in new[] { true, false })
            {
                var what = $"{rows}×{cols}, {(momentum ? "with M" : "no M")}";
                var (expected, actual) = (SmmfState(rows, cols, momentum, cuda), SmmfState(rows, cols, momentum, cuda));
                var gen = new Generator((ulong)(rows * 131 + cols));
                var we = randn([rows * cols], generator: gen).to(cuda);
                var wa = we.clone();
                for (var step = 1; step <= 4; step++)
                {
                    var weights = step == 4;
                    var g = randn([rows * cols], generator: gen).to(cuda);
                    var s = new SmmfScalars(momentum ? 0.9 * Math.Pow(0.999, step - 1) : 0, 1 - Math.Pow(step, -0.8), 1e-8, 1e-3, 1 - 1e-5);
                    var onCpu = Copy(actual, CPU);
                    var cpuTarget = weights ? wa.cpu() : empty([rows * cols]);
                    CpuKernels.Instance.SmmfStep(g.cpu(), onCpu, s, cpuTarget, weights);
                    var (de, da) = weights ? (we, wa) : (empty_like(g), empty_like(g));
                    TorchKernels.Instance.SmmfStep(g, expected, s, de, weights);
                    CudaKernels.Instance.SmmfStep(g, actual, s, da, weights);

                    TensorAssert.Identical(da.cpu(), cpuTarget, $"{what}, step {step}: target vs the CPU kernel");
                    TensorAssert.Close(da, de, 1e-6, 1e-4, $"{what}, step {step}: target vs the reference");
                    foreach (var (name, a, c, r) in new[]
                             {
                                 ("ρ_V", actual.VarianceRows, onCpu.VarianceRows, expected.VarianceRows),
                                 ("γ_V", actual.VarianceCols, onCpu.VarianceCols, expected.VarianceCols),
                                 ("ρ_M", actual.MomentRows, onCpu.MomentRows, expected.MomentRows),
                                 ("γ_M", actual.MomentCols, onCpu.MomentCols, expected.MomentCols),
                             })
                    {
                        if (a is null) continue;
                        TensorAssert.Close(a, c!, 1e-30, 3e-7, $"{what}, step {step}: {name} vs the CPU kernel");
                        TensorAssert.Close(a, r!, 1e-7, 1e-5, $"{what}, step {step}: {name} vs the reference");
                    }
                    if (momentum)
                    {
                        TensorAssert.Identical(actual.MomentSigns!.cpu(), onCpu.MomentSigns!, $"{what}, step {step}: sign bits vs the CPU kernel");
                        TensorAssert.Identical(actual.MomentSigns!, expected.MomentSigns!, $"{what}, step {step}: sign bits vs the reference");
                    }
                }
            }
    }

    /// <summary>SmmfConfig with kernel = Cuda runs the CUDA kernel (fused weight update included) and matches the reference path.</summary>
    [CudaFact]
    public void SmmfRuleRunsTheCudaKernelAndEqualsTheReferencePath()
    {
        using var scope = NewDisposeScope();
        var cuda = new Device(DeviceType.CUDA, 0);
        // Explicit preferences only: KernelLayoutAndSelectionTests may set LOWRANKOPTIM_KERNELS, which Auto reads, in parallel.
        KernelSelection.Select<ISmmfStepKernel>(KernelBackend.Cuda, cuda, KernelStorage.Dense(ScalarType.Float32), 33 * 21).Should().BeSameAs(CudaKernels.Instance);
        var gen = new Generator(5);
        var initial = randn([33, 21], generator: gen);
        (TorchSharp.Modules.Parameter P, LowRankOptimizer Opt) Build(KernelPreference kernel)
        {
            var p = new TorchSharp.Modules.Parameter(initial.to(cuda, copy: true));
            return (p, new LowRankOptimizer([new LowRankParamGroup([p])], new LowRankOptions
            {
                LearningRate = 0.02, WeightDecay = 0.1, DecayOrder = WeightDecayOrder.BeforeUpdate, Projection = FullSpace.Instance,
                Rule = new SmmfConfig(0.9, Kernel: kernel),
            }));
        }
        var (cudaP, cudaOpt) = Build(KernelPreference.Cuda);
        var (refP, refOpt) = Build(KernelPreference.Reference);
        using (cudaOpt)
        using (refOpt)
            for (var k = 0; k < 5; k++)
            {
                var g = randn([33, 21], generator: gen).to(cuda);
                cudaP.grad = g.clone();
                refP.grad = g.clone();
                cudaOpt.step();
                refOpt.step();
                TensorAssert.Close(cudaP, refP, 1e-6, 1e-5, $"parameter after step {k + 1}");
            }
    }

    /// <summary>
    /// quantized_adam.cu on CUDA tensors against the reference on the same tensors: 8-bit and 4-bit, float32 and bfloat16,
    /// direction and update, nearest and stochastic rounding, three steps. float32: codes and absmax bit for bit. bfloat16:
    /// the kernel keeps adam.cu's float scalars, so a code may move by one and the absmax by bfloat16 rounding.
    /// </summary>
    [CudaFact]
    public void CudaQuantizedAdamEqualsTheReferenceOnCudaTensors()
    {
        using var scope = NewDisposeScope();
        var cuda = new Device(DeviceType.CUDA, 0);
        foreach (var (fm, fv) in new[] { (BlockFormat.Signed8, BlockFormat.Unsigned8), (BlockFormat.Signed4, BlockFormat.Unsigned4) })
            foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
                foreach (var update in new[] { false, true })
                    foreach (var stochastic in new[] { false, true })
                    {
                        var what = $"{fm.Bits}-bit {dtype} {(update ? "update" : "direction")} {(stochastic ? "stochastic" : "nearest")}";
                        var n = fm.BlockSize * 5L;
                        QuantizedMoments Fresh() => new(new(zeros(fm.CodeBytes(n), ScalarType.Byte, cuda), zeros(fm.Blocks(n), device: cuda), fm, Rounding.Nearest),
                            new(zeros(fv.CodeBytes(n), ScalarType.Byte, cuda), zeros(fv.Blocks(n), device: cuda), fv, Rounding.Nearest));
                        var (expected, actual) = (Fresh(), Fresh());
                        var w = randn([n], device: cuda).to(dtype);
                        var (we, wa) = (w.clone(), w.clone());
                        for (var step = 1; step <= 3; step++)
                        {
                            Rounding Round(ulong stream) => stochastic ? new(StateRounding.Stochastic, RoundingNoise.Key(7, stream, step)) : Rounding.Nearest;
                            QuantizedMoments With(QuantizedMoments q) => new(q.ExpAvg with { Rounding = Round(1) }, q.ExpAvgSq with { Rounding = Round(2) });
                            var g = randn([n], device: cuda).to(dtype);
                            var s = new AdamScalars(0.9, 0.999, 1e-8, Math.Sqrt(1 - Math.Pow(0.999, step)), StepSize: 1e-3, DecayFactor: 1 - 1e-5);
                            if (update)
                            {
                                TorchKernels.Instance.QuantizedAdamUpdate(g, With(expected), s, we);
                                CudaKernels.Instance.QuantizedAdamUpdate(g, With(actual), s, wa);
                                TensorAssert.Close(wa, we, 1e-6, dtype == ScalarType.Float32 ? 1e-5 : 1.0 / 32, $"{what}, step {step}: weights");
                            }
                            else
                            {
                                var de = TorchKernels.Instance.QuantizedAdamDirection(g, With(expected), s);
                                var da = CudaKernels.Instance.QuantizedAdamDirection(g, With(actual), s);
                                TensorAssert.Close(da, de, 1e-3, dtype == ScalarType.Float32 ? 1e-5 : 1.0 / 32, $"{what}, step {step}: direction");
                            }
                            foreach (var (name, a, e) in new[] { ("m", actual.ExpAvg, expected.ExpAvg), ("v", actual.ExpAvgSq, expected.ExpAvgSq) })
                            {
                                if (dtype == ScalarType.Float32)
                                {
                                    TensorAssert.Identical(a.Codes.cpu(), e.Codes.cpu(), $"{what}, step {step}: {name} codes");
                                    TensorAssert.Identical(a.Absmax.cpu(), e.Absmax.cpu(), $"{what}, step {step}: {name} absmax");
                                    continue;
                                }
                                TensorAssert.Close(a.Absmax, e.Absmax, 1e-30, 1.0 / 64, $"{what}, step {step}: {name} absmax");
                                var (ca, ce) = (Codes(a.Codes, fm.Bits), Codes(e.Codes, fm.Bits));
                                ca.sub(ce).abs().max().item<long>().Should().BeLessThanOrEqualTo(1, $"{what}, step {step}: {name} codes move by one at most");
                            }
                        }
                    }
    }

    /// <summary>The codes of a store as int64, one per entry (4-bit: high nibble first).</summary>
    private static Tensor Codes(Tensor stored, int bits)
    {
        var wide = stored.cpu().to(ScalarType.Int64);
        if (bits == 8) return wide;
        using var sixteen = 16L.ToScalar();
        return stack([wide.div(sixteen, rounding_mode: RoundingMode.floor), wide.remainder(sixteen)], dim: -1).view(-1);
    }

    /// <summary>The CUDA SMMF kernel checks every tensor before it launches anything (runs without a GPU: CPU tensors are rejected).</summary>
    [Fact]
    public void CudaSmmfRejectsBadArgumentsWithTheTensorAndTheConstraint()
    {
        using var scope = NewDisposeScope();
        var state = SmmfState(4, 2, true, CPU);
        var s = new SmmfScalars(0.9, 0.5, 1e-8);
        var onCpu = () => CudaKernels.Instance.SmmfStep(zeros([4, 2]), state, s, zeros([4, 2]), updateWeights: false);
        onCpu.Should().Throw<ArgumentException>().WithMessage("gradient is on cpu; the CUDA kernel needs a CUDA tensor*").Which.ParamName.Should().Be("gradient");
        var noColumns = () => CudaKernels.Instance.SmmfStep(zeros([0]), state with { Rows = 0, Cols = 0 }, s, zeros([0]), updateWeights: false);
        noColumns.Should().Throw<ArgumentException>().WithMessage("the matrix view must have rows >= 0 and cols >= 1 (got 0×0)*");
        var partial = () => CudaKernels.Instance.SmmfStep(zeros([4, 2]), state with { MomentSigns = null }, s, zeros([4, 2]), updateWeights: true);
        partial.Should().Throw<ArgumentException>().WithMessage("the first-moment rows, cols and signs must be all present or all null*");
        // SMMF computes in float32: the CUDA backend registers no bf16 SMMF kernel.
        KernelRegistry.Find(KernelOperation.SmmfStep, KernelBackend.Cuda, KernelStorage.Dense(ScalarType.BFloat16)).Should().BeNull();
        var bf16 = () => KernelSelection.Select<ISmmfStepKernel>(KernelBackend.Cuda, new Device(DeviceType.CUDA, 0), KernelStorage.Dense(ScalarType.BFloat16), 8);
        bf16.Should().Throw<ArgumentException>().WithMessage("kernel = Cuda needs float32 state on a CUDA device to run SmmfStep, but the state is BFloat16 on cuda:0*");
    }
}
