using LowRankOptim.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Commands;

public static partial class KernelsCommand
{
    /// <summary>The step names of the quantized cases (the smoke test lists every step).</summary>
    internal const string QuantizedUpdateStep = "Adam 8-bit update (block-wise moments + weights in place)";
    internal const string QuantizedDirectionStep = "Adam 8-bit direction (block-wise subspace moments + direction)";

    /// <summary>
    /// Adam on 8-bit block-wise moments (torchao's formats, nearest rounding), float32: the fused CPU kernel against the
    /// reference's dequantize → Adam → quantize ops, and TorchSharp's dense AdamW step over as many elements for scale.
    /// Both start from the same random quantized state.
    /// </summary>
    private static KernelResult QuantizedAdamCase(long rows, long cols, bool updateWeights, StreamArrays stream, int warmup, int repeats)
    {
        using var scope = NewDisposeScope();
        var n = rows * cols;
        using var gen = new Generator(13);
        var g = randn([rows, cols], generator: gen).mul_(1e-3);
        var m0 = randn([rows, cols], generator: gen).mul_(1e-3);
        var v0 = randn([rows, cols], generator: gen).mul_(1e-3).square();
        QuantizedMoments State() => new(Quantized(m0, BlockFormat.Signed8, n), Quantized(v0, BlockFormat.Unsigned8, n));
        var (fusedState, referenceState) = (State(), State());
        var scalars = new AdamScalars(0.9, 0.999, 1e-8, Math.Sqrt(1 - 0.999), StepSize: 1e-3 / (1 - 0.9), DecayFactor: 1 - 1e-3 * 0.01);
        var w0 = randn([rows, cols], generator: gen).mul_(0.02);
        var (wf, wr) = (w0.clone(), w0.clone());
        var parameter = new Parameter(w0.clone());
        parameter.grad = g;
        using var adamw = optim.AdamW([parameter], lr: 1e-3, weight_decay: 0.01);
        var fusedKernel = KernelRegistry.Find(KernelOperation.QuantizedAdam, KernelBackend.Cpu, KernelStorage.Blockwise(8, ScalarType.Float32)) as IQuantizedAdamKernel
            ?? throw new InvalidOperationException("no CPU kernel is registered for 8-bit Adam.");
        var calls = CallsPerSample(n);
        Action fused = updateWeights
            ? () => { for (var i = 0; i < calls; i++) fusedKernel.QuantizedAdamUpdate(g, fusedState, scalars, wf); }
            : () => { for (var i = 0; i < calls; i++) fusedKernel.QuantizedAdamDirection(g, fusedState, scalars).Dispose(); };
        Action reference = updateWeights
            ? () => { for (var i = 0; i < calls; i++) TorchKernels.Instance.QuantizedAdamUpdate(g, referenceState, scalars, wr); }
            : () => { for (var i = 0; i < calls; i++) TorchKernels.Instance.QuantizedAdamDirection(g, referenceState, scalars).Dispose(); };
        var times = Measure([("fused", fused), ("reference", reference), ("adamw", () => { for (var i = 0; i < calls; i++) adamw.step(); }), ("triad", stream.Triad), ("compute", ComputeProbe.Run)],
            warmup, repeats);
        // g read (4 B); m and v codes read and written (1 B each way each); one float32 absmax per 256 entries read and
        // written, for m and v; then the direction written (4 B) or the weights read and written (8 B).
        var format = BlockFormat.Signed8;
        var stateBytes = 2 * 2 * ((double)format.CodeBytes(n) + 4 * format.Blocks(n)) / n;
        var bytesPerElement = 4 + stateBytes + (updateWeights ? 8 : 4);
        return Result(updateWeights ? QuantizedUpdateStep : QuantizedDirectionStep, ScalarType.Float32, rows, cols, n, bytesPerElement, calls, times, stream.Elements);
    }

    private static QuantizedTensor Quantized(Tensor values, BlockFormat format, long n)
    {
        var codes = zeros(format.CodeBytes(n), ScalarType.Byte);
        var absmax = zeros(format.Blocks(n));
        BlockQuantizer.Quantize(values, codes, absmax, format, Rounding.Nearest);
        return new QuantizedTensor(codes, absmax, format, Rounding.Nearest);
    }
}
