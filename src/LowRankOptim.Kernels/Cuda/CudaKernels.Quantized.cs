using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Kernels;

/// <summary>Adam on block-wise quantized moments: quantized_adam.cu, one launch per call (see docs/kernels.md).</summary>
internal sealed partial class CudaKernels
{
    /// <summary>
    /// The code books on each device, uploaded once per (device, map) and kept for the process: a few hundred bytes
    /// each, and a per-call upload would be a host-to-device copy every step.
    /// </summary>
    private static readonly ConcurrentDictionary<(int Device, QuantizationMap Map), Tensor> Maps = new();

    /// <inheritdoc />
    /// <remarks>
    /// float32 or bfloat16 gradients; m and v of one width and block size (torchao's formats: 8-bit in blocks of 256,
    /// 4-bit in blocks of 128); every tensor contiguous and on the gradient's CUDA device. Codes and absmax equal the
    /// reference's bit for bit, the direction equals adam.cu's dense kernel on the dequantized moments.
    /// </remarks>
    public Tensor QuantizedAdamDirection(Tensor gradient, in QuantizedMoments moments, in AdamScalars scalars)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        var dtype = AdamDType(gradient);
        var direction = empty(gradient.shape, dtype, gradient.device);
        try
        {
            QuantizedAdam(gradient, moments, scalars, direction, "direction", update: false);
            return direction;
        }
        catch
        {
            direction.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    /// <remarks>The requirements of <see cref="QuantizedAdamDirection"/>; the weights have the gradient's dtype and element count.</remarks>
    public void QuantizedAdamUpdate(Tensor gradient, in QuantizedMoments moments, in AdamScalars scalars, Tensor weights)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        ArgumentNullException.ThrowIfNull(weights);
        QuantizedAdam(gradient, moments, scalars, weights, nameof(weights), update: true);
    }

    /// <inheritdoc />
    /// <remarks>quantized_adam.cu: 8 or 4 bits, blocks of a power of two up to <see cref="QuantizedAdamLaunches.MaxBlockSize"/> (256) entries.</remarks>
    public string? FormatProblem(BlockFormat format)
    {
        ArgumentNullException.ThrowIfNull(format);
        return QuantizedAdamLaunches.FormatProblem(format.Bits, format.BlockSize);
    }

    /// <summary>Checks every tensor (before anything is launched), then launches the step.</summary>
    private static void QuantizedAdam(Tensor gradient, in QuantizedMoments moments, in AdamScalars scalars, Tensor target, string targetName, bool update)
    {
        var dtype = AdamDType(gradient);
        var (m, v) = (moments.ExpAvg, moments.ExpAvgSq);
        ArgumentNullException.ThrowIfNull(m.Format, nameof(moments));
        ArgumentNullException.ThrowIfNull(v.Format, nameof(moments));
        // One thread per entry of both moments: they share the code width and the block size.
        if (m.Format.Bits != v.Format.Bits || m.Format.BlockSize != v.Format.BlockSize)
            throw new ArgumentException($"m is {m.Format.Bits}-bit in blocks of {m.Format.BlockSize} but v is {v.Format.Bits}-bit in blocks of {v.Format.BlockSize}; " +
                "the CUDA kernel needs one width and block size for both.", nameof(moments));
        var (bits, blockSize) = (m.Format.Bits, m.Format.BlockSize);
        if (QuantizedAdamLaunches.FormatProblem(bits, blockSize) is string problem)
            throw new ArgumentException($"the CUDA quantized Adam kernel cannot take {problem}.", nameof(moments));
        var n = gradient.numel();
        if (!m.Format.Fits(n))
            throw new ArgumentException($"gradient has {n} elements; the block-wise moments need a positive multiple of {blockSize}.", nameof(gradient));
        var device = Ordinal(gradient);
        var g = RawTensor.DevicePointer(gradient, dtype, n, nameof(gradient));
        var t = RawTensor.DevicePointer(target, dtype, n, targetName);
        var blocks = m.Format.Blocks(n);
        var mc = RawTensor.DevicePointer(m.Codes, ScalarType.Byte, m.Format.CodeBytes(n), "m codes");
        var ma = RawTensor.DevicePointer(m.Absmax, ScalarType.Float32, blocks, "m absmax");
        var vc = RawTensor.DevicePointer(v.Codes, ScalarType.Byte, v.Format.CodeBytes(n), "v codes");
        var va = RawTensor.DevicePointer(v.Absmax, ScalarType.Float32, blocks, "v absmax");
        SameDevice(device, target, targetName);
        SameDevice(device, m.Codes, "m codes");
        SameDevice(device, m.Absmax, "m absmax");
        SameDevice(device, v.Codes, "v codes");
        SameDevice(device, v.Absmax, "v absmax");
        Require();
        var (mMap, vMap) = (Map(m.Format, gradient.device, device), Map(v.Format, gradient.device, device));
        QuantizedAdamLaunches.Launch(device, dtype == ScalarType.BFloat16, bits, blockSize, blocks, g, t,
            new QuantizedBuffers(mc, ma, RawTensor.DevicePointer(mMap, ScalarType.Float32, mMap.numel(), "m map"), m.Rounding.Mode == StateRounding.Stochastic, m.Rounding.Key),
            new QuantizedBuffers(vc, va, RawTensor.DevicePointer(vMap, ScalarType.Float32, vMap.numel(), "v map"), v.Rounding.Mode == StateRounding.Stochastic, v.Rounding.Key),
            scalars, BlockFormat.MinScale, update);
        GC.KeepAlive(gradient); GC.KeepAlive(target);
        GC.KeepAlive(m.Codes); GC.KeepAlive(m.Absmax); GC.KeepAlive(v.Codes); GC.KeepAlive(v.Absmax);
    }

    /// <summary>The float32 code book of <paramref name="format"/> on CUDA device <paramref name="ordinal"/> (uploaded at first use).</summary>
    private static Tensor Map(BlockFormat format, Device device, int ordinal) =>
        Maps.GetOrAdd((ordinal, format.Map), key =>
        {
            var values = format.Values;
            if (values.Length != 1 << format.Bits)
                throw new ArgumentException($"the {key.Map} map has {values.Length} values, not the {1 << format.Bits} of {format.Bits}-bit codes.", "moments");
            // Outside any dispose scope: the map lives as long as the process.
            using var none = NewDisposeScope();
            return tensor(values, device: device).DetachFromDisposeScope();
        });
}
