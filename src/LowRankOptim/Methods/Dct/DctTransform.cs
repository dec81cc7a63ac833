using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// Products with the orthonormal DCT-II matrix C of <see cref="DctBasis"/> computed by FFT (Makhoul's
/// algorithm, IEEE TASSP 1980), in O(s log s) per vector and without ever forming C.
/// <para>
/// x·C (the inverse direction, an orthonormal DCT-III, <see cref="TimesBasis"/>): along the contracted dimension
/// every vector x is mapped to y_j = Σ_k x_k C[k, j]:
/// <list type="number">
/// <item>weight x_k by c_k·√(2/s) (=: X_k) and pair the bins: H_k = ½·e^{iπk/(2s)}·(X_k − i·X_{s−k}) (k = 1…⌊s/2⌋), H_0 = X_0;</item>
/// <item>v = s·irfft(H): H is the half spectrum of a Hermitian sequence, so v is real;</item>
/// <item>undo Makhoul's reordering: y_{2n} = v_n, y_{2n+1} = v_{s−1−n}.</item>
/// </list>
/// </para>
/// <para>
/// x·Cᵀ (the forward orthonormal DCT-II, <see cref="TimesBasisTransposed"/>): y_k = w_k·Σ_j x_j·cos(πk(2j+1)/(2s)),
/// w_0 = √(1/s), w_k = √(2/s):
/// <list type="number">
/// <item>reorder v_n = x_{2n}, v_{s−1−n} = x_{2n+1} (v = [x_0, x_2, x_4, …, x_5, x_3, x_1]; x_j goes to <see cref="SourcePositions"/>[j]);</item>
/// <item>V = rfft(v), k = 0…⌊s/2⌋, and Z_k = w_k·e^{−iπk/(2s)}·V_k; then Σ_j x_j cos(πk(2j+1)/(2s)) = Re(e^{−iπk/(2s)}·V_k);</item>
/// <item>y_k = Re(Z_k) for k ≤ ⌊s/2⌋, and y_{s−k} = −Im(Z_k) for 1 ≤ k &lt; s − ⌊s/2⌋: v is real, so V_{s−k} = conj(V_k) and
/// e^{−iπ(s−k)/(2s)}·V_{s−k} = −i·conj(e^{−iπk/(2s)}·V_k), whose real part is −Im(e^{−iπk/(2s)}·V_k); w_{s−k} = w_k for k ≥ 1.</item>
/// </list>
/// </para>
/// Float64 inputs are transformed in float64, everything else in float32, and the result is cast back.
/// </summary>
internal static class DctTransform
{
    /// <summary>The transient bytes one call of <see cref="SelectedSlices"/> or <see cref="AddScatteredTimesBasisTransposed"/> may hold: 64 MiB.</summary>
    public const long WorkspaceBudget = 64L << 20;

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
        CheckMatrix(x, dim);
        var s = x.shape[dim];
        var half = s / 2;
        var work = WorkType(x.dtype);
        Tensor result;
        using (var scope = NewDisposeScope())
        {
            var xw = x.to(work);
            // z_k = x_k − i·x_{s−k} for k = 0…⌊s/2⌋ (no x_s: the k = 0 imaginary part is 0), written in place.
            long[] shape = dim == 0 ? [half + 1, x.shape[1]] : [x.shape[0], half + 1];
            var z = empty(shape, dtype: ComplexType(work), device: x.device);
            var parts = view_as_real(z);
            parts.select(-1, 0).copy_(xw.narrow(dim, 0, half + 1));
            var imaginary = parts.select(-1, 1);
            imaginary.narrow(dim, 0, 1).zero_();
            if (half > 0) imaginary.narrow(dim, 1, half).copy_(xw.narrow(dim, s - half, half).flip(dim).neg_());
            // H_k = w_k·e^{iπk/(2s)}·z_k: w_0 = √(1/s), w_k = ½·√(2/s) (the ½ of the pairing), times s for irfft's 1/s.
            z.mul_(Twiddles(s, dim, Math.PI / (2.0 * s), Math.Sqrt(1.0 / s) * s, 0.5 * Math.Sqrt(2.0 / s) * s, work, x.device));
            result = fft.irfft(z, s, dim).MoveToOuterDisposeScope();
        }
        return result;
    }

    /// <summary>
    /// x·Cᵀ (<paramref name="dim"/> = 1, rows transformed) or C·x (<paramref name="dim"/> = 0, columns transformed),
    /// the forward orthonormal DCT-II, in <paramref name="x"/>'s dtype. The result belongs to the caller's dispose scope.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="x"/> is not 2-D or <paramref name="dim"/> is not 0 or 1.</exception>
    public static Tensor TimesBasisTransposed(Tensor x, long dim)
    {
        CheckMatrix(x, dim);
        var result = empty(x.shape, dtype: x.dtype, device: x.device);
        using var all = SourcePositions(x.shape[dim], x.device);
        AddScatteredTimesBasisTransposed(x, dim, all, result, 1.0, accumulate: false);
        return result;
    }

    /// <summary>
    /// The selected slices of the transform: (x·C)[:, idx] (<paramref name="dim"/> = 1) or (Cᵀ·x)[idx, :]
    /// (<paramref name="dim"/> = 0), i.e. x·Q or Qᵀ·x with Q = C[:, idx], in O(m·n·log s) whatever r is. Computed in
    /// blocks of <see cref="BlockLines"/> rows (dim 1) or columns (dim 0) so that the workspace stays under
    /// <paramref name="budget"/> (see <see cref="WorkspaceBytesPerLine"/>). The result belongs to the caller's dispose scope.
    /// </summary>
    /// <param name="x">The 2-D input; s = x.shape[dim].</param>
    /// <param name="dim">The transformed dimension.</param>
    /// <param name="positions">int64 [r]: <see cref="SourcePositions"/>(s)[idx], where the selected slices sit in Makhoul's order.</param>
    /// <param name="dtype">The result's dtype; <paramref name="x"/>'s by default.</param>
    /// <param name="budget">The workspace bound in bytes.</param>
    public static Tensor SelectedSlices(Tensor x, long dim, Tensor positions, ScalarType? dtype = null, long budget = WorkspaceBudget)
    {
        CheckMatrix(x, dim);
        var other = 1 - dim;
        var r = positions.numel();
        var result = empty(dim == 1 ? [x.shape[0], r] : [r, x.shape[1]], dtype: dtype ?? x.dtype, device: x.device);
        var lines = BlockLines(x.shape[dim], r, WorkType(x.dtype), budget);
        for (long start = 0; start < x.shape[other]; start += lines)
        {
            using var scope = NewDisposeScope();
            var count = Math.Min(lines, x.shape[other] - start);
            var permuted = TimesBasisPermuted(x.narrow(other, start, count), dim);
            result.narrow(other, start, count).copy_(permuted.index_select(dim, positions));
        }
        return result;
    }

    /// <summary>
    /// <paramref name="destination"/> += (or, without <paramref name="accumulate"/>, =) coefficient·N·Qᵀ
    /// (<paramref name="dim"/> = 1) or coefficient·Q·N (<paramref name="dim"/> = 0), Q = C[:, idx]: N's r slices are
    /// scattered into an s-wide zero block at their Makhoul positions and the forward DCT-II is applied, in
    /// O(m·n·log s) whatever r is. The coefficient is folded into the twiddle factors (no extra pass). Computed in
    /// float32 (float64 for float64 N) in blocks of <see cref="BlockLines"/> rows (dim 1) or columns (dim 0), so
    /// the workspace stays under <paramref name="budget"/>; each block is cast into the destination's dtype.
    /// </summary>
    /// <param name="lowRank">N: m×r (dim 1) or r×n (dim 0).</param>
    /// <param name="dim">The transformed dimension of the destination; s = destination.shape[dim].</param>
    /// <param name="positions">int64 [r]: <see cref="SourcePositions"/>(s)[idx].</param>
    /// <param name="destination">The m×n result, written or accumulated in place.</param>
    /// <param name="coefficient">Multiplies the back-projection (α·scale).</param>
    /// <param name="accumulate">Add to the destination rather than overwrite it.</param>
    /// <param name="budget">The workspace bound in bytes.</param>
    public static void AddScatteredTimesBasisTransposed(Tensor lowRank, long dim, Tensor positions, Tensor destination, double coefficient,
        bool accumulate, long budget = WorkspaceBudget)
    {
        CheckMatrix(destination, dim);
        var other = 1 - dim;
        var s = destination.shape[dim];
        var work = WorkType(lowRank.dtype);
        var lines = BlockLines(s, positions.numel(), work, budget);
        using var outer = NewDisposeScope();
        // Z_k = coefficient·w_k·e^{−iπk/(2s)}·V_k: w_0 = √(1/s), w_k = √(2/s).
        var twiddles = Twiddles(s, dim, -Math.PI / (2.0 * s), coefficient * Math.Sqrt(1.0 / s), coefficient * Math.Sqrt(2.0 / s), work, destination.device);
        var half = s / 2;
        var tail = s - half - 1; // y_{⌊s/2⌋+1…s−1}, from Z_{tail…1}
        for (long start = 0; start < destination.shape[other]; start += lines)
        {
            using var scope = NewDisposeScope();
            var count = Math.Min(lines, destination.shape[other] - start);
            long[] shape = dim == 1 ? [count, s] : [s, count];
            var v = zeros(shape, dtype: work, device: destination.device);
            v.index_copy_(dim, positions, lowRank.narrow(other, start, count).to(work));
            var parts = view_as_real(fft.rfft(v, s, dim).mul_(twiddles));
            var y = empty(shape, dtype: work, device: destination.device);
            y.narrow(dim, 0, half + 1).copy_(parts.select(-1, 0));
            if (tail > 0) y.narrow(dim, half + 1, tail).copy_(parts.select(-1, 1).narrow(dim, 1, tail).flip(dim)).neg_();
            var block = destination.narrow(other, start, count);
            if (accumulate) block.add_(y);
            else block.copy_(y);
        }
    }

    /// <summary>
    /// An upper bound of the transient bytes per line (a row for dim 1, a column for dim 0) of
    /// <see cref="SelectedSlices"/> and <see cref="AddScatteredTimesBasisTransposed"/>: e·(5s + r + 4), e = 8 for
    /// float64 work and 4 otherwise. It counts the input cast to the working dtype (s, or r), the complex half spectrum
    /// (2(⌊s/2⌋ + 1) ≤ s + 2 reals), the FFT library's copy of its input (≤ s + 2), the real transform (s), the reversed
    /// tail of the forward transform (≤ s/2) and the r selected slices; the FFT library's O(s) per-thread scratch is not
    /// counted. A call holds at most <see cref="BlockLines"/> lines at once: ≤ max(budget, one line's bytes).
    /// </summary>
    public static long WorkspaceBytesPerLine(long s, long r, ScalarType work) => (work == ScalarType.Float64 ? 8 : 4) * (5 * s + r + 4);

    /// <summary>Lines per block: ⌊budget / <see cref="WorkspaceBytesPerLine"/>⌋, at least 1.</summary>
    public static long BlockLines(long s, long r, ScalarType work, long budget = WorkspaceBudget) =>
        Math.Max(1, budget / WorkspaceBytesPerLine(s, r, work));

    /// <summary>The dtype the transforms compute in: float64 for float64 input, float32 otherwise.</summary>
    public static ScalarType WorkType(ScalarType dtype) => dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    /// <summary>perm[j] = j/2 for even j, s − 1 − (j−1)/2 for odd j: slice j of x·C is slice perm[j] of the permuted result.</summary>
    public static Tensor SourcePositions(long s, Device device)
    {
        var perm = new long[s];
        for (long j = 0; j < s; j++) perm[j] = (j & 1) == 0 ? j / 2 : s - 1 - (j - 1) / 2;
        return tensor(perm, device: device);
    }

    private static ScalarType ComplexType(ScalarType work) => work == ScalarType.Float64 ? ScalarType.ComplexFloat64 : ScalarType.ComplexFloat32;

    /// <summary>
    /// w_k·e^{i·k·angle} for k = 0…⌊s/2⌋ (w_0 = <paramref name="first"/>, w_k = <paramref name="rest"/>), computed in
    /// float64, cast to the complex type of <paramref name="work"/> and shaped to broadcast along <paramref name="dim"/>.
    /// </summary>
    private static Tensor Twiddles(long s, long dim, double angle, double first, double rest, ScalarType work, Device device)
    {
        var half = s / 2;
        Tensor result;
        using (var scope = NewDisposeScope())
        {
            using var count = (half + 1).ToScalar();
            using var step = angle.ToScalar();
            using var restWeight = rest.ToScalar();
            using var firstWeight = first.ToScalar();
            var phase = arange(count, dtype: ScalarType.Float64).mul_(step);
            var weight = full(half + 1, restWeight, dtype: ScalarType.Float64);
            weight.narrow(0, 0, 1).fill_(firstWeight);
            long[] shape = dim == 0 ? [half + 1, 1] : [1, half + 1];
            result = complex(phase.cos().mul_(weight), phase.sin().mul_(weight)).to(ComplexType(work), device).view(shape).MoveToOuterDisposeScope();
        }
        return result;
    }

    private static void CheckMatrix(Tensor x, long dim)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.dim() != 2) throw new ArgumentException($"x must be 2-D, not of shape {StateReader.Format(x.shape)}.", nameof(x));
        if (dim is not (0 or 1)) throw new ArgumentOutOfRangeException(nameof(dim), dim, "dim must be 0 or 1.");
    }
}
