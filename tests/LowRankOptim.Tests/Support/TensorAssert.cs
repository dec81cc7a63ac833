using TorchSharp;
using Xunit.Sdk;

namespace LowRankOptim.Tests.Support;

/// <summary>Element-wise closeness that reports the worst element, its index and the mismatch count.</summary>
public static class TensorAssert
{
    public static void Close(torch.Tensor actual, float[] expected, double atol, double rtol, string what) =>
        Close(actual, Array.ConvertAll(expected, e => (double)e), atol, rtol, what);

    /// <summary>Compares in float64: a float64 <paramref name="expected"/> keeps its precision.</summary>
    public static void Close(torch.Tensor actual, torch.Tensor expected, double atol, double rtol, string what) =>
        Close(actual, expected.detach().cpu().to(torch.float64).flatten().data<double>().ToArray(), atol, rtol, what);

    private static void Close(torch.Tensor actual, double[] expected, double atol, double rtol, string what)
    {
        var a = actual.detach().cpu().to(torch.float64).flatten().data<double>().ToArray();
        if (a.Length != expected.Length) throw new XunitException($"{what}: {a.Length} values, expected {expected.Length}");
        int worst = -1, bad = 0;
        double worstRatio = 0;
        for (var i = 0; i < a.Length; i++)
        {
            var bound = atol + rtol * Math.Abs(expected[i]);
            var ratio = Math.Abs(a[i] - expected[i]) / bound;
            if (double.IsNaN(ratio)) ratio = double.PositiveInfinity;
            if (ratio > 1) bad++;
            if (ratio > worstRatio) (worstRatio, worst) = (ratio, i);
        }
        if (bad > 0)
            throw new XunitException($"{what}: {bad} of {a.Length} values outside atol {atol} + rtol {rtol}; worst at flat index {worst}: {a[worst]:R} vs {expected[worst]:R} ({worstRatio:F1}× the tolerance)");
    }

    /// <summary>Bitwise equality of two tensors (same shape, same values, NaNs equal).</summary>
    public static void Identical(torch.Tensor actual, torch.Tensor expected, string what)
    {
        if (!actual.shape.SequenceEqual(expected.shape))
            throw new XunitException($"{what}: shape {string.Join("x", actual.shape)} vs {string.Join("x", expected.shape)}");
        var a = actual.detach().cpu().contiguous().bytes.ToArray();
        var e = expected.detach().cpu().contiguous().bytes.ToArray();
        if (!a.AsSpan().SequenceEqual(e))
        {
            using var d = (actual.detach().cpu().to(torch.float64) - expected.detach().cpu().to(torch.float64)).abs().max();
            throw new XunitException($"{what}: not bit-identical (max |Δ| = {d.item<double>():R})");
        }
    }
}
