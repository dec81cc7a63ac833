using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// Products with the orthonormal DCT-II matrix C of <see cref="DctBasis"/> computed by FFT (Makhoul's
/// algorithm, IEEE TASSP 1980), in O(s log s) per vector and without ever forming C. Along the contracted
/// dimension every vector x is mapped to y_j = Σ_k x_k C[k, j], an orthonormal DCT-III (the inverse DCT-II):
/// <list type="number">
/// <item>weight x_k by c_k·√(2/s) (=: X_k) and pair the bins: H_k = ½·e^{iπk/(2s)}·(X_k − i·X_{s−k}) (k = 1…⌊s/2⌋), H_0 = X_0;</item>
/// <item>v = s·irfft(H): H is the half spectrum of a Hermitian sequence, so v is real;</item>
/// <item>undo Makhoul's reordering: y_{2n} = v_n, y_{2n+1} = v_{s−1−n}.</item>
/// </list>
/// Float64 inputs are transformed in float64, everything else in float32, and the result is cast back.
/// </summary>
internal static class DctTransform
{
    /// <summary>
    /// x·C (<paramref name="dim"/> = 1, rows transformed) or Cᵀ·x (<paramref name="dim"/> = 0, columns
    /// transformed) for a 2-D <paramref name="x"/>. The result belongs to the caller's dispose scope.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="x"/> is not 2-D or <paramref name="dim"/> is not 0 or 1.</exception>
    public static Tensor TimesBasis(Tensor x, long dim)
    {
        Tensor result;
        using (var scope = NewDisposeScope())
        {
            var v = TimesBasisPermuted(x, dim);
            result = v.index_select(dim, SourcePositions(v.shape[dim], x.device)).to(x.dtype).MoveToOuterDisposeScope();
        }
        return result;
    }

    /// <summary>
    /// The transform in Makhoul's order: column (dim 1) or row (dim 0) j of x·C is slice
    /// <see cref="SourcePositions"/>[j] of the result, which is in float32 (float64 for float64 input).
    /// Scoring and selecting columns needs no reordering of the full result, only of the s scores.
    /// </summary>
    public static Tensor TimesBasisPermuted(Tensor x, long dim)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.dim() != 2) throw new ArgumentException($"x must be 2-D, not of shape {StateReader.Format(x.shape)}.", nameof(x));
        if (dim is not (0 or 1)) throw new ArgumentOutOfRangeException(nameof(dim), dim, "dim must be 0 or 1.");
        var s = x.shape[dim];
        var half = s / 2;
        var (work, complexType) = x.dtype == ScalarType.Float64
            ? (ScalarType.Float64, ScalarType.ComplexFloat64)
            : (ScalarType.Float32, ScalarType.ComplexFloat32);
        long[] Along(long length) => dim == 0 ? [length, 1] : [1, length];
        Tensor result;
        using (var scope = NewDisposeScope())
        {
            var xw = x.to(work);
            // z_k = x_k − i·x_{s−k} for k = 0…⌊s/2⌋ (no x_s: the k = 0 imaginary part is 0), written in place.
            long[] shape = dim == 0 ? [half + 1, x.shape[1]] : [x.shape[0], half + 1];
            var z = empty(shape, dtype: complexType, device: x.device);
            var parts = view_as_real(z);
            parts.select(-1, 0).copy_(xw.narrow(dim, 0, half + 1));
            var imaginary = parts.select(-1, 1);
            imaginary.narrow(dim, 0, 1).zero_();
            if (half > 0) imaginary.narrow(dim, 1, half).copy_(xw.narrow(dim, s - half, half).flip(dim).neg_());
            // H_k = w_k·e^{iπk/(2s)}·z_k: w_0 = √(1/s), w_k = ½·√(2/s) (the ½ of the pairing), times s for irfft's 1/s.
            using var count = (half + 1).ToScalar();
            using var angle = (Math.PI / (2.0 * s)).ToScalar();
            using var pairWeight = (0.5 * Math.Sqrt(2.0 / s) * s).ToScalar();
            using var firstWeight = (Math.Sqrt(1.0 / s) * s).ToScalar();
            var phase = arange(count, dtype: ScalarType.Float64).mul_(angle);
            var weight = full(half + 1, pairWeight, dtype: ScalarType.Float64);
            weight.narrow(0, 0, 1).fill_(firstWeight);
            var factor = complex(phase.cos().mul_(weight), phase.sin().mul_(weight)).to(complexType, x.device).view(Along(half + 1));
            z.mul_(factor);
            result = fft.irfft(z, s, dim).MoveToOuterDisposeScope();
        }
        return result;
    }

    /// <summary>perm[j] = j/2 for even j, s − 1 − (j−1)/2 for odd j: slice j of x·C is slice perm[j] of the permuted result.</summary>
    public static Tensor SourcePositions(long s, Device device)
    {
        var perm = new long[s];
        for (long j = 0; j < s; j++) perm[j] = (j & 1) == 0 ? j / 2 : s - 1 - (j - 1) / 2;
        return tensor(perm, device: device);
    }
}
