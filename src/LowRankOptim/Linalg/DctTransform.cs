using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Linalg;

/// <summary>
/// Products with the orthonormal DCT-II matrix C of <see cref="DctBasis"/> computed by FFT (Makhoul's
/// algorithm, IEEE TASSP 1980), in O(s log s) per vector and without ever forming C. Along the contracted
/// dimension every vector x is mapped to y_j = Σ_k x_k C[k, j], an orthonormal DCT-III (the inverse DCT-II):
/// <list type="number">
/// <item>weight x_k by c_k·√(2/s) and pair the bins: H_k = ½·e^{iπk/(2s)}·(x_k − i·x_{s−k}) (k = 1…⌊s/2⌋), H_0 = x_0;</item>
/// <item>v = s·irfft(H): H is the half spectrum of a Hermitian sequence, so v is real;</item>
/// <item>undo Makhoul's reordering: y_{2n} = v_n, y_{2n+1} = v_{s−1−n}.</item>
/// </list>
/// Float64 inputs are transformed in float64, everything else in float32, and the result is cast back.
/// </summary>
public static class DctTransform
{
    /// <summary>
    /// x·C (<paramref name="dim"/> = 1, rows transformed) or Cᵀ·x (<paramref name="dim"/> = 0, columns
    /// transformed) for a 2-D <paramref name="x"/>. The result belongs to the caller's dispose scope.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="x"/> is not 2-D or <paramref name="dim"/> is not 0 or 1.</exception>
    public static Tensor TimesBasis(Tensor x, long dim)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.dim() != 2) throw new ArgumentException($"x must be 2-D, not of shape {Serialization.StateReader.Format(x.shape)}.", nameof(x));
        if (dim is not (0 or 1)) throw new ArgumentOutOfRangeException(nameof(dim), dim, "dim must be 0 or 1.");
        var s = x.shape[dim];
        var work = x.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        var half = s / 2;
        long[] Along(long length) => dim == 0 ? [length, 1] : [1, length];
        Tensor result;
        using (var scope = NewDisposeScope())
        {
            // c_k·√(2/s), with irfft's 1/s folded in.
            var weights = full(s, Math.Sqrt(2.0 / s) * s, dtype: ScalarType.Float64);
            weights[0] = Math.Sqrt(1.0 / s) * s;
            var y = x.to(work).mul(weights.to(work, x.device).view(Along(s)));
            var a = y.narrow(dim, 0, half + 1);
            var b = half == 0 ? zeros_like(a) : cat([zeros_like(y.narrow(dim, 0, 1)), y.narrow(dim, s - half, half).flip(dim)], dim);
            // ½·e^{iφ_k}, φ_k = πk/(2s), with the factor 1 (not ½) at k = 0 where x_{s−0} does not exist.
            var phase = arange(half + 1, dtype: ScalarType.Float64).mul_(Math.PI / (2.0 * s));
            var factor = full(half + 1, 0.5, dtype: ScalarType.Float64);
            factor[0] = 1.0;
            var cos = phase.cos().mul_(factor).to(work, x.device).view(Along(half + 1));
            var sin = phase.sin().mul_(factor).to(work, x.device).view(Along(half + 1));
            var re = a.mul(cos).add_(b.mul(sin));
            var im = a.mul(sin).sub_(b.mul(cos));
            var v = fft.irfft(complex(re, im), s, dim);
            result = v.index_select(dim, Unpermute(s, x.device)).to(x.dtype).MoveToOuterDisposeScope();
        }
        return result;
    }

    /// <summary>perm[j] = j/2 for even j, s − 1 − (j−1)/2 for odd j: y = v[perm].</summary>
    private static Tensor Unpermute(long s, Device device)
    {
        var perm = new long[s];
        for (long j = 0; j < s; j++) perm[j] = (j & 1) == 0 ? j / 2 : s - 1 - (j - 1) / 2;
        return tensor(perm, device: device);
    }
}
